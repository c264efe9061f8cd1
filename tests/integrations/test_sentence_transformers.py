"""A plain sentence-transformers training script with hardneg's negatives and refresh attached."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError


def test_plain_st_script_trains_on_mined_negatives_and_swaps_them_at_the_refresh(tmp_path, tiny_train, tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from hardneg.integrations.sentence_transformers import MinedNegatives
    from hardneg.mine import Miner
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.select import SelectionConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # --- the user's script, with the three hardneg lines marked ---
        model = SentenceTransformer(tiny_model, device="cpu")
        miner = Miner(DenseRetriever(SentenceTransformerEncoder(model, max_length=16, precision="fp32")),
                      SelectionConfig(num_negatives=1), run_dir=tmp_path / "mine", show_progress=False)
        negatives = MinedNegatives.mine(miner, tiny_train)  # hardneg
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, learning_rate=5e-3,
            use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=negatives.dataset,  # hardneg
                                             loss=MultipleNegativesRankingLoss(model))
        refresh = negatives.attach(trainer, refresh_every=2, log_path=tmp_path / "refresh.jsonl")  # hardneg
        # spy: which negatives each collated example carried, and from which pool version
        seen: list[tuple[int, int, list[str]]] = []
        row = negatives.pool.row
        negatives.pool.row = lambda i: (seen.append((negatives.pool.version, i, list(negatives.pool.negatives[i]))),
                                        row(i))[1]
        before = [list(n) for n in negatives.pool.negatives]
        trainer.train()
    finally:
        torch.set_num_threads(threads)

    assert trainer.state.global_step == 4
    assert [e["step"] for e in refresh.history if e["kind"] == "refresh"] == [2]  # none at the last step
    assert negatives.pool.version == 1 and refresh.history[0]["negatives_changed"] > 0
    assert negatives.pool.negatives != before
    # batches drawn after the refresh carried the swapped-in negatives, not the mined ones
    late = [(i, negs) for version, i, negs in seen if version == 1]
    assert late and any(negs != before[i] for i, negs in late)
    assert all(negs == negatives.pool.negatives[i] for i, negs in late)
    assert (tmp_path / "refresh.jsonl").read_text().count("\n") == 1


def test_attach_refuses_a_trainer_without_the_row_column_and_a_miner_on_other_weights(tiny_train, tiny_model,
                                                                                      tmp_path):
    from types import SimpleNamespace

    from sentence_transformers import SentenceTransformer

    from hardneg.integrations.sentence_transformers import MinedNegatives
    from hardneg.mine import Miner
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.select import SelectionConfig

    model = SentenceTransformer(tiny_model, device="cpu")
    other = SentenceTransformer(tiny_model, device="cpu")
    miner = Miner(DenseRetriever(SentenceTransformerEncoder(other, max_length=16)), SelectionConfig(num_negatives=1),
                  run_dir=tmp_path / "mine", show_progress=False)
    negatives = MinedNegatives.mine(miner, tiny_train)
    assert set(negatives.dataset.column_names) == {"anchor", "positive", "negative_1", "hardneg_row"}
    assert negatives.dataset["hardneg_row"] == list(np.arange(len(negatives.pool)))
    with pytest.raises(HardnegError, match="train_dataset=negatives.dataset"):
        negatives.attach(SimpleNamespace(train_dataset=SimpleNamespace(column_names=["anchor", "positive"])))
    trainer = SimpleNamespace(train_dataset=negatives.dataset, data_collator=lambda f: f, model=model,
                              add_callback=lambda c: None)
    with pytest.raises(HardnegError, match="does not wrap the model being trained"):
        negatives.attach(trainer, refresh_every=2)
