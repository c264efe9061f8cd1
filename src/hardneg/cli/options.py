"""Option groups shared by the subcommands, and what the flags build: data, retriever, selection, teacher.

A flag means the same wherever it appears: each group is defined once here, its
numeric limits in one table (:data:`MINIMUM`), and each object the flags describe is
built by one function (:func:`load_data`, :func:`build_retriever`, :func:`selection_config`,
:func:`make_teacher`).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import fields
from pathlib import Path

from hardneg.choices import (
    DENOISE_RULES,
    EMBEDDING_DTYPES,
    EXECUTORS,
    FUSIONS,
    IF_SHORT,
    INDEX_KINDS,
    PRECISIONS,
    RETRIEVERS,
    SAMPLING,
    SCORE_SOURCES,
)
from hardneg.errors import HardnegError

logger = logging.getLogger("hardneg")


# Numeric flags and the smallest value each accepts (every float flag must also be finite).
# One table for every subcommand: a flag means the same wherever it appears.
MINIMUM = {
    "max_queries": 1, "max_length": 1, "batch_size": 1, "max_batch_tokens": 1, "depth": 1, "num_negatives": 1,
    "range_min": 0, "range_max": 1, "seed": 0, "teacher_max_length": 1, "teacher_batch_size": 1, "shard_size": 1,
    "train_batch_size": 2, "mini_batch_size": 1, "max_steps": 1, "save_steps": 1, "refresh_every": 1,
    "staleness_k": 1, "dev_max_queries": 1, "negatives_per_query": 1, "in_batch_negatives": 0, "eval_depth": 1,
    "eval_max_queries": 0, "distill_weight": 0, "warmup_ratio": 0, "chunk_tokens": 0,
    "workers": 1, "gpus_per_worker": 0,
    "nlist": 1, "nprobe": 1, "pq_m": 1, "index_sample": 1, "refine_factor": 1, "recall_queries": 1,
}


# Float flags that must be strictly positive, and those with an upper bound.
POSITIVE = {"simans_a", "learning_rate", "epochs", "teacher_temperature", "cpus_per_worker"}


MAXIMUM = {"warmup_ratio": 1}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse numeric flags outside their range (NaN, inf, zero batch sizes, negative seeds, ...)."""
    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise HardnegError(f"{flag} must be a finite number, got {value}.")
        if dest in MINIMUM and value < MINIMUM[dest]:
            raise HardnegError(f"{flag} must be at least {MINIMUM[dest]}, got {value}.")
        if dest in POSITIVE and value <= 0:
            raise HardnegError(f"{flag} must be above 0, got {value}.")
        if dest in MAXIMUM and value > MAXIMUM[dest]:
            raise HardnegError(f"{flag} must be at most {MAXIMUM[dest]}, got {value}.")


