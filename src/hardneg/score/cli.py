"""Teacher subcommands: ``train-reranker``, ``rescore`` and ``report``; teacher flags for ``mine``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from hardneg.errors import HardnegError
from hardneg.score.train import DEFAULT_CHUNK_TOKENS

logger = logging.getLogger("hardneg")

TRAIN_EXAMPLES = """\
examples:
  # a MiniLM-sized teacher with the defaults (the recipe of runs/teacher-d in bench/RESULTS.md), 500 steps
  hardneg train-reranker data/debian-desc --split train --base sentence-transformers/all-MiniLM-L6-v2 \\
      --output runs/teacher --max-steps 500

  # then mine with it: denoise false negatives, distil its scores
  hardneg mine data/debian-desc --retriever dense --model sentence-transformers/all-MiniLM-L6-v2 \\
      --cross-encoder runs/teacher --denoise probability --denoise-threshold 0.9 --format flag -o train.jsonl

Interrupted? Run the same command again: training resumes from its last checkpoint.
"""


def add_teacher_args(p: argparse.ArgumentParser) -> None:
    """Flags that attach a cross-encoder teacher (``mine``, ``rescore``)."""
    g = p.add_argument_group("teacher (cross-encoder)")
    g.add_argument("--cross-encoder", help="teacher: a cross-encoder directory (hardneg train-reranker) or model name")
    g.add_argument("--teacher-max-length", type=int, help="token limit of a (query, document) pair (default: the model's)")
    g.add_argument("--teacher-batch-size", type=int, default=64, help="most pairs per teacher forward pass (at most 8,192 padded tokens; memory grows with "
                   "both) (default: 64)")
    g.add_argument("--teacher-precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="teacher precision; auto = bf16 where the CPU/GPU has it (default: auto)")


def add_denoise_args(p: argparse.ArgumentParser) -> None:
    """Selection flags that read teacher scores (``mine``)."""
    g = p.add_argument_group("teacher selection")
    g.add_argument("--score-source", choices=["retriever", "teacher"], default="retriever",
                   help="scores that order candidates and feed score filters/margins (teacher: cross-encoder mined "
                   "negatives; default: retriever)")
    g.add_argument("--denoise", choices=["absolute", "relative", "probability"],
                   help="drop likely false negatives: teacher logit > T (absolute), > positive's logit - T (relative), "
                   "or sigmoid(logit) > T (probability)")
    g.add_argument("--denoise-threshold", type=float, help="T of --denoise (e.g. 0.9 for probability)")
    g.add_argument("--promote-denoised", action="store_true",
                   help="add denoised candidates to the positives in the output (RocketQA-style augmentation)")


def teacher_selection_kwargs(args) -> dict:
    """SelectionConfig fields from the teacher selection flags."""
    if args.denoise is not None and args.denoise_threshold is None:
        raise HardnegError("--denoise needs --denoise-threshold (e.g. --denoise probability --denoise-threshold 0.9).")
    if args.denoise is None and args.denoise_threshold is not None:
        raise HardnegError("--denoise-threshold needs --denoise absolute|relative|probability.")
    return {
        "score_source": args.score_source,
        "denoise": args.denoise,
        "denoise_threshold": args.denoise_threshold if args.denoise_threshold is not None else 0.0,
        "promote_denoised": args.promote_denoised,
    }


def make_teacher(args):
    """The teacher the flags describe, or None without ``--cross-encoder``."""
    if not getattr(args, "cross_encoder", None):
        return None
    from hardneg.score.cross_encoder import CrossEncoderScorer

    return CrossEncoderScorer(
        args.cross_encoder, max_length=args.teacher_max_length, batch_size=args.teacher_batch_size,
        precision=args.teacher_precision,
    )


def register(sub) -> None:
    """Add the teacher subcommands to the ``hardneg`` parser."""
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
    g.add_argument("--query-column", default="query", help="query column of a pairs file (default: query)")
    g.add_argument("--positive-column", default="positive", help="positive column of a pairs file (default: positive)")
    g.add_argument("--corpus", help="corpus for a pairs file")
    g.add_argument("--max-queries", type=int, help="train on a seeded random sample of N queries")
    m = tr.add_argument_group("model and training")
    m.add_argument("--base", required=True, help="model to start from (a bi-encoder gets a fresh scoring head)")
    m.add_argument("--output", "-o", required=True, help="directory for the teacher (and its checkpoints while training)")
    m.add_argument("--negatives", choices=["bm25", "dense", "hybrid"], default="hybrid",
                   help="where training negatives come from (default: hybrid)")
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
    m.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="training precision; auto = bf16 on a GPU, fp32 on a CPU (CPU bf16 autocast trains slower) "
                   "(default: auto)")
    m.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default: 50)")
    m.add_argument("--seed", type=int, default=0, help="seed for sampling, head init and shuffling (default: 0)")
    m.add_argument("--eval-depth", type=int, default=30, help="BM25 documents per dev query to rerank (default: 30)")
    m.add_argument("--eval-max-queries", type=int, default=200,
                   help="evaluate on a seeded sample of N dev queries; 0 = all (default: 200)")
    tr.set_defaults(func=cmd_train_reranker)

    rs = sub.add_parser(
        "rescore", help="give every candidate and positive of a run a teacher score",
        description="Score the run directory's latest candidates with a cross-encoder teacher (batched across "
        "queries, length-sorted, cached and resumable). Later `hardneg mine --run-dir RUN_DIR` calls can then "
        "denoise or select by teacher score without --cross-encoder.",
    )
    rs.add_argument("run_dir", help="a run directory written by `hardneg mine`")
    rs.add_argument("--data", help="the data the candidates were mined from (default: the path recorded in the run)")
    rs.add_argument("--split", help="qrels split of --data (default: the recorded one, else train)")
    rs.add_argument("--corpus", help="corpus of a pairs file")
    rs.add_argument("--query-column", default="query", help="query column of a pairs file (default: query)")
    rs.add_argument("--positive-column", default="positive", help="positive column of a pairs file (default: positive)")
    rs.add_argument("--shard-size", type=int, default=4096, help="pairs per saved shard (resume granularity; default: 4096)")
    add_teacher_args(rs)
    rs.set_defaults(func=cmd_rescore)

    rp = sub.add_parser(
        "report", help="write a self-contained HTML page with the run's plots",
        description="Render RUN_DIR/report.json and the saved score samples as one HTML page with embedded PNG plots.",
    )
    rp.add_argument("run_dir", help="a run directory written by `hardneg mine`")
    rp.add_argument("--output", "-o", help="page to write (default: RUN_DIR/report.html)")
    rp.set_defaults(func=cmd_report)


def cmd_train_reranker(args) -> int:
    from hardneg.cli import check_output, data_split, optional_dev_data
    from hardneg.data import load
    from hardneg.score.train import TeacherTrainingConfig, train_reranker

    config = TeacherTrainingConfig(
        negatives=args.negatives, negatives_model=args.negatives_model, negatives_per_query=args.negatives_per_query,
        negative_sampling=args.negative_sampling, loss=args.loss, in_batch_negatives=args.in_batch_negatives,
        max_queries=args.max_queries, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        chunk_tokens=args.chunk_tokens, learning_rate=args.learning_rate, max_length=args.max_length, precision=args.precision,
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
        from hardneg.cli import data_split

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
    from hardneg.score.rescore import rescore_candidates
    from hardneg.select import denoise, filters
    from hardneg.store import RunDir, integrity_problem, read_artifact

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
    data = _aligned(_recorded_data(manifest, args), candidates, manifest.get("data_fingerprint"))
    teacher = make_teacher(args)
    t0 = time.perf_counter()
    scored = rescore_candidates(candidates, data, teacher, run_dir=run, shard_size=args.shard_size,
                                show_progress=not args.quiet)
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


def cmd_report(args) -> int:
    from hardneg.cli import check_output
    from hardneg.report import MiningReport
    from hardneg.report_html import PAGE, render_html
    from hardneg.store import RunDir

    if not Path(args.run_dir).is_dir():
        raise HardnegError(f"{args.run_dir} is not a run directory; pass the --run-dir of a `hardneg mine` run.")
    page = Path(args.output) if args.output else Path(args.run_dir) / PAGE
    if page.resolve() != (Path(args.run_dir) / PAGE).resolve():
        check_output(page, args, run_dir=args.run_dir)
    run = RunDir(args.run_dir)
    report = MiningReport.load(run.report) if run.report.is_file() else None
    page = render_html(run.path, page)
    if report is not None:
        print(report.format_table())
    print(f"page      {page}")
    return 0
