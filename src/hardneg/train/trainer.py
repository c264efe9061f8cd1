"""Training glue: a sentence-transformers trainer fed from a :class:`NegativePool`.

The pool's examples are fixed for the run; their negatives are read at collate
time, so an ANCE refresh (:mod:`hardneg.train.refresh`) can swap them mid-epoch.
Batches come from :mod:`hardneg.train.sampler` (no repeated text, no positive of
one query as another's negative).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardneg.choices import PRECISIONS, Precision, check_choice
from hardneg.errors import HardnegError
from hardneg.store import load_npy, save_npy, write_json
from hardneg.train.gradient import share_log
from hardneg.train.losses import LossConfig, make_loss
from hardneg.train.pool import NegativePool
from hardneg.train.progress import show_loss_in_bar
from hardneg.train.refresh import NEGATIVES_STATE, DevEvaluator, RefreshConfig, Refresher
from hardneg.train.refresh_callback import make_refresh_callback
from hardneg.train.topics import BATCHINGS, topic_clusters

logger = logging.getLogger(__name__)

ROW_COLUMN = "hardneg_row"
TOPICS_FILE = "topics.npy"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        loss: which loss (:class:`~hardneg.train.losses.LossConfig`).
        batch_size: examples per batch (each brings its query, positive and negatives).
        learning_rate: peak AdamW learning rate (linear warm-up, linear decay).
        warmup_ratio: fraction of steps spent warming up.
        epochs: passes over the examples (ignored when ``max_steps`` is set).
        max_steps: stop after this many optimizer steps.
        max_length: token limit of the model during training and refresh encoding.
        precision: ``bf16`` autocast, ``fp32``, or ``auto`` (:func:`hardneg.runtime.resolve_precision`).
        seed: seed of the model init, shuffling and dropout.
        batching: ``random`` batches, or ``topic``: the queries are clustered once, with
            the model as it starts, into one topic per batch's worth of examples, and
            batches are filled topic by topic so in-batch negatives are hard too
            (:mod:`hardneg.train.topics`; the labels are kept in ``topics.npy``).
        save_steps: save a resumable checkpoint every N steps (None: only the final model).
        save_total_limit: checkpoints kept.
        logging_steps: loss logged every N steps.
        log_gradient_every: measure the share of the loss gradient each kind of negative carries
            every N steps (``mnrl`` and ``cached-mnrl``; :mod:`hardneg.train.gradient`); None: never.
    """

    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    epochs: float = 1.0
    max_steps: int | None = None
    max_length: int | None = 128
    precision: Precision = "auto"
    seed: int = 0
    batching: Literal["random", "topic"] = "random"
    save_steps: int | None = None
    save_total_limit: int | None = 2
    logging_steps: int = 10
    log_gradient_every: int | None = 10

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise HardnegError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}.")
        if self.log_gradient_every is not None and self.log_gradient_every < 1:
            raise HardnegError(f"log_gradient_every must be at least 1 step, got {self.log_gradient_every}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise HardnegError(f"max_steps must be at least 1, got {self.max_steps}.")
        if self.batching not in BATCHINGS:
            raise HardnegError(f"batching must be random or topic; got {self.batching!r}.")
        check_choice("precision", self.precision, PRECISIONS)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: Any
    model_path: Path
    steps: int
    seconds: float
    history: list[dict[str, Any]]
    loss_log: list[dict[str, Any]]


def pool_collator(pool: NegativePool, base, on_rows=None):
    """Wrap a sentence-transformers collator: rows are rebuilt from ``pool`` at collate time (and their
    indices handed to ``on_rows``, when given)."""

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [int(f[ROW_COLUMN]) for f in features]
        if on_rows is not None:
            on_rows(rows)
        return base([pool.row(i) for i in rows])

    collate.valid_label_columns = base.valid_label_columns  # read by the trainer's sampler factory
    return collate


def pool_dataset(pool: NegativePool):
    """A ``datasets.Dataset`` of ``pool``'s rows, each with its index in ``ROW_COLUMN`` (read by
    :func:`pool_collator`)."""
    from datasets import Dataset

    rows = [pool.row(i) | {ROW_COLUMN: i} for i in range(len(pool))]
    return Dataset.from_list(rows)


def _use_bf16(precision: str, model) -> bool:
    from hardneg.runtime import resolve_precision

    return resolve_precision(precision, str(model.device)) == "bf16"


def train(
    model: Any,
    pool: NegativePool,
    output_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    miner=None,
    data=None,
    refresh: RefreshConfig | None = None,
    dev_data=None,
    resume_from_checkpoint: str | Path | bool | None = None,
    callbacks: list | None = None,
    show_progress: bool = True,
    padding: dict[int, set[str]] | None = None,
    candidates=None,
) -> TrainResult:
    """Fine-tune ``model`` on ``pool`` (in-batch + its hard negatives), optionally refreshing them.

    Args:
        model: a loaded ``SentenceTransformer``; trained in place.
        pool: training examples and their negatives (:mod:`hardneg.train.pool`,
            :func:`hardneg.train.files.pool_from_file`).
        output_dir: checkpoints, ``refresh_log.jsonl``, ``train_summary.json`` and the
            final model (``output_dir/final``).
        config: optimisation settings.
        miner: for refresh: the Miner the negatives came from; its encoder must wrap
            ``model`` itself (``SentenceTransformerEncoder(model)``).
        data: the data ``miner`` mines for (refresh).
        refresh: refresh settings; None trains on static negatives.
        dev_data: dev split evaluated at start, at each refresh and at the end (needs a miner).
        resume_from_checkpoint: a ``checkpoint-N`` folder, or True for the latest in ``output_dir``.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        show_progress: tqdm bars.
        padding: query row -> texts of its negatives that are random padding
            (:func:`hardneg.neighbourhood.padding_texts`), for the gradient-share log.
        candidates: the candidates ``pool``'s negatives were selected from (``miner.mine(data).candidates``):
            a pool-scope refresh (``RefreshConfig(scope="pool")``) re-encodes their top documents;
            without them the first refresh is full.

    References:
        Xiong et al., "Approximate Nearest Neighbor Negative Contrastive Learning for
        Dense Text Retrieval", ICLR 2021 (refresh).
    """
    from sentence_transformers import SentenceTransformerTrainer

    from hardneg.runtime import limit_onednn_cache
    from hardneg.train.sampler import make_batch_sampler

    limit_onednn_cache()
    config = config or TrainConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.max_length is not None:
        model.max_seq_length = config.max_length
    if config.loss.needs_scores and pool.scores is None:
        raise HardnegError(f"{config.loss.name} needs teacher scores: train from a file with a scores column "
                           "(hardneg mine --cross-encoder TEACHER --score-source teacher --with-scores), or build "
                           "the pool with pool_from_selection(..., teacher_scores=True).")
    loss = make_loss(config.loss, model, num_negatives=pool.num_negatives)

    refresher = None
    if refresh is not None or dev_data is not None:
        if miner is None or data is None:
            raise HardnegError("Refresh and dev evaluation need the miner and the data the negatives came from.")
        refresher = _make_refresher(model, miner, data, pool, refresh, dev_data, output_dir, candidates)

    checkpoint = _resume_point(resume_from_checkpoint, output_dir, refresher, pool)
    args = _training_arguments(model, config, output_dir, show_progress)

    topics = _topics(model, pool, config, output_dir, reuse=checkpoint is not None, show_progress=show_progress)
    shares = share_log(config, loss, pool, output_dir, padding, refresher, data, fresh=checkpoint is None)
    sampler = make_batch_sampler(pool, config.batch_size, config.seed, topics)
    if refresher is not None:
        refresher.look_ahead = sampler.upcoming  # a pool-scope refresh mines only the queries trained on next

    class PoolTrainer(SentenceTransformerTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            if shares is not None and model.training:
                shares.begin_step(self.state.global_step, self.state.max_steps)
            return super().compute_loss(model, inputs, *args, **kwargs)
        def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
            return sampler

    dataset = pool_dataset(pool)
    trainer = PoolTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                          callbacks=[make_refresh_callback(refresher, pool, refresh.every if refresh else None),
                                     *(callbacks or [])])
    trainer.data_collator = pool_collator(pool, trainer.data_collator, shares.collated if shares else None)
    show_loss_in_bar(trainer, show_progress)  # no raw log dicts on stdout; the loss log is in the summary
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - t0
    final = output_dir / "final"
    model.save(str(final))
    history = refresher.history if refresher is not None else []
    loss_log = [e for e in trainer.state.log_history if "loss" in e]
    write_json(output_dir / "train_summary.json", {
        "steps": trainer.state.global_step, "seconds": round(seconds, 3), "examples": len(pool),
        "num_negatives": pool.num_negatives, "config": _jsonable(asdict(config)),
        "refresh": _jsonable(asdict(refresh)) if refresh else None, "history": history, "loss_log": loss_log,
        "resumed_from": checkpoint, "gradient_shares": shares.entries if shares is not None else None,
    })
    return TrainResult(model, final, trainer.state.global_step, seconds, history, loss_log)


def _resume_point(resume_from_checkpoint, output_dir: Path, refresher: Refresher | None, pool) -> str | None:
    """The checkpoint to resume from (None: a fresh start), with the negatives that were in use restored."""
    if not resume_from_checkpoint:
        return None
    checkpoint = last_complete_checkpoint(output_dir) if resume_from_checkpoint is True else str(resume_from_checkpoint)
    if checkpoint is None or not Path(checkpoint).is_dir():
        raise HardnegError(f"No checkpoint to resume from in {output_dir}; train without --resume first.")
    if refresher is not None and (Path(checkpoint) / "hardneg_refresh.json").exists():
        refresher.load(checkpoint)
    elif (Path(checkpoint) / NEGATIVES_STATE).exists():
        pool.load_negatives(Path(checkpoint) / NEGATIVES_STATE)
    logger.info("resuming from %s (negatives version %d)", checkpoint, pool.version)
    return checkpoint


def _training_arguments(model, config: TrainConfig, output_dir: Path, show_progress: bool):
    """The trainer's arguments: schedule, precision (:func:`hardneg.runtime.resolve_precision`), checkpoints."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        bf16=_use_bf16(config.precision, model),
        use_cpu=not str(model.device).startswith("cuda"),
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
    )


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder that was saved to the end, or None.

    transformers writes a checkpoint file by file; hardneg's negatives state is written
    last (``on_save``), so a folder without it was cut short (a kill, a full disk) and
    is passed over with a warning.
    """
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (folder / NEGATIVES_STATE).is_file():
            return str(folder)
        logger.warning("%s was not saved to the end (no %s); resuming from an earlier checkpoint", folder,
                       NEGATIVES_STATE)
    return None


def _topics(model, pool: NegativePool, config: TrainConfig, output_dir: Path, *, reuse: bool,
            show_progress: bool) -> np.ndarray | None:
    """Topic labels for ``batching="topic"`` (None otherwise); a resumed run reuses the saved ones."""
    if config.batching != "topic":
        return None
    path = output_dir / TOPICS_FILE
    topics = load_npy(path, what="topic labels") if reuse else None
    if topics is not None:
        if len(topics) == len(pool):
            return topics
        logger.warning("%s holds %d labels for %d examples; clustering again", path, len(topics), len(pool))
    t0 = time.perf_counter()
    queries = model.encode(pool.anchors, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=show_progress)
    topics = topic_clusters(queries, max(1, len(pool) // config.batch_size), config.seed)
    save_npy(path, topics)
    logger.info("topic batching: %d queries in %d topics (%.1f s)", len(pool), int(topics.max()) + 1,
                time.perf_counter() - t0)
    return topics


def _make_refresher(model, miner, data, pool, refresh, dev_data, output_dir: Path, candidates) -> Refresher:
    from hardneg.train.refresh_callback import check_miner_follows

    dense = check_miner_follows(miner, model)
    dev = None
    if dev_data is not None:
        cap = refresh.dev_max_queries if refresh is not None else 200
        dev = DevEvaluator(dense, dev_data, miner.run_dir, cap)
    return Refresher(miner, data, pool, refresh or RefreshConfig(every=None), dev=dev,
                     log_path=output_dir / "refresh_log.jsonl", candidates=candidates)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
