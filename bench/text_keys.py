"""Seconds to compute selection's normalised-text keys of a corpus: two versions of ``hardneg.text``, interleaved.

Selection hashes every passage (``hardneg.text.text_keys``) for its duplicate-text checks; this
times the module at ``--before`` (a copy of another checkout's ``src/hardneg/text.py``) against
the installed one on the same passages, in one process, alternating, and checks the keys agree.

    git show cecb2d1:src/hardneg/text.py > /tmp/text_before.py
    .venv/bin/python bench/text_keys.py --before /tmp/text_before.py --data bench/out/scale/data-1000000-100000
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="path of the other text.py")
    parser.add_argument("--data", required=True, help="a BEIR folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("text_before", args.before)
    before = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before)
    from hardneg.data import load_beir
    from hardneg.text import text_keys

    passages = load_beir(args.data, args.split).corpus.passages
    for _ in range(args.repeats):
        for name, keys in (("before", before.text_keys), ("after", text_keys)):
            start = time.perf_counter()
            keys(passages)
            print(f"{name}: {len(passages):,} passages in {time.perf_counter() - start:.2f} s", flush=True)
    sample = passages[:200_000]
    print("identical keys (first 200,000):", bool(np.array_equal(before.text_keys(sample), text_keys(sample))))


if __name__ == "__main__":
    main()
