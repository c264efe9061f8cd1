"""Loading a pairs file with a big corpus: memory and seconds of two hardneg checkouts, side by side.

``hardneg.load_pairs(PAIRS, corpus=CORPUS)`` matches each positive text to a corpus document (a
passage ``"{title} {text}"`` first, then a text alone) and appends the texts it cannot find. Each
variant runs in its own child process on the same files and reports: load seconds, the load's
peak RSS, the memory the loaded data keeps (``RssAnon`` after the load, less before it), and a
digest of the result (the corpus fingerprint and every query's positive rows), so the variants
are checked to give the same data.

The corpus is bench/scale.py's synthetic one (1 M documents by default); the pairs are its first
``--pairs`` training queries, each with its positive's text, and every 100th pair's positive
replaced by a text the corpus does not hold (appended as a new document).

    .venv/bin/python bench/pairs_memory.py --before-src ../head/src --src src --json bench/pairs_memory_1m.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import time
from pathlib import Path

from peak_rss import reset_peak, run_with_src, status_mb  # bench/, first on the path when this script runs


def write_pairs(folder: Path, count: int) -> Path:
    """``pairs.jsonl`` beside the synthetic BEIR folder: ``query``, ``positive`` (a corpus text or a new one)."""
    path = folder / f"pairs-{count}.jsonl"
    if path.exists():
        return path
    import hardneg

    data = hardneg.load(folder)
    with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as out:
        for q in range(min(count, len(data.queries))):
            row = int(data.positives[q][0])
            positive = data.corpus.passages[row] if q % 100 else f"a positive outside the corpus, number {q}"
            out.write(json.dumps({"query": data.queries.texts[q], "positive": positive}) + "\n")
    path.with_suffix(".tmp").replace(path)
    return path


def child(pairs: Path, corpus: Path) -> dict:
    import hardneg

    gc.collect()
    anon_before = status_mb("RssAnon")
    reset_peak()
    start = time.perf_counter()
    data = hardneg.load_pairs(pairs, corpus=corpus)
    load_s = time.perf_counter() - start
    peak = status_mb("VmHWM")
    gc.collect()
    kept = status_mb("RssAnon") - anon_before
    digest = hashlib.sha256(data.fingerprint().encode())
    for rows in data.positives:
        digest.update(rows.tobytes())
    return {"load_s": round(load_s, 2), "load_peak_mb": round(peak), "kept_anon_mb": round(kept),
            "docs": len(data.corpus), "queries": len(data.queries), "digest": digest.hexdigest()[:16]}


def run_child(variant: str, src: Path, pairs: Path, corpus: Path) -> dict:
    return {"variant": variant, **run_with_src(__file__, src, str(pairs), str(corpus))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic documents (bench/scale.py's data)")
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs (training queries) to load")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--before-src", type=Path, help="another checkout's src for the 'before' variant")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]))))
        return
    from scale import make_data

    folder = make_data(args.docs, args.pairs)
    pairs = write_pairs(folder, args.pairs)
    variants = [("before", args.before_src)] if args.before_src else []
    rows = [run_child(name, src.resolve(), pairs, folder / "corpus.jsonl") for name, src in
            [*variants, ("after", args.src)]]
    for row in rows:
        print(json.dumps(row), flush=True)
    print("\n| variant | load s | load peak MB | kept MB (anon) | documents | queries | result digest |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['variant']} | error | | | | | |")
            continue
        print(f"| {row['variant']} | {row['load_s']} | {row['load_peak_mb']:,} | {row['kept_anon_mb']:,} | "
              f"{row['docs']:,} | {row['queries']:,} | {row['digest']} |")
    if args.json:
        args.json.write_text(json.dumps({"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "pairs": args.pairs,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
