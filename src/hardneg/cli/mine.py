"""``hardneg mine`` and ``hardneg eval``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from hardneg.cli.checks import check_output, check_run_dir
from hardneg.cli.options import (
    add_data_args,
    add_denoise_args,
    add_executor_args,
    add_retriever_args,
    add_selection_args,
    add_teacher_args,
    build_retriever,
    load_data,
    make_executor,
    make_teacher,
    on_disk_if_big,
    selection_config,
    warn_if_ray_has_no_work,
)

logger = logging.getLogger("hardneg")


MINE_EXAMPLES = """\
examples:
  # BM25 negatives from a BEIR folder, 5 per query, as sentence-transformers triplets
  hardneg mine data/sample --num-negatives 5 --output train.jsonl

  # dense negatives (--model implies --retriever dense) kept below 95% of the positive's score
  # (NV-Retriever TopK-PercPos)
  hardneg mine data/sample --model sentence-transformers/all-MiniLM-L6-v2 \\
      --relative-margin 0.05 --format flag --output train.flag.jsonl

  # a pairs file (query, positive columns) with its own corpus
  hardneg mine pairs.parquet --corpus corpus.jsonl --retriever hybrid --model ./my-model \\
      --format n-tuple --output train.parquet

Mining again with the same --run-dir and only selection flags changed reuses the saved
candidates (and embeddings) and takes seconds.
"""


def register(sub) -> None:
    """Add ``mine`` and ``eval`` to the ``hardneg`` parser."""
    from hardneg.formats import FORMATS

    mine = sub.add_parser(
        "mine", help="mine hard negatives and write a training file",
        description="Retrieve candidates, select hard negatives, write a training file and a report.",
        epilog=MINE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(mine)
    add_retriever_args(mine)
    add_selection_args(mine)
    add_teacher_args(mine)
    add_denoise_args(mine)
    add_executor_args(mine)
    out = mine.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="triplet", help="training-file layout (default: triplet)")
    out.add_argument("--output", "-o", required=True,
                     help="file to write: .jsonl, .jsonl.gz or .parquet (.json and .json.gz are written as JSON lines too)")
    out.add_argument("--with-scores", action="store_true",
                     help="add the selection's scores to triplet/n-tuple/labeled rows (the retriever's; the "
                     "teacher's with --score-source teacher)")
    mine.set_defaults(func=cmd_mine)

    ev = sub.add_parser(
        "eval", help="nDCG@10, Recall@10/100, MRR@10 and MAP of a model or BM25 on a split",
        description="Retrieve the top documents for every query of a split and score them against its qrels "
        "(pytrec_eval). Positives stay in the ranking. With --model the model's dense retrieval is evaluated, "
        "without it BM25.",
    )
    add_data_args(ev, default_split="test")
    add_retriever_args(ev, evaluates=True)
    add_executor_args(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object with the metrics, nothing else")
    ev.set_defaults(func=cmd_eval)


def cmd_mine(args) -> int:
    from hardneg.export import check_format, export
    from hardneg.mine import Miner

    config = selection_config(args)
    output = Path(args.output)
    run_dir = Path(args.run_dir) if args.run_dir else output.parent / "hardneg-run"
    check_output(output, args, run_dir=run_dir)  # first the path the user chose; the default run dir sits beside it
    check_run_dir(run_dir)
    check_format(output, args.format, if_short=config.if_short)
    executor, teacher = make_executor(args), make_teacher(args)
    warn_if_ray_has_no_work(args, teacher)
    data = on_disk_if_big(load_data(args), run_dir)
    miner = Miner(build_retriever(args, executor=executor), config, depth=args.depth, run_dir=run_dir,
                  show_progress=not args.quiet, teacher=teacher, executor=executor)
    result = miner.mine(data, save_report=False)
    if result.reused_candidates:
        logger.info("reused saved candidates from %s: only selection ran", run_dir)
    t0 = time.perf_counter()
    export(data, result.selection, output, args.format, with_scores=args.with_scores)
    report = result.report
    report.seconds["export"] = round(time.perf_counter() - t0, 3)
    report.output = str(output)
    miner.save_report(data, result)  # only now: a failed run leaves the last good report in place
    print(report.format_table())
    print(f"report    {miner.run_dir.report}")
    return 0


def cmd_eval(args) -> int:
    import json

    from hardneg.evaluate import MEASURES, evaluate_retriever
    from hardneg.store import RunDir

    run_dir = RunDir(check_run_dir(args.run_dir)) if args.run_dir else None
    retriever = build_retriever(args, executor=make_executor(args))
    warn_if_ray_has_no_work(args)
    data = on_disk_if_big(load_data(args), run_dir.path if run_dir else None)
    metrics = evaluate_retriever(retriever, data, depth=args.depth or 100, run_dir=run_dir,
                                 show_progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps({k: round(v, 6) for k, v in metrics.items()}))
    else:
        print(f"{data.source}: {len(data.queries)} queries, {len(data.corpus)} documents ({args.retriever}"
              + (f", {args.model}" if args.retriever != "bm25" else "") + ")")
        for key in MEASURES:
            print(f"{key:<12}{metrics[key]:.4f}")
    return 0