def margin_or_none(text: str) -> float | str:
    """``--relative-margin`` value: a number, or ``none`` for no margin."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05, or none; got {text!r}") from None


def budget_bytes(text: str) -> int:
    """``--memory-budget`` value: bytes from ``4GB``, ``512MiB``, ..."""
    from hardneg.retrieve.memory_plan import parse_bytes

    try:
        return parse_bytes(text)
    except HardnegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_pairs_file_args(g) -> None:
    """How a pairs file is read (its columns, its corpus): every command that loads data takes these."""
    g.add_argument("--query-column", default="query", help="query column of a pairs file (default: query)")
    g.add_argument("--positive-column", default="positive", help="positive column of a pairs file (default: positive)")
    g.add_argument("--corpus", help="corpus for a pairs file (corpus.jsonl or one passage per line); default: the positives")


def add_data_args(p: argparse.ArgumentParser, default_split: str = "train") -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a pairs file (.jsonl/.csv/.parquet)")
    g.add_argument("--split", help=f"qrels split of a BEIR folder (default: {default_split}); not for pairs files")
    add_pairs_file_args(g)
    g.add_argument("--max-queries", type=int, help="use only the first N queries (quick trials)")
    p.set_defaults(default_split=default_split)


def add_retriever_args(p: argparse.ArgumentParser, *, trains_model: bool = False, evaluates: bool = False) -> None:
    g = p.add_argument_group("retrieval")
    if trains_model:
        g.add_argument("--retriever", choices=RETRIEVERS,
                       help="candidate source for the hard negatives (default: dense, with the model being trained)")
        g.add_argument("--model", help="sentence-transformers model to fine-tune: a name or a local path")
    else:
        g.add_argument("--retriever", choices=RETRIEVERS,
                       help="candidate source (default: dense when --model is given, else bm25)")
        g.add_argument("--model", help="sentence-transformers model name or local path; on its own it means "
                       "--retriever dense (also used by hybrid)")
    g.add_argument("--query-prompt", help='text put before each query, e.g. "query: "')
    g.add_argument("--document-prompt", help='text put before each document, e.g. "passage: "')
    g.add_argument("--max-length", type=int, help="token limit of the encoder (default: the model's)")
    g.add_argument("--batch-size", type=int, default=64, help="most texts per encoding batch (default: 64)")
    g.add_argument("--max-batch-tokens", type=int, default=4096,
                   help="most padded tokens per encoding batch; bounds memory on long texts (default: 4096)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="encoding precision; auto = bf16 where the CPU/GPU has it (default: auto)")
    g.add_argument("--index", choices=INDEX_KINDS, default="flat",
                   help="FAISS index: flat is exact; hnsw, ivf and the compressed ivf-pq / ivf-sq8 (for 10 M+ "
                   "documents) are approximate, their recall against exact reported (default: flat)")
    g.add_argument("--nlist", type=int, help="IVF cells (default: 4 * sqrt(documents), at most documents / 39 and 4096)")
    g.add_argument("--nprobe", type=int, default=32, help="IVF cells searched per query (default: 32)")
    g.add_argument("--pq-m", type=int, help="ivf-pq bytes per document; must divide the embedding width "
                   "(default: width / 8, e.g. 48 for 384)")
    g.add_argument("--index-sample", type=int,
                   help="documents the IVF kinds train on (default: max(39 * nlist, 50000), at most all)")
    g.add_argument("--refine-factor", type=int, default=2,
                   help="an approximate index finds this many times the depth; exact scores keep the best (default: 2)")
    g.add_argument("--recall-queries", type=int, default=1000,
                   help="queries sampled to measure an approximate index's recall against exact (default: 1000)")
    g.add_argument("--embedding-dtype", choices=EMBEDDING_DTYPES, default="float32",
                   help="how embeddings are stored and memory-mapped; scores are float32 either way "
                   "(default: float32)")
    g.add_argument("--memory-budget", type=budget_bytes,
                   help="memory (beyond the model) that picks encoding and search block sizes, e.g. 4GB; "
                   "see the README's peak-memory table (default: search shards of at most 512 MiB, 4,096-query "
                   "blocks)")
    g.add_argument("--fusion", choices=FUSIONS, default="rrf", help="hybrid fusion (default: rrf)")
    g.add_argument("--stemmer", default="english", help="BM25 stemmer language, or 'none' (default: english)")
    g.add_argument("--stopwords", default="en", help="BM25 stopword list, or 'none' (default: en)")
    if evaluates:
        g.add_argument("--depth", type=int, help="documents ranked per query (default: 100)")
        g.add_argument("--run-dir", help="where embeddings and BM25 indexes are cached, so that the next eval of the "
                       "same model and data encodes nothing (default: none, every eval encodes again)")
    else:
        g.add_argument("--depth", type=int, help="candidates retrieved per query (default: max(100, range-max + 10))")
        g.add_argument("--run-dir", help="where embeddings, BM25 indexes and candidates are cached "
                       "(default: hardneg-run beside --output)")
    p.set_defaults(trains_model=trains_model)


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Who encodes and scores (``mine``, ``eval``, ``train``, ``rescore``): this process, or a Ray cluster."""
    g = p.add_argument_group("execution (encoding and teacher scoring)")
    g.add_argument("--executor", choices=EXECUTORS, default="embedded",
                   help="embedded: in this process; ray: on Ray actors, one model each (pip install 'hardneg[ray]'). "
                   "The run directory is the same either way: a run started with one finishes with the other "
                   "(default: embedded)")
    g.add_argument("--ray-address",
                   help="Ray cluster to join: auto, HOST:6379 or ray://HOST:10001 (default: start a local one)")
    g.add_argument("--workers", type=int, help="Ray actors, each holding one copy of the model (default: 2)")
    g.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray actor; fractions allowed (default: 1)")
    g.add_argument("--gpus-per-worker", type=float, help="GPUs per Ray actor; fractions share a GPU (default: 0)")


