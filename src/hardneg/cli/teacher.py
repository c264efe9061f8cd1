"""``hardneg train-reranker`` and ``hardneg rescore``: the cross-encoder teacher."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from hardneg.choices import PRECISIONS, RETRIEVERS
from hardneg.cli.checks import check_output
from hardneg.cli.options import (
    add_executor_args,
    add_pairs_file_args,
    add_teacher_args,
    data_split,
    make_executor,
    make_teacher,
    on_disk_if_big,
    optional_dev_data,
)
from hardneg.errors import HardnegError

logger = logging.getLogger("hardneg")


TRAIN_EXAMPLES = """\
examples:
  # a MiniLM-sized teacher with the defaults (the recipe of runs/teacher-d in bench/RESULTS.md), 500 steps
  hardneg train-reranker data/sample --split train --base sentence-transformers/all-MiniLM-L6-v2 \\
      --output runs/teacher --max-steps 500

  # then mine with it: denoise false negatives, distil its scores
  hardneg mine data/sample --retriever dense --model sentence-transformers/all-MiniLM-L6-v2 \\
      --cross-encoder runs/teacher --denoise probability --denoise-threshold 0.9 --format flag -o train.jsonl

Interrupted? Run the same command again: training resumes from its last checkpoint.
"""


def register(sub) -> None:
    """Add ``train-reranker`` and ``rescore`` to the ``hardneg`` parser."""
    _add_train_reranker(sub)
    _add_rescore(sub)


def _add_train_reranker(sub) -> None:
    from hardneg.gradcache import DEFAULT_CHUNK_TOKENS

    tr = sub.add_parser(
        "train-reranker", help="train a cross-encoder teacher on qrels positives and mined negatives",
        description="Train a sentence-transformers CrossEncoder on each query's positives and negatives mined by "
        "hardneg (listwise softmax loss by default, --loss bce for pointwise binary cross-entropy), then report "
        "its reranking quality on the dev split.",
        epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = tr.add_argument_group("data")
    g.add_argument("data", help="a BEIR folder or a pairs file")
    g.add_argument("--split", help="training qrels split of a BEIR folder (default: train)")
    g.add_argument("--dev-split", help="split to evaluate reranking on, or 'none' (default: dev where the data has "
                   "it, else skipped)")
    add_pairs_file_args(g)
    g.add_argument("--max-queries", type=int, help="train on a seeded random sample of N queries")
    m = tr.add_argument_group("model and training")
    m.add_argument("--base", required=True, help="model to start from (a bi-encoder gets a fresh scoring head)")
    m.add_argument("--output", "-o", required=True,
                   help="directory for the teacher; a sibling OUTPUT.work keeps the mining cache and, while training, "
                   "the checkpoints (a rerun reuses it; delete it when done)")
    m.add_argument("--retriever", "--negatives", dest="negatives", choices=RETRIEVERS, default="hybrid",
                   help="retriever that mines the training negatives, as in mine and train (--negatives is its "
                   "older name; default: hybrid)")
    m.add_argument("--negatives-model", help="bi-encoder for dense/hybrid negatives (default: --base)")
    m.add_argument("--negatives-per-query", type=int, default=3,
                   help="mined negatives per query; with --loss listwise, time per step grows with it, memory does "
                   "not (chunked) (default: 3)")
    m.add_argument("--loss", choices=["listwise", "bce"], default="listwise",
                   help="listwise: softmax over positive, mined and in-batch negatives; bce: pointwise (default: listwise)")
    m.add_argument("--in-batch-negatives", type=int, default=4,
                   help="listwise: other queries' documents added to each query's list (default: 4)")
    m.add_argument("--negative-sampling", choices=["top", "random"], default="random",
                   help="top: the highest-ranked negatives (many are unlabelled positives); random: uniform over the "
                   "retrieved top-100 (default: random)")
    m.add_argument("--epochs", type=float, default=1.0, help="passes over the training examples (default: 1)")
    m.add_argument("--max-steps", type=int, help="stop after N optimiser steps (overrides --epochs)")
    m.add_argument("--batch-size", type=int, default=16,
                   help="examples per step: queries (listwise: each with 1 + negatives + in-batch pairs) or pairs "
                   "(bce); sets time per step, not memory, while --chunk-tokens is on (default: 16)")
    m.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS,
                   help="memory bound: most padded tokens per forward pass; a step's pairs are scored in chunks "
                   "(GradCache, same gradient) so peak memory follows this, not the batch; halve it to save memory; "
                   f"0 = the whole step in one pass, memory grows with the batch (default: {DEFAULT_CHUNK_TOKENS})")
    m.add_argument("--learning-rate", type=float, default=2e-4, help="peak learning rate (default: 2e-4)")
    m.add_argument("--max-length", type=int, default=96,
                   help="token limit of a pair; a chunk holds at least one pair, so memory grows with it once it "
                   "exceeds --chunk-tokens (default: 96)")
    m.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="training precision; auto = bf16 on a GPU, fp32 on a CPU (CPU bf16 autocast trains slower) "
                   "(default: auto)")
    m.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default: 50)")
    m.add_argument("--seed", type=int, default=0, help="seed for sampling, head init and shuffling (default: 0)")
    m.add_argument("--eval-depth", type=int, default=30, help="BM25 documents per dev query to rerank (default: 30)")
    m.add_argument("--eval-max-queries", type=int, default=200,
                   help="evaluate on a seeded sample of N dev queries; 0 = all (default: 200)")
    tr.set_defaults(func=cmd_train_reranker)


def _add_rescore(sub) -> None:
    rs = sub.add_parser(
        "rescore", help="give every candidate and positive of a run a teacher score",
        description="Score the run directory's latest candidates with a cross-encoder teacher (batched across "
        "queries, length-sorted, cached and resumable). Later `hardneg mine --run-dir RUN_DIR` calls can then "
        "denoise or select by teacher score without --cross-encoder.",
    )
    rs.add_argument("run_dir", help="a run directory written by `hardneg mine`")
    rs.add_argument("--data", help="the data the candidates were mined from (default: the path recorded in the run)")
    rs.add_argument("--split", help="qrels split of --data (default: the recorded one, else train)")
    add_pairs_file_args(rs)
    rs.add_argument("--shard-size", type=int, default=4096, help="pairs per saved shard (resume granularity; default: 4096)")
    add_teacher_args(rs)
    add_executor_args(rs)
    rs.set_defaults(func=cmd_rescore)


def cmd_train_reranker(args) -> int:
    from hardneg.data import load
    from hardneg.train.reranker import TeacherTrainingConfig, train_reranker

    config = TeacherTrainingConfig(
        negatives=args.negatives, negatives_model=args.negatives_model, negatives_per_query=args.negatives_per_query,
        negative_sampling=args.negative_sampling, loss=args.loss, in_batch_negatives=args.in_batch_negatives,
        max_queries=args.max_queries, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        chunk_tokens=args.chunk_tokens, learning_rate=args.learning_rate, max_length=args.max_length,
        precision=args.precision,
        save_steps=args.save_steps, seed=args.seed, eval_depth=args.eval_depth,
        eval_max_queries=args.eval_max_queries or None,
    )
    kwargs = {"query_column": args.query_column, "positive_column": args.positive_column, "corpus": args.corpus}
    output = check_output(args.output, args, folder=True)
    check_output(output.parent / f"{output.name}.work", args, folder=True, what="work folder")
    data = load(args.data, split=data_split(args.data, args.split, "train"), **kwargs)
    dev = optional_dev_data(args.data, args.dev_split)
    result = train_reranker(data, args.base, args.output, config, dev_data=dev, show_progress=not args.quiet)
    print(result.format_table())
    print(f"saved     {Path(args.output) / 'train_reranker.json'}")
    return 0


def _recorded_data(manifest: dict, args):
    """Load the data a run's candidates were mined from: --data, else the path the run recorded."""
    from hardneg.data import DataSource, load, reload

    kwargs = {"query_column": args.query_column, "positive_column": args.positive_column}
    if args.data:
        split = data_split(args.data, args.split, "train")
        return load(args.data, split=split, corpus=args.corpus, **kwargs) if not Path(args.data).is_dir() \
            else load(args.data, split=split)
    record = manifest.get("data_source")
    source = DataSource.from_dict(record) if isinstance(record, dict) else None
    if source is not None and source.kind == "beir" and Path(source.path).is_dir():
        return reload(replace(source, split=args.split or source.split))
    if source is not None and source.kind == "pairs" and Path(source.path).is_file():
        return reload(source)
    raise HardnegError(
        f"Cannot reload the run's data from its record {manifest.get('data', '')!r}; pass it with --data PATH "
        "(and --split)."
    )


