"""Holding a big corpus: memory and seconds of hardneg's corpus against the alternatives, side by side.

Each variant runs in its own child process on the same BEIR folder (bench/scale.py's synthetic
documents by default) and reports: load seconds and the load's peak RSS; the memory the loaded
corpus keeps (``RssAnon``: the process's own memory, not file cache, after the load, less the
same reading before it); seconds to read every passage once in order (what BM25 indexing,
encoding and select's duplicate check do) and 100,000 random passages (what export and training
do); and the data fingerprint's seconds (every run computes it for its cache keys).

Variants:
  before      hardneg at ``--before-src`` (texts as tuples of Python strings)
  after       hardneg at ``--src`` (texts as one UTF-8 buffer with offsets per column)
  mapped      the same, after ``Corpus.save`` + ``Corpus.open``: the buffers memory-mapped
  datasets    what a sentence-transformers user would reach for: ``datasets.load_dataset("json")``
              (an Arrow table, memory-mapped from its cache); the text column read through it

    PYTHONPATH=src .venv/bin/python bench/corpus_memory.py --docs 1000000 --before-src ../head/src --src src
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_rss import reset_peak, run_with_src, status_mb  # bench/, first on the path when this script runs

VARIANTS = ("before", "after", "mapped", "datasets")
RANDOM_READS = 100_000


def _hardneg_child(folder: Path, mapped: bool) -> dict:
    import dataclasses

    import hardneg

    gc.collect()
    anon_before = status_mb("RssAnon")
    reset_peak()
    start = time.perf_counter()
    data = hardneg.load(folder)
    data.corpus.passages  # noqa: B018 - built here, timed with the load
    load_s = time.perf_counter() - start
    peak = status_mb("VmHWM")
    if mapped:
        from hardneg.data import Corpus

        spill = Path(tempfile.mkdtemp(dir=folder.parent))
        start = time.perf_counter()
        data.corpus.save(spill)
        data = dataclasses.replace(data, corpus=Corpus.open(spill))
        spill_s = time.perf_counter() - start
    else:
        spill_s = None
    result = _readings(data.corpus.passages, len(data.corpus), anon_before, data.fingerprint)
    if mapped:
        import shutil

        del data
        shutil.rmtree(spill)
    return {"load_s": round(load_s, 2), "load_peak_mb": round(peak), "spill_s": spill_s and round(spill_s, 2),
            **result}


def _readings(passages, n: int, anon_before: float, fingerprint) -> dict:
    gc.collect()
    kept = status_mb("RssAnon") - anon_before
    start = time.perf_counter()
    total = sum(len(p) for p in passages)
    scan_s = time.perf_counter() - start
    rows = np.random.default_rng(0).integers(0, n, RANDOM_READS).tolist()
    start = time.perf_counter()
    for row in rows:
        passages[row]
    random_s = time.perf_counter() - start
    start = time.perf_counter()
    fingerprint_s = None
    if fingerprint is not None:
        fingerprint()
        fingerprint_s = round(time.perf_counter() - start, 2)
    return {"kept_anon_mb": round(kept), "scan_s": round(scan_s, 2), "random_s": round(random_s, 3),
            "fingerprint_s": fingerprint_s, "chars": total, "docs": n}


def _datasets_child(folder: Path) -> dict:
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(dir=folder.parent) as cache:
        gc.collect()
        anon_before = status_mb("RssAnon")
        reset_peak()
        start = time.perf_counter()
        table = datasets.load_dataset("json", data_files=str(folder / "corpus.jsonl"), split="train", cache_dir=cache)
        load_s = time.perf_counter() - start
        peak = status_mb("VmHWM")

        class Texts:  # the column as a user reads it: one row at a time, or in batches while scanning
            def __len__(self):
                return len(table)

            def __getitem__(self, row):
                return table[row]["text"]

            def __iter__(self):
                for batch in table.iter(batch_size=4096):
                    yield from batch["text"]

        return {"load_s": round(load_s, 2), "load_peak_mb": round(peak), "spill_s": None,
                **_readings(Texts(), len(table), anon_before, None)}


def run_child(variant: str, folder: Path, src: Path) -> dict:
    return {"variant": variant, **run_with_src(__file__, src, variant, str(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic documents (bench/scale.py's data)")
    parser.add_argument("--data", type=Path, help="a BEIR folder instead of the synthetic one")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--before-src", type=Path, help="another checkout's src for the 'before' variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, folder = args.child[0], Path(args.child[1])
        result = _datasets_child(folder) if variant == "datasets" else _hardneg_child(folder, variant == "mapped")
        print(json.dumps(result))
        return
    if args.data is None:
        from scale import make_data

        args.data = make_data(args.docs, 1000)
    rows = []
    for variant in args.variants:
        if variant == "before" and args.before_src is None:
            continue
        src = args.before_src if variant == "before" else args.src
        row = run_child(variant, args.data, src.resolve())
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| variant | load s | load peak MB | kept MB (anon) | scan s | 100 k random s | fingerprint s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['variant']} | error | | | | | |")
            continue
        print(f"| {row['variant']} | {row['load_s']} | {row['load_peak_mb']:,} | {row['kept_anon_mb']:,} | "
              f"{row['scan_s']} | {row['random_s']} | {row['fingerprint_s'] or '—'} |")
    if args.json:
        args.json.write_text(json.dumps({"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "rows": rows},
                                        indent=1))


if __name__ == "__main__":
    main()