def make_executor(args):
    """The executor of ``--executor`` and its Ray flags (:mod:`hardneg.execute`)."""
    from hardneg.execute import executor_from_options

    return executor_from_options(args.executor, address=args.ray_address, workers=args.workers,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)


def warn_if_ray_has_no_work(args, teacher=None) -> None:
    """One line when ``--executor ray`` was asked for but nothing would go to Ray: BM25 without a teacher."""
    if args.executor == "ray" and resolve_retriever(args) == "bm25" and teacher is None:
        logger.warning("--executor ray: nothing here runs on Ray. BM25 has no model to encode with and there is no "
                       "teacher to score with, so the whole run stays in this process; Ray takes encoding "
                       "(--model) and teacher scoring (--cross-encoder).")


def add_selection_args(p: argparse.ArgumentParser, *, default_relative_margin: float | None = None,
                        default_if_short: str = "drop") -> None:
    g = p.add_argument_group("selection")
    g.add_argument("--num-negatives", type=int, default=3, help="negatives per query (default: 3)")
    g.add_argument("--range-min", type=int, default=0, help="skip the N best-ranked non-positive candidates")
    g.add_argument("--range-max", type=int, help="consider only the first N non-positive candidates")
    g.add_argument("--min-score", type=float, help="drop candidates scoring below this")
    g.add_argument("--max-score", type=float, help="drop candidates scoring above this")
    margin = g.add_mutually_exclusive_group()
    margin.add_argument("--absolute-margin", type=float, help="keep only score + M <= positive score (TopK-MarginPos)")
    default = "none" if default_relative_margin is None else f"{default_relative_margin:g} unless --absolute-margin"
    margin.add_argument("--relative-margin", type=margin_or_none,
                        help="keep only score <= positive - |positive| * M (TopK-PercPos; 0.05 = 95%%); "
                        f"'none' for no margin (default: {default})")
    g.add_argument("--sampling", choices=SAMPLING, default="top", help="how negatives are drawn (default: top)")
    g.add_argument("--simans-a", type=float, default=20.0, help="SimANS sharpness (default: 20, for cosine scores)")
    g.add_argument("--simans-b", type=float, default=0.0, help="SimANS offset from the positive score (default: 0)")
    g.add_argument("--if-short", choices=IF_SHORT, default=default_if_short,
                   help="queries with too few negatives: drop, pad with random documents, or keep short "
                   f"(default: {default_if_short})")
    g.add_argument("--keep-duplicate-texts", action="store_true",
                   help="do not drop candidates whose text equals a positive's or an earlier candidate's")
    g.add_argument("--seed", type=int, default=0, help="seed for sampling and padding (default: 0)")
    p.set_defaults(default_relative_margin=default_relative_margin)


def add_teacher_args(p: argparse.ArgumentParser) -> None:
    """Flags that attach a cross-encoder teacher (``mine``, ``rescore``)."""
    g = p.add_argument_group("teacher (cross-encoder)")
    g.add_argument("--cross-encoder", help="teacher: a cross-encoder directory (hardneg train-reranker) or model name")
    g.add_argument("--teacher-max-length", type=int, help="token limit of a (query, document) pair (default: the model's)")
    g.add_argument("--teacher-batch-size", type=int, default=64,
                   help="most pairs per teacher forward pass (at most 8,192 padded tokens; memory grows with both) "
                   "(default: 64)")
    g.add_argument("--teacher-precision", choices=PRECISIONS, default="auto",
                   help="teacher precision; auto = bf16 where the CPU/GPU has it (default: auto)")


