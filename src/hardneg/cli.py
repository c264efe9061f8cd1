"""Command line: ``hardneg mine ...``; each subcommand mirrors the Python API."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hardneg.errors import HardnegError

logger = logging.getLogger("hardneg")

MINE_EXAMPLES = """\
examples:
  # BM25 negatives from a BEIR folder, 5 per query, as sentence-transformers triplets
  hardneg mine data/sample --retriever bm25 --num-negatives 5 --output train.jsonl

  # dense negatives kept below 95% of the positive's score (NV-Retriever TopK-PercPos)
  hardneg mine data/sample --retriever dense --model sentence-transformers/all-MiniLM-L6-v2 \\
      --relative-margin 0.05 --format flag --output train.flag.jsonl

  # a pairs file (query, positive columns) with its own corpus
  hardneg mine pairs.parquet --corpus corpus.jsonl --retriever hybrid --model ./my-model \\
      --format n-tuple --output train.parquet

Mining again with the same --run-dir and only selection flags changed reuses the saved
candidates (and embeddings) and takes seconds.
"""


def _add_data_args(p: argparse.ArgumentParser, default_split: str = "train") -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a pairs file (.jsonl/.csv/.parquet)")
    g.add_argument("--split", default=default_split, help=f"qrels split of a BEIR folder (default: {default_split})")
    g.add_argument("--query-column", default="query", help="query column of a pairs file (default: query)")
    g.add_argument("--positive-column", default="positive", help="positive column of a pairs file (default: positive)")
    g.add_argument("--corpus", help="corpus for a pairs file (corpus.jsonl or one passage per line); default: the positives")
    g.add_argument("--max-queries", type=int, help="use only the first N queries (quick trials)")


def _add_retriever_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("retrieval")
    g.add_argument("--retriever", choices=["bm25", "dense", "hybrid"], default="bm25", help="candidate source (default: bm25)")
    g.add_argument("--model", help="sentence-transformers model name or local path (dense, hybrid)")
    g.add_argument("--query-prompt", help='text put before each query, e.g. "query: "')
    g.add_argument("--document-prompt", help='text put before each document, e.g. "passage: "')
    g.add_argument("--max-length", type=int, help="token limit of the encoder (default: the model's)")
    g.add_argument("--batch-size", type=int, default=64, help="most texts per encoding batch (default: 64)")
    g.add_argument("--max-batch-tokens", type=int, default=4096,
                   help="most padded tokens per encoding batch; bounds memory on long texts (default: 4096)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="encoding precision; auto = bf16 where the CPU/GPU has it (default: auto)")
    g.add_argument("--index", choices=["flat", "hnsw", "ivf"], default="flat", help="FAISS index (default: flat, exact)")
    g.add_argument("--fusion", choices=["rrf", "union"], default="rrf", help="hybrid fusion (default: rrf)")
    g.add_argument("--stemmer", default="english", help="BM25 stemmer language, or 'none' (default: english)")
    g.add_argument("--stopwords", default="en", help="BM25 stopword list, or 'none' (default: en)")
    g.add_argument("--depth", type=int, help="candidates retrieved per query (default: max(100, range-max + 10))")
    g.add_argument("--run-dir", help="where embeddings and candidates are cached (default: hardneg-run beside --output)")


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("selection")
    g.add_argument("--num-negatives", type=int, default=3, help="negatives per query (default: 3)")
    g.add_argument("--range-min", type=int, default=0, help="skip the N best-ranked non-positive candidates")
    g.add_argument("--range-max", type=int, help="consider only the first N non-positive candidates")
    g.add_argument("--min-score", type=float, help="drop candidates scoring below this")
    g.add_argument("--max-score", type=float, help="drop candidates scoring above this")
    margin = g.add_mutually_exclusive_group()
    margin.add_argument("--absolute-margin", type=float, help="keep only score + M <= positive score (TopK-MarginPos)")
    margin.add_argument("--relative-margin", type=float,
                        help="keep only score <= positive - |positive| * M (TopK-PercPos; 0.05 = 95%%)")
    g.add_argument("--sampling", choices=["top", "random", "simans"], default="top", help="how negatives are drawn (default: top)")
    g.add_argument("--simans-a", type=float, default=20.0, help="SimANS sharpness (default: 20, for cosine scores)")
    g.add_argument("--simans-b", type=float, default=0.0, help="SimANS offset from the positive score (default: 0)")
    g.add_argument("--if-short", choices=["drop", "pad", "keep"], default="drop",
                   help="queries with too few negatives: drop, pad with random documents, or keep short (default: drop)")
    g.add_argument("--keep-duplicate-texts", action="store_true",
                   help="do not drop candidates whose text equals a positive's or an earlier candidate's")
    g.add_argument("--seed", type=int, default=0, help="seed for sampling and padding (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardneg", description="Mine, clean and train with hard negatives for dense retrievers."
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", required=True)

    mine = sub.add_parser(
        "mine", help="mine hard negatives and write a training file",
        description="Retrieve candidates, select hard negatives, write a training file and a report.",
        epilog=MINE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_args(mine)
    _add_retriever_args(mine)
    _add_selection_args(mine)
    from hardneg.score.cli import add_denoise_args, add_teacher_args

    add_teacher_args(mine)
    add_denoise_args(mine)
    out = mine.add_argument_group("output")
    from hardneg.export import FORMATS

    out.add_argument("--format", choices=FORMATS, default="triplet", help="training-file layout (default: triplet)")
    out.add_argument("--output", "-o", required=True, help="file to write: .jsonl, .jsonl.gz or .parquet")
    out.add_argument("--with-scores", action="store_true",
                     help="add the selection's scores to triplet/n-tuple/labeled rows (the retriever's; the "
                     "teacher's with --score-source teacher)")
    mine.set_defaults(func=cmd_mine)

    ev = sub.add_parser(
        "eval", help="nDCG@10, Recall@10/100, MRR@10 and MAP of a model or BM25 on a split",
        description="Retrieve the top documents for every query of a split and score them against its qrels "
        "(pytrec_eval). Positives stay in the ranking.",
    )
    _add_data_args(ev, default_split="test")
    _add_retriever_args(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object with the metrics, nothing else")
    ev.set_defaults(func=cmd_eval)

    from hardneg.score.cli import register as register_teacher_commands
    from hardneg.train.cli import register as register_training_commands

    register_teacher_commands(sub)
    register_training_commands(sub)
    return parser


def make_retriever(args):
    """The retriever the flags describe."""
    from hardneg.retrieve.bm25 import BM25Config, BM25Retriever

    none = lambda v: None if v is None or v.lower() == "none" else v  # noqa: E731
    bm25 = BM25Retriever(BM25Config(stemmer=none(args.stemmer), stopwords=none(args.stopwords)))
    if args.retriever == "bm25":
        return bm25
    if not args.model:
        raise HardnegError(
            f"--retriever {args.retriever} needs --model: a sentence-transformers name "
            "(e.g. sentence-transformers/all-MiniLM-L6-v2) or a local model directory."
        )
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.retrieve.search import IndexConfig

    encoder = SentenceTransformerEncoder(
        args.model, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
        max_length=args.max_length, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
        precision=args.precision,
    )
    dense = DenseRetriever(encoder, IndexConfig(kind=args.index))
    if args.retriever == "dense":
        return dense
    from hardneg.retrieve.hybrid import HybridRetriever

    return HybridRetriever(bm25, dense, fusion=args.fusion)


def load_data(args):
    from hardneg.data import load

    data = load(args.data, split=args.split, query_column=args.query_column,
                positive_column=args.positive_column, corpus=args.corpus)
    if args.max_queries is not None:
        if args.max_queries < 1:
            raise HardnegError(f"--max-queries must be at least 1, got {args.max_queries}.")
        data = data.subset(range(min(args.max_queries, len(data.queries))))
    return data


def cmd_mine(args) -> int:
    from hardneg.export import export
    from hardneg.mine import Miner
    from hardneg.score.cli import make_teacher, teacher_selection_kwargs
    from hardneg.select import SelectionConfig

    config = SelectionConfig(
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        min_score=args.min_score, max_score=args.max_score, absolute_margin=args.absolute_margin,
        relative_margin=args.relative_margin, sampling=args.sampling, simans_a=args.simans_a,
        simans_b=args.simans_b, if_short=args.if_short, dedupe_texts=not args.keep_duplicate_texts, seed=args.seed,
        **teacher_selection_kwargs(args),
    )
    output = Path(args.output)
    run_dir = Path(args.run_dir) if args.run_dir else output.parent / "hardneg-run"
    data = load_data(args)
    logger.info("loaded %d queries, %d documents from %s", len(data.queries), len(data.corpus), data.source)
    miner = Miner(make_retriever(args), config, depth=args.depth, run_dir=run_dir, show_progress=not args.quiet,
                  teacher=make_teacher(args))
    result = miner.mine(data)
    if result.reused_candidates:
        logger.info("reused saved candidates from %s: only selection ran", run_dir)
    t0 = time.perf_counter()
    export(data, result.selection, output, args.format, with_scores=args.with_scores)
    report = result.report
    report.seconds["export"] = round(time.perf_counter() - t0, 3)
    report.output = str(output)
    report.save(miner.run_dir.report)
    print(report.format_table())
    print(f"report    {miner.run_dir.report}")
    return 0


def cmd_eval(args) -> int:
    import json

    from hardneg.evaluate import MEASURES, evaluate_retriever

    data = load_data(args)
    metrics = evaluate_retriever(make_retriever(args), data, depth=args.depth or 100,
                                 show_progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps({k: round(v, 6) for k, v in metrics.items()}))
    else:
        print(f"{data.source}: {len(data.queries)} queries, {len(data.corpus)} documents")
        for key in MEASURES:
            print(f"{key:<12}{metrics[key]:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = args.quiet or getattr(args, "json", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except HardnegError as exc:
        print(f"hardneg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hardneg: interrupted; rerun the same command to resume from the saved shards", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
