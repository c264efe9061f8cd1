"""Training a cross-encoder teacher on qrels positives and hardneg-mined negatives.

The teacher is a sentence-transformers ``CrossEncoder`` with one output, trained
on qrels positives and negatives mined by :class:`hardneg.Miner` (BM25, dense or
hybrid), with one of two losses:

- ``listwise`` (default): per query, a softmax over the positive, its mined
  negatives and a few other queries' documents from the batch (easy negatives);
  the loss asks only that the positive rank first, so a fresh head cannot settle
  on a constant.
- ``bce``: binary cross-entropy on (query, positive) pairs labelled 1 and (query,
  negative) pairs labelled 0. Measured here: with only the hardest negatives (many
  of them unlabelled positives) and a fresh head, it collapsed to a constant.
 Training runs in the Hugging Face trainer, which saves
checkpoints every ``save_steps``; a rerun with the same output directory resumes
from the last one. After training the teacher reranks a first-stage list of the
dev split and the metrics are saved next to the model.

References:
    Qu et al., "RocketQA: An Optimized Training Approach to Dense Passage Retrieval
    for Open-Domain Question Answering", NAACL 2021 (a cross-encoder trained on
    retrieved negatives, then used to denoise them).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardneg.errors import HardnegError
from hardneg.gradcache import DEFAULT_CHUNK_TOKENS
from hardneg.store import fingerprint, write_json
from hardneg.train.progress import show_loss_in_bar

logger = logging.getLogger(__name__)

NegativeSource = Literal["bm25", "dense", "hybrid"]
TeacherLoss = Literal["listwise", "bce"]
RESULT_FILE = "train_reranker.json"


@dataclass(frozen=True)
class TeacherTrainingConfig:
    """How a cross-encoder teacher is trained and checked.

    Attributes:
        negatives: where training negatives come from: ``bm25``, ``dense`` (the
            ``negatives_model`` bi-encoder) or ``hybrid`` (both, RRF-fused).
        negatives_model: bi-encoder for dense/hybrid negatives; default: the base model.
        negatives_per_query: mined negatives per query (each a pair labelled 0).
        negative_sampling: ``top`` (the hardest: many are unlabelled positives, and a
            fresh head can collapse to a constant on them) or ``random`` (uniform over
            the retrieved top-100: a mix of hard and easy negatives).
        loss: ``listwise`` (softmax over positive, mined and in-batch negatives) or
            ``bce`` (pointwise binary cross-entropy); see the module docstring.
        in_batch_negatives: ``listwise`` only: documents of other queries in the batch
            added to each query's list (0: mined negatives only).
        max_queries: train on a seeded random sample of this many queries.
        epochs: passes over the training examples.
        max_steps: stop after this many optimiser steps (overrides ``epochs``).
        batch_size: training examples per step: queries, each with its positive and
            negatives (``listwise``), or (query, document) pairs (``bce``). With chunking
            it sets the softmax's size and the time per step, not the memory.
        chunk_tokens: most padded tokens per forward pass: the step's pairs are scored in
            length-sorted chunks (GradCache, :mod:`hardneg.train.chunked_loss`), which
            bounds activation memory whatever the batch, with the same gradient. 0 puts
            the whole step through one pass (memory grows with batch × pairs × length).
        learning_rate: peak learning rate (linear warm-up over 10 % of the steps).
        max_length: token limit of a (query, document) pair.
        precision: ``bf16`` autocast, ``fp32``, or ``auto``: bf16 on a GPU, fp32 on a CPU
            (measured here: CPU bf16 autocast slows training down, though it speeds up
            inference; the dev evaluation and negative mining use bf16 where available).
        save_steps: checkpoint every this many steps (the resume granularity).
        seed: seeds the query sample, negative sampling, head initialisation and shuffling.
        eval_depth: first-stage (BM25) documents per dev query the teacher reranks.
        eval_max_queries: evaluate on a seeded sample of this many dev queries (None: all).
    """

    negatives: NegativeSource = "hybrid"
    negatives_model: str | None = None
    negatives_per_query: int = 3
    negative_sampling: Literal["top", "random"] = "random"
    loss: TeacherLoss = "listwise"
    in_batch_negatives: int = 4
    max_queries: int | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    learning_rate: float = 2e-4
    max_length: int = 96
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    save_steps: int = 50
    seed: int = 0
    eval_depth: int = 30
    eval_max_queries: int | None = 200

    def __post_init__(self) -> None:
        if self.negatives not in ("bm25", "dense", "hybrid"):
            raise HardnegError(f"negatives must be bm25, dense or hybrid; got {self.negatives!r}.")
        if self.loss not in ("listwise", "bce"):
            raise HardnegError(f"loss must be listwise or bce; got {self.loss!r}.")
        if self.chunk_tokens < 0:
            raise HardnegError(f"chunk_tokens must be 0 (one pass) or more, got {self.chunk_tokens}.")
        if self.in_batch_negatives < 0:
            raise HardnegError(f"in_batch_negatives must be 0 or more, got {self.in_batch_negatives}.")
        for name in ("negatives_per_query", "batch_size", "max_length", "save_steps", "eval_depth"):
            if getattr(self, name) < 1:
                raise HardnegError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_queries is not None and self.max_queries < 1:
            raise HardnegError(f"max_queries must be at least 1, got {self.max_queries}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise HardnegError(f"max_steps must be at least 1, got {self.max_steps}.")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise HardnegError(f"epochs and learning_rate must be positive, got {self.epochs}, {self.learning_rate}.")


@dataclass
class TeacherTrainingResult:
    """What :func:`train_reranker` made: the model path, the data sizes, time and dev metrics."""

    model_path: str
    base: str
    config: dict[str, Any]
    train_queries: int
    train_examples: int
    steps: int
    seconds: dict[str, float]
    dev: dict[str, dict[str, float]] = field(default_factory=dict)
    dev_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        lines = [
            f"teacher   {self.model_path} (from {self.base})",
            f"trained   {self.train_examples} {self.config['loss']} examples from {self.train_queries} queries, "
            f"{self.steps} steps, "
            f"{self.seconds.get('train', 0.0):.0f}s",
        ]
        if self.dev:
            keys = list(next(iter(self.dev.values())))
            lines += ["", f"dev reranking ({self.dev_queries} queries)", f"{'ranking':<22}" + "".join(f"{k:>12}" for k in keys)]
            for name, metrics in self.dev.items():
                lines.append(f"{name:<22}" + "".join(f"{metrics[k]:>12.4f}" for k in keys))
            warning = self.weaker_than_first_stage()
            if warning:
                lines += ["", warning]
        return "\n".join(lines)

    def weaker_than_first_stage(self) -> str | None:
        """A warning when reranking with this teacher ranks dev worse than the first stage it reranks (nDCG@10):
        such a teacher's scores would denoise and label at random or worse."""
        first, reranked = (self.dev or {}).get("first_stage"), (self.dev or {}).get("reranked")
        if not first or not reranked or "ndcg@10" not in first or reranked["ndcg@10"] >= first["ndcg@10"]:
            return None
        return (f"WARNING   this teacher reranks dev worse than the first stage (nDCG@10 {reranked['ndcg@10']:.4f} vs "
                f"{first['ndcg@10']:.4f}): it is undertrained. Train longer (--max-steps, --epochs) or on more "
                "queries before mining with it.")