def add_denoise_args(p: argparse.ArgumentParser) -> None:
    """Selection flags that read teacher scores (``mine``)."""
    g = p.add_argument_group("teacher selection")
    g.add_argument("--score-source", choices=SCORE_SOURCES, default="retriever",
                   help="scores that order candidates and feed score filters/margins (teacher: cross-encoder mined "
                   "negatives; default: retriever)")
    g.add_argument("--denoise", choices=DENOISE_RULES,
                   help="drop likely false negatives: teacher logit > T (absolute), > positive's logit - T (relative), "
                   "or sigmoid(logit) > T (probability)")
    g.add_argument("--denoise-threshold", type=float, help="T of --denoise (e.g. 0.9 for probability)")
    g.add_argument("--promote-denoised", action="store_true",
                   help="add denoised candidates to the positives in the output (RocketQA-style augmentation)")


def resolve_retriever(args) -> str:
    """``--retriever`` as the user meant it; sets ``args.retriever``.

    Naming a model means dense retrieval with it: without ``--retriever``, ``--model``
    selects ``dense`` (and no model selects ``bm25``). ``--retriever bm25 --model M``
    would silently ignore the model, so it is refused, except in ``train``, where the
    model is the one being fine-tuned and BM25 only mines its negatives.
    """
    chosen = args.retriever
    if chosen is None:
        chosen = "dense" if args.model else "bm25"
    elif chosen == "bm25" and args.model and not args.trains_model:
        raise HardnegError(
            f"--retriever bm25 ranks by words alone and would ignore --model {args.model}. Drop --retriever to "
            "retrieve with the model (dense), use --retriever hybrid for both, or drop --model for BM25."
        )
    args.retriever = chosen
    return chosen


def build_retriever(args, encoder=None, executor=None):
    """The retriever the flags describe (built by :mod:`hardneg.retrieve.registry`).

    Args:
        encoder: the bi-encoder to retrieve with; default: one built from ``--model`` and
            the encoding flags (``train`` passes one wrapping the model being trained).
        executor: who encodes (:func:`make_executor`); None: this process.
    """
    from hardneg.retrieve.bm25 import BM25Config
    from hardneg.retrieve.registry import RetrieverSpec
    from hardneg.retrieve.registry import build_retriever as build
    from hardneg.retrieve.search import IndexConfig

    kind = resolve_retriever(args)
    none = lambda v: None if v is None or v.lower() == "none" else v  # noqa: E731
    if encoder is None and kind != "bm25" and args.model:
        from hardneg.retrieve.encoder import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(
            args.model, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
            max_length=args.max_length, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
            precision=args.precision,
        )
    bm25 = BM25Config(stemmer=none(args.stemmer), stopwords=none(args.stopwords))
    index = IndexConfig(kind=args.index, nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m,
                        train_sample=args.index_sample, refine_factor=args.refine_factor,
                        recall_queries=args.recall_queries)
    return build(RetrieverSpec(kind, bm25=bm25, encoder=encoder, index=index, fusion=args.fusion,
                               embedding_dtype=args.embedding_dtype, memory_budget=args.memory_budget,
                               executor=executor))


# SelectionConfig field -> the flag that sets it. Flags whose dest is the field's name are
# read as they are; the others are converted in selection_config. A test checks that the
# table names every field and that every flag is registered.
SELECTION_FLAGS: dict[str, str] = {
    "num_negatives": "--num-negatives", "range_min": "--range-min", "range_max": "--range-max",
    "min_score": "--min-score", "max_score": "--max-score", "absolute_margin": "--absolute-margin",
    "relative_margin": "--relative-margin", "sampling": "--sampling", "simans_a": "--simans-a",
    "simans_b": "--simans-b", "if_short": "--if-short", "dedupe_texts": "--keep-duplicate-texts", "seed": "--seed",
    "score_source": "--score-source", "denoise": "--denoise", "denoise_threshold": "--denoise-threshold",
    "promote_denoised": "--promote-denoised",
}


