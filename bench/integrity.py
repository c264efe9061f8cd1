"""What the integrity records of cached artefacts cost: save and load of an embeddings file.

Compares hardneg's ``save_npy`` / ``load_npy`` (size + BLAKE2b record written before the
rename, checked on every load) with the plain atomic ``np.save`` / ``np.load`` they
replace, on a 50,000 x 384 float32 matrix (MiniLM embeddings of a 50k-document corpus,
77 MB). The file is in the page cache (a rerun right after mining), so the checksum's
CPU cost is what shows.

    .venv/bin/python bench/integrity.py [--rows 50000] [--dim 384] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from hardneg.store import atomic_path, file_checksum, load_npy, save_npy


def plain_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    array = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        plain, checked = Path(folder) / "plain.npy", Path(folder) / "checked.npy"
        rows = [
            ("save", timed(lambda: plain_save(plain, array), args.repeats),
             timed(lambda: save_npy(checked, array), args.repeats)),
            ("load, memory-mapped", timed(lambda: np.load(plain, mmap_mode="r"), args.repeats),
             timed(lambda: load_npy(checked, what="embeddings", mmap=True), args.repeats)),
            ("load, into memory", timed(lambda: np.load(plain), args.repeats),
             timed(lambda: load_npy(checked, what="embeddings"), args.repeats)),
        ]
        checksum = timed(lambda: file_checksum(checked), args.repeats)
        size_mb = checked.stat().st_size / 1e6
    print(f"{args.rows} x {args.dim} float32 = {size_mb:.1f} MB; median of {args.repeats}")
    print(f"{'':<22}{'plain, s':>10}{'checked, s':>12}{'added, s':>10}")
    for name, base, with_record in rows:
        print(f"{name:<22}{base:>10.3f}{with_record:>12.3f}{with_record - base:>10.3f}")
    print(f"BLAKE2b alone: {checksum:.3f} s ({size_mb / checksum:.0f} MB/s)")


if __name__ == "__main__":
    main()
