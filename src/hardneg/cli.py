"""Command line: ``hardneg mine ...``; each subcommand mirrors the Python API.

Imports stay light at the top of this module (the console script imports it before
``main`` runs); everything heavy is imported inside :func:`main`, where Ctrl-C and
errors become one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from hardneg.choices import FUSIONS, IF_SHORT, INDEX_KINDS, PRECISIONS, RETRIEVERS, SAMPLING
from hardneg.errors import HardnegError

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

# Numeric flags and the smallest value each accepts (every float flag must also be finite).
# One table for every subcommand: a flag means the same wherever it appears.
MINIMUM = {
    "max_queries": 1, "max_length": 1, "batch_size": 1, "max_batch_tokens": 1, "depth": 1, "num_negatives": 1,
    "range_min": 0, "range_max": 1, "seed": 0, "teacher_max_length": 1, "teacher_batch_size": 1, "shard_size": 1,
    "train_batch_size": 2, "mini_batch_size": 1, "max_steps": 1, "save_steps": 1, "refresh_every": 1,
    "staleness_k": 1, "dev_max_queries": 1, "negatives_per_query": 1, "in_batch_negatives": 0, "eval_depth": 1,
    "eval_max_queries": 0, "distill_weight": 0, "warmup_ratio": 0, "chunk_tokens": 0,
}
# Float flags that must be strictly positive, and those with an upper bound.
POSITIVE = {"simans_a", "learning_rate", "epochs", "teacher_temperature"}
MAXIMUM = {"warmup_ratio": 1}


class _Parser(argparse.ArgumentParser):
    """argparse with hardneg's one-line error format (``hardneg: error: ...``)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"hardneg: error: {message}\n")


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


