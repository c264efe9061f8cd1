"""Training prints a progress bar with the loss, never transformers' raw log dicts."""

from __future__ import annotations

import pytest
from test_train_sampler import repetitive_pool


@pytest.mark.parametrize("show_progress", [True, False])
def test_training_prints_no_log_dicts_and_its_bar_shows_the_loss(show_progress, tmp_path, tiny_model, capsys):
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.train.trainer import TrainConfig, train

    model = SentenceTransformer(tiny_model, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(model, repetitive_pool(), tmp_path, TrainConfig(batch_size=3, max_steps=3, max_length=16,
                                                                        precision="fp32", logging_steps=1),
                       show_progress=show_progress)
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr()
    assert len(result.loss_log) == 3  # the loss was logged at every step ...
    assert "{'loss'" not in printed.out + printed.err and "train_runtime" not in printed.out + printed.err  # ... quietly
    last = f"loss={result.loss_log[-1]['loss']:.4g}"
    assert (last in printed.err) == show_progress  # the bar's last state carries the last loss