def _aligned(data, candidates, expected_fingerprint: str | None):
    """``data`` cut to the candidates' queries (runs mined with --max-queries), checked against the record."""
    if tuple(data.queries.ids) != tuple(candidates.query_ids):
        row_of = {q: i for i, q in enumerate(data.queries.ids)}
        missing = [q for q in candidates.query_ids if q not in row_of]
        if missing:
            raise HardnegError(
                f"Query {missing[0]!r} of the candidates is not in {data.source}; pass the data they were mined "
                "from with --data/--split."
            )
        data = data.subset([row_of[q] for q in candidates.query_ids])
    if expected_fingerprint and data.fingerprint() != expected_fingerprint:
        raise HardnegError(
            f"{data.source} differs from the data the candidates were mined from (fingerprint mismatch); pass the "
            "same data (and --split) as the mine command."
        )
    return data


def cmd_rescore(args) -> int:
    from hardneg.candidates import Candidates
    from hardneg.report import FALSE_NEGATIVE_TOP
    from hardneg.select import denoise, filters
    from hardneg.store import RunDir, integrity_problem, read_artifact
    from hardneg.teacher.rescore import rescore_candidates

    if not args.cross_encoder:
        raise HardnegError("rescore needs --cross-encoder MODEL (e.g. a directory written by hardneg train-reranker).")
    if not Path(args.run_dir).is_dir():
        raise HardnegError(f"{args.run_dir} is not a run directory; pass the --run-dir of a `hardneg mine` run.")
    run = RunDir(args.run_dir)
    path = run.latest_candidates()
    problem = integrity_problem(path)
    if problem is not None:
        raise HardnegError(f"The run's candidates {path} are damaged ({problem}); run the `hardneg mine` command "
                           "again with the same --run-dir (it rebuilds them), then rescore.")
    manifest = read_artifact(path.with_suffix(".json"), lambda p: json.loads(p.read_text(encoding="utf-8")),
                             what="candidates record") or {}
    candidates = Candidates.load(path)
    data = on_disk_if_big(_aligned(_recorded_data(manifest, args), candidates, manifest.get("data_fingerprint")),
                          run.path)
    teacher, executor = make_teacher(args), make_executor(args)
    t0 = time.perf_counter()
    scored = rescore_candidates(candidates, data, teacher, run_dir=run, shard_size=args.shard_size,
                                show_progress=not args.quiet, executor=executor)
    seconds = time.perf_counter() - t0
    scored.save(path)
    ref = filters.reference_positive_score(scored.teacher_positive_scores)
    relevant = denoise.teacher_says_relevant(scored.teacher_scores, ref, "probability", 0.5)
    rates = denoise.false_negative_rates(
        dict(scored.source_ranks), filters.is_positive(scored.doc_ids, data.positives), relevant, FALSE_NEGATIVE_TOP
    )
    print(f"rescored  {path} with teacher {scored.teacher} in {seconds:.1f}s")
    print(f"est. false negatives in each source's raw top-{FALSE_NEGATIVE_TOP} (sigmoid(teacher logit) > 0.5):")
    for name, r in rates.items():
        print(f"  {name:<10}{r['rate']:.3f}  ({r['flagged']} of {r['candidates']})")
    return 0
