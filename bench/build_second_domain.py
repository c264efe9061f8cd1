"""Build a second-domain retrieval set from FOLDOC (Debian package ``dict-foldoc``).

Query: a FOLDOC headword (a computing term); its one relevant document: the
term's definition (headword lines removed, cross-reference braces and dates
stripped). Redirect-only entries ("See {X}") and very short definitions are left
out. Every definition is in the corpus and queried by its headword; the queries
are split train / dev / test (default 80 / 5 / 15 %, seeded), so FOLDOC serves
both as a second domain to *train* on and as one a debian-desc model never saw:

    apt-get download dict-foldoc && dpkg-deb -x dict-foldoc_*.deb foldoc/
    .venv/bin/python bench/build_second_domain.py foldoc/usr/share/dictd --out bench/out/foldoc2

The earlier forgetting-check set (3,000 definitions, 500 test queries, no train
split; bench/RESULTS.md before 2026-12-02) is the same sample, rebuilt with
``--docs 3000 --queries 500 --train 0 --dev 0 --out bench/out/foldoc``.

Writes a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv)
that ``hardneg`` and ``bench/quality.py --data / --second-domain`` read. The
debian-desc data never contains FOLDOC text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from pathlib import Path

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
DATE = re.compile(r"^\s*\(\d{4}-\d{2}-\d{2}\)\s*$", re.M)


def b64(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + B64.index(ch)
    return value


def entries(folder: Path):
    """Yield ``(headword, definition)`` per distinct dictionary entry."""
    data = gzip.open(folder / "foldoc.dict.dz").read()
    seen = set()
    for line in (folder / "foldoc.index").read_text(encoding="utf-8").splitlines():
        head, off, length = line.split("\t")
        start = b64(off)
        if start in seen or head.startswith("00-database"):
            continue
        seen.add(start)
        block = data[start : start + b64(length)].decode("utf-8", "replace")
        heads, _, body = block.partition("\n\n")
        body = DATE.sub("", body).replace("{", "").replace("}", "")
        body = " ".join(body.split())
        if len(body) < 80 or body.lower().startswith(("see ", "<spelling>")):
            continue
        yield heads.splitlines()[0].strip(), body


def split_sizes(n: int, train: float, dev: float) -> tuple[int, int, int]:
    """Queries per split: the first ``train`` share, then ``dev``, the rest test (rounded down)."""
    if not (0 <= train and 0 <= dev and train + dev <= 1):
        raise ValueError(f"--train {train} and --dev {dev} must be shares in [0, 1] summing to at most 1")
    n_train, n_dev = int(n * train), int(n * dev)
    return n_train, n_dev, n - n_train - n_dev


def write_beir(items: list[tuple[str, str]], n_queries: int, shares: tuple[float, float], out: Path) -> dict[str, int]:
    """Write ``items`` as a BEIR folder: document ``d<i>`` is the definition, query ``q<i>`` its headword."""
    n_queries = min(n_queries, len(items))
    n_train, n_dev, _ = split_sizes(n_queries, *shares)
    split_of = ["train"] * n_train + ["dev"] * n_dev + ["test"] * (n_queries - n_train - n_dev)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for i, (_, body) in enumerate(items):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": body}, ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as q:
        for i, (head, _) in enumerate(items[:n_queries]):
            q.write(json.dumps({"_id": f"q{i}", "text": head}, ensure_ascii=False) + "\n")
    counts = {}
    for split in ("train", "dev", "test"):
        rows = [i for i, s in enumerate(split_of) if s == split]
        if rows:
            with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as r:
                r.write("query-id\tcorpus-id\tscore\n")
                r.writelines(f"q{i}\td{i}\t1\n" for i in rows)
        counts[split] = len(rows)
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dictd", type=Path, help="folder holding foldoc.index and foldoc.dict.dz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--docs", type=int, help="keep a seeded sample of N definitions (default: all)")
    p.add_argument("--queries", type=int, help="query the first N sampled definitions (default: all)")
    p.add_argument("--train", type=float, default=0.8, help="share of the queries in the train split (default 0.8)")
    p.add_argument("--dev", type=float, default=0.05, help="share in the dev split (default 0.05); the rest is test")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    items = list(entries(args.dictd))
    rng = random.Random(args.seed)
    rng.shuffle(items)
    items = items[: args.docs]
    counts = write_beir(items, len(items) if args.queries is None else args.queries, (args.train, args.dev), args.out)
    print(f"{len(items)} documents; queries: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