def sample_queries(data, n: int | None, seed: int):
    """A seeded random sample of ``n`` queries of ``data`` (in their original order)."""
    if n is None or n >= len(data.queries):
        return data
    rows = np.sort(np.random.default_rng(seed).choice(len(data.queries), size=n, replace=False))
    return data.subset(rows.tolist())


def negative_retriever(source: NegativeSource, model: str, max_length: int | None = None, precision: str = "auto"):
    """The retriever that mines the teacher's training negatives."""
    from hardneg.retrieve.bm25 import BM25Retriever

    bm25 = BM25Retriever()
    if source == "bm25":
        return bm25
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    dense = DenseRetriever(SentenceTransformerEncoder(model, max_length=max_length, precision=precision))
    if source == "dense":
        return dense
    from hardneg.retrieve.hybrid import HybridRetriever

    return HybridRetriever(bm25, dense)


def training_examples(data, retriever, config: TeacherTrainingConfig, run_dir: Path, *, show_progress: bool = True):
    """The training rows for ``config.loss``.

    ``listwise``: ``query, positive, negative_1 .. negative_k`` (one row per positive);
    ``bce``: ``query, document, label`` (every positive labelled 1, every negative 0).
    """
    from hardneg.export import build_rows
    from hardneg.mine import Miner
    from hardneg.select import SelectionConfig

    selection = SelectionConfig(
        num_negatives=config.negatives_per_query, sampling=config.negative_sampling, if_short="pad", seed=config.seed
    )
    miner = Miner(retriever, selection, run_dir=run_dir, show_progress=show_progress)
    result = miner.mine(data)
    if config.loss == "listwise":
        rows = build_rows(data, result.selection, "n-tuple")
        return [{"query": r.pop("anchor"), **r} for r in rows]
    rows = build_rows(data, result.selection, "labeled-pair")
    return [{"query": r["anchor"], "document": r["document"], "label": float(r["label"])} for r in rows]


def evaluate_reranker(
    scorer,
    data,
    *,
    depth: int = 30,
    max_queries: int | None = 200,
    seed: int = 0,
    first_stage=None,
    show_progress: bool = True,
) -> tuple[dict[str, dict[str, float]], int]:
    """nDCG@10 etc. of a first stage (BM25 by default) and of the teacher reranking its top ``depth``.

    Positives stay in the list (this is evaluation). Returns ``({"first_stage": ...,
    "reranked": ...}, n_queries)``.
    """
    from hardneg.evaluate import Evaluator, run_from_candidates
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.teacher.rescore import rescore_candidates

    data = sample_queries(data, max_queries, seed)
    retriever = first_stage or BM25Retriever()
    candidates = retriever.retrieve(data, depth, show_progress=show_progress)
    evaluator = Evaluator(data.qrels())
    first = evaluator.evaluate(run_from_candidates(candidates, data.corpus.ids))
    scored = rescore_candidates(candidates, data, scorer, show_progress=show_progress)
    reranked = evaluator.evaluate(run_from_candidates(scored, data.corpus.ids, by="teacher"))
    return {"first_stage": first, "reranked": reranked}, len(data.queries)