def selection_config(args):
    """The :class:`~hardneg.select.SelectionConfig` of the selection (and teacher selection) flags.

    ``--relative-margin none`` turns the margin off; without either margin flag the
    command's default margin applies (``train``: 0.05, ``mine``: none). A command
    without the teacher selection flags (``train``) keeps their defaults.
    """
    from hardneg.select import SelectionConfig

    names = {f.name for f in fields(SelectionConfig)}
    if names != set(SELECTION_FLAGS):
        raise AssertionError(f"SELECTION_FLAGS and SelectionConfig disagree: {sorted(names ^ set(SELECTION_FLAGS))}")
    values = {name: getattr(args, name) for name in SELECTION_FLAGS if hasattr(args, name)}
    relative = args.relative_margin
    if relative is None and args.absolute_margin is None:
        relative = args.default_relative_margin
    values["relative_margin"] = None if relative == "none" else relative
    values["dedupe_texts"] = not args.keep_duplicate_texts
    if hasattr(args, "denoise"):
        if args.denoise is not None and args.denoise_threshold is None:
            raise HardnegError("--denoise needs --denoise-threshold (e.g. --denoise probability "
                               "--denoise-threshold 0.9).")
        if args.denoise is None and args.denoise_threshold is not None:
            raise HardnegError("--denoise-threshold needs --denoise absolute|relative|probability.")
        values["denoise_threshold"] = args.denoise_threshold if args.denoise_threshold is not None else 0.0
    return SelectionConfig(**values)


def make_teacher(args):
    """The teacher the flags describe, or None without ``--cross-encoder``."""
    if not getattr(args, "cross_encoder", None):
        return None
    from hardneg.teacher.scorer import CrossEncoderScorer

    return CrossEncoderScorer(
        args.cross_encoder, max_length=args.teacher_max_length, batch_size=args.teacher_batch_size,
        precision=args.teacher_precision,
    )


def data_split(data: str | Path, split: str | None, default: str) -> str:
    """The qrels split to load: ``split`` or the command's default; a split named for a pairs file is refused."""
    if split is not None and Path(data).is_file():
        raise HardnegError(
            f"--split {split}: {data} is a pairs file, which has no splits (every row is used). Drop --split, "
            "or pass a BEIR folder."
        )
    return split or default


def load_data(args):
    from hardneg.data import load

    data = load(args.data, split=data_split(args.data, args.split, args.default_split), query_column=args.query_column,
                positive_column=args.positive_column, corpus=args.corpus)
    if args.max_queries is not None:
        data = data.subset(range(min(args.max_queries, len(data.queries))))
    return data


def on_disk_if_big(data, run_dir: str | Path | None):
    """``data`` with its corpus memory-mapped from the run directory when it is big (see
    :mod:`hardneg.data.on_disk`); as it is without a run directory, or when it is small."""
    from hardneg.data.on_disk import ON_DISK_FROM_BYTES, corpus_bytes, corpus_on_disk
    from hardneg.store import RunDir

    if data is None or run_dir is None or corpus_bytes(data.corpus) < ON_DISK_FROM_BYTES:
        return data
    return corpus_on_disk(data, RunDir(run_dir).corpus)


def optional_dev_data(data_path: str | Path, requested: str | None):
    """The dev split to evaluate on, or None.

    ``requested`` None means "dev, where the data has one": a BEIR folder without
    ``qrels/dev.tsv`` (or a pairs file) skips the evaluation with one notice. An explicit
    split must exist; ``none`` skips.
    """
    from hardneg.data import load_beir

    folder = Path(data_path)
    if requested is not None and requested.lower() == "none":
        return None
    if requested is not None:
        if not folder.is_dir():
            raise HardnegError(f"--dev-split {requested}: {folder} is a pairs file without splits; drop --dev-split "
                               "(or pass a BEIR folder with qrels/<split>.tsv).")
        return load_beir(folder, requested)
    qrels = folder / "qrels"
    if folder.is_dir() and any(qrels.glob("dev.tsv*")):
        return load_beir(folder, "dev")
    logger.info("no dev split in %s: skipping the dev evaluation (--dev-split NAME picks another split)", folder)
    return None