def _add_data_args(p: argparse.ArgumentParser, default_split: str = "train") -> None:
    g = p.add_argument_group("data")
    g.add_argument("data", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a pairs file (.jsonl/.csv/.parquet)")
    g.add_argument("--split", help=f"qrels split of a BEIR folder (default: {default_split}); not for pairs files")
    g.add_argument("--query-column", default="query", help="query column of a pairs file (default: query)")
    g.add_argument("--positive-column", default="positive", help="positive column of a pairs file (default: positive)")
    g.add_argument("--corpus", help="corpus for a pairs file (corpus.jsonl or one passage per line); default: the positives")
    g.add_argument("--max-queries", type=int, help="use only the first N queries (quick trials)")
    p.set_defaults(default_split=default_split)


def _add_retriever_args(p: argparse.ArgumentParser, *, trains_model: bool = False) -> None:
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
    g.add_argument("--index", choices=INDEX_KINDS, default="flat", help="FAISS index (default: flat, exact)")
    g.add_argument("--fusion", choices=FUSIONS, default="rrf", help="hybrid fusion (default: rrf)")
    g.add_argument("--stemmer", default="english", help="BM25 stemmer language, or 'none' (default: english)")
    g.add_argument("--stopwords", default="en", help="BM25 stopword list, or 'none' (default: en)")
    g.add_argument("--depth", type=int, help="candidates retrieved per query (default: max(100, range-max + 10))")
    g.add_argument("--run-dir", help="where embeddings and candidates are cached (default: hardneg-run beside --output)")
    p.set_defaults(trains_model=trains_model)


def _add_selection_args(p: argparse.ArgumentParser, *, default_relative_margin: float | None = None,
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hardneg", description="Mine, clean and train with hard negatives for dense retrievers.")
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
        "(pytrec_eval). Positives stay in the ranking. With --model the model's dense retrieval is evaluated, "
        "without it BM25.",
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


def make_retriever(args):
    """The retriever the flags describe (built by :mod:`hardneg.retrieve.registry`)."""
    from hardneg.retrieve.bm25 import BM25Config
    from hardneg.retrieve.registry import RetrieverSpec, build_retriever
    from hardneg.retrieve.search import IndexConfig

    kind = resolve_retriever(args)
    none = lambda v: None if v is None or v.lower() == "none" else v  # noqa: E731
    encoder = None
    if kind != "bm25" and args.model:
        from hardneg.retrieve.encoder import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(
            args.model, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
            max_length=args.max_length, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
            precision=args.precision,
        )
    bm25 = BM25Config(stemmer=none(args.stemmer), stopwords=none(args.stopwords))
    return build_retriever(RetrieverSpec(kind, bm25=bm25, encoder=encoder, index=IndexConfig(kind=args.index),
                                         fusion=args.fusion))


def selection_config(args, **extra):
    """The :class:`~hardneg.select.SelectionConfig` of the selection flags.

    ``--relative-margin none`` turns the margin off; without either margin flag the
    command's default margin applies (``train``: 0.05, ``mine``: none).
    """
    from hardneg.select import SelectionConfig

    relative = args.relative_margin
    if relative is None and args.absolute_margin is None:
        relative = args.default_relative_margin
    return SelectionConfig(
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        min_score=args.min_score, max_score=args.max_score, absolute_margin=args.absolute_margin,
        relative_margin=None if relative == "none" else relative, sampling=args.sampling, simans_a=args.simans_a,
        simans_b=args.simans_b, if_short=args.if_short, dedupe_texts=not args.keep_duplicate_texts, seed=args.seed,
        **extra,
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


def input_files(args) -> list[Path]:
    """Every file the command reads: the data (or a BEIR folder's files), --corpus, --negatives."""
    files = []
    data = Path(args.data) if getattr(args, "data", None) else None
    if data is not None and data.is_dir():
        files += [p for p in data.glob("*") if p.is_file()]
        files += [p for p in (data / "qrels").glob("*") if p.is_file()]
    elif data is not None:
        files.append(data)
    for extra in ("corpus", "negatives"):
        value = getattr(args, extra, None)
        if isinstance(value, str) and value:
            files.append(Path(value))
    return files


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable(path: Path, what: str, *, folder: bool = False) -> None:
    """Refuse a path whose nearest existing folder cannot be written (read-only, no permission)."""
    start = path if folder else path.parent
    while not start.exists() and start != start.parent:
        start = start.parent
    if not start.is_dir():
        raise HardnegError(f"{what} {path}: {start} is a file, not a folder; choose another path.")
    if not os.access(start, os.W_OK):
        raise HardnegError(f"{what} {path}: cannot write in {start} (read-only or no permission); choose "
                           "another path.")


def check_output(path: str | Path, args, *, run_dir: str | Path | None = None, folder: bool = False,
                 what: str = "--output") -> Path:
    """Refuse an output before any work: a directory (or file) in the way, an input, a run-dir artefact.

    Args:
        path: where the command will write.
        args: the parsed flags (for the input files).
        run_dir: the run directory, whose caches and reports the output must not replace.
        folder: the output is a folder (train), not a file.
    """
    from hardneg.store import RunDir

    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise HardnegError(f"{what} {path} is a file; expected a folder (it is created if missing).")
    if not folder and path.is_dir():
        raise HardnegError(f"{what} {path} is a directory; expected a file name such as {path / 'train.jsonl'}.")
    sources = input_files(args) + ([Path(args.data)] if folder and getattr(args, "data", None) else [])
    for source in sources:
        if _same_file(path, source):
            raise HardnegError(f"{what} {path} is an input of this command ({source}); writing there would "
                               "destroy it. Choose another path.")
    if run_dir is not None and RunDir.would_own(run_dir, path):
        raise HardnegError(f"{what} {path} is one of the run directory's own files ({run_dir}); choose a path "
                           "outside its caches and reports.")
    check_writable(path, what, folder=folder)
    return path


def check_run_dir(run_dir: str | Path) -> Path:
    """Refuse a --run-dir that is a file or cannot be written (before any work)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise HardnegError(f"--run-dir {run_dir} is a file; expected a directory for the run's cached artefacts "
                           "(it is created if missing).")
    check_writable(run_dir, "--run-dir", folder=True)
    return run_dir


def cmd_mine(args) -> int:
    from hardneg.export import check_format, export
    from hardneg.mine import Miner
    from hardneg.score.cli import make_teacher, teacher_selection_kwargs

    config = selection_config(args, **teacher_selection_kwargs(args))
    output = Path(args.output)
    run_dir = check_run_dir(args.run_dir if args.run_dir else output.parent / "hardneg-run")
    check_output(output, args, run_dir=run_dir)
    check_format(output, args.format, if_short=config.if_short)
    data = load_data(args)
    miner = Miner(make_retriever(args), config, depth=args.depth, run_dir=run_dir, show_progress=not args.quiet,
                  teacher=make_teacher(args))
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

    if args.run_dir:
        check_run_dir(args.run_dir)
    retriever = make_retriever(args)
    data = load_data(args)
    metrics = evaluate_retriever(retriever, data, depth=args.depth or 100,
                                 show_progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps({k: round(v, 6) for k, v in metrics.items()}))
    else:
        print(f"{data.source}: {len(data.queries)} queries, {len(data.corpus)} documents ({args.retriever}"
              + (f", {args.model}" if args.retriever != "bm25" else "") + ")")
        for key in MEASURES:
            print(f"{key:<12}{metrics[key]:.4f}")
    return 0


def _configure_logging(quiet: bool) -> None:
    """hardneg's own messages on stderr (INFO, or WARNING with -q); other libraries' INFO/DEBUG stay silent."""
    log = logging.getLogger("hardneg")
    for handler in [h for h in log.handlers if getattr(h, "hardneg_cli", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.hardneg_cli = True
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _os_error(exc: OSError) -> str:
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    hint = {
        errno.ENOSPC: "free some disk space and run the same command again (finished shards are kept)",
        errno.EROFS: "the file system is read-only; choose a writable --output / --run-dir",
        errno.EACCES: "no permission; choose a writable --output / --run-dir",
        errno.EPERM: "no permission; choose a writable --output / --run-dir",
        errno.EDQUOT: "disk quota exceeded; free some space and run the same command again",
    }.get(exc.errno, "check the path and run the same command again")
    return f"{exc.strerror or exc}{where}: {hint}."


def main(argv: list[str] | None = None) -> int:
    from hardneg.retrieve.encoder import limit_onednn_cache

    limit_onednn_cache()  # before any model runs: the cache size is read once per process
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error already printed as one line
            return exc.code if isinstance(exc.code, int) else 2
        _configure_logging(args.quiet or getattr(args, "json", False))
        try:
            check_numbers(args)
            if hasattr(args, "retriever"):
                resolve_retriever(args)
            return args.func(args)
        except HardnegError as exc:
            print(f"hardneg: error: {exc}", file=sys.stderr)
            return 2
        except MemoryError:
            print("hardneg: error: out of memory; lower --batch-size / --max-batch-tokens or the data size.",
                  file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"hardneg: error: {_os_error(exc)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("hardneg: interrupted; run the same command again to resume from the saved shards", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