def teacher_loss(model, config: TeacherTrainingConfig):
    """The training loss ``config`` names: chunked (bounded memory) unless ``chunk_tokens`` is 0."""
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss

    from hardneg.train.chunked_loss import ChunkedBCELoss, ChunkedListwiseLoss

    chunk = {"chunk_tokens": config.chunk_tokens} if config.chunk_tokens else {}
    if config.loss == "listwise":
        kind = ChunkedListwiseLoss if chunk else MultipleNegativesRankingLoss
        return kind(model, num_negatives=config.in_batch_negatives, **chunk)
    kind = ChunkedBCELoss if chunk else BinaryCrossEntropyLoss
    return kind(model, pos_weight=torch.tensor(float(config.negatives_per_query)), **chunk)


def _training_arguments(model, config: TeacherTrainingConfig, checkpoints: Path, show_progress: bool):
    """The trainer's arguments: steps, schedule, precision (:func:`hardneg.runtime.resolve_precision`), checkpoints."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    from hardneg.runtime import resolve_precision

    return CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=0.1,
        bf16=resolve_precision(config.precision, str(model.device), training_cross_encoder=True) == "bf16",
        use_cpu=str(model.device) == "cpu",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=max(1, config.save_steps // 2),
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
    )


def train_reranker(
    data,
    base: str,
    output: str | Path,
    config: TeacherTrainingConfig | None = None,
    *,
    dev_data=None,
    show_progress: bool = True,
) -> TeacherTrainingResult:
    """Train a cross-encoder teacher and save it in ``output``.

    Args:
        data: training :class:`~hardneg.data.RetrievalData` (queries with positives).
        base: model name or path the teacher starts from (a bi-encoder gets a fresh head).
        output: directory for the teacher. A sibling ``<output>.work`` keeps the mining
            cache and the checkpoints while training (checkpoints are removed once the
            model is saved), so the teacher directory holds only the model and its record
            (its fingerprint, which keys cached teacher scores, covers only those files).
        config: training settings.
        dev_data: data to evaluate reranking on after training; None skips evaluation.
        show_progress: tqdm bars.

    Returns:
        The result, also saved as ``output/train_reranker.json``.

    References:
        Qu et al., "RocketQA", NAACL 2021.
    """
    try:
        import torch
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer
    except ImportError as exc:
        raise HardnegError(
            "Training a teacher needs torch, sentence-transformers and datasets: pip install 'hardneg[dense,hf]'."
        ) from exc
    from hardneg.runtime import limit_onednn_cache, set_max_length
    from hardneg.teacher.scorer import CrossEncoderScorer, load_cross_encoder

    limit_onednn_cache()
    config = config or TeacherTrainingConfig()
    output = Path(output)
    work = output.parent / f"{output.name}.work"
    # checkpoints resume only the very same training (data, base, settings)
    run_key = fingerprint(data.fingerprint(), str(base), asdict(config))
    checkpoints = work / f"checkpoints-{run_key}"
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    train = sample_queries(data, config.max_queries, config.seed)
    retriever = negative_retriever(config.negatives, config.negatives_model or base)
    rows = training_examples(train, retriever, config, work / "mining", show_progress=show_progress)
    seconds["mining"] = time.perf_counter() - t0

    torch.manual_seed(config.seed)  # the fresh head's initialisation
    model = load_cross_encoder(base, max_length=config.max_length)
    set_max_length(model, config.max_length, base)  # refuse a length beyond the model's positions
    args = _training_arguments(model, config, checkpoints, show_progress)
    loss = teacher_loss(model, config)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), loss=loss)
    show_loss_in_bar(trainer, show_progress)
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    if resume:
        logger.info("resuming teacher training from the last checkpoint in %s", checkpoints)
    t1 = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    seconds["train"] = time.perf_counter() - t1
    steps = int(trainer.state.global_step)

    model.save_pretrained(str(output))
    shutil.rmtree(checkpoints, ignore_errors=True)
    result = TeacherTrainingResult(
        model_path=str(output), base=str(base), config=asdict(config), train_queries=len(train.queries),
        train_examples=len(rows), steps=steps, seconds={},
    )
    if dev_data is not None:
        t2 = time.perf_counter()
        scorer = CrossEncoderScorer(model, precision="auto" if config.precision == "auto" else config.precision)
        result.dev, result.dev_queries = evaluate_reranker(
            scorer, dev_data, depth=config.eval_depth, max_queries=config.eval_max_queries, seed=config.seed,
            show_progress=show_progress,
        )
        seconds["evaluate"] = time.perf_counter() - t2
    result.seconds = {k: round(v, 2) for k, v in seconds.items()}
    write_json(output / RESULT_FILE, result.to_dict())
    return result
