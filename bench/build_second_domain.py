"""Build a second-domain retrieval set from FOLDOC (Debian package ``dict-foldoc``).

Query: a FOLDOC headword (a computing term); its one relevant document: the
term's definition (headword lines removed, cross-reference braces and dates
stripped). Redirect-only entries ("See {X}") and very short definitions are left
out. A seeded sample keeps the set small enough to evaluate every trained model
in about half a minute on 2 CPU cores: 3,000 definitions, 500 of them queried.

    apt-get download dict-foldoc && dpkg-deb -x dict-foldoc_*.deb foldoc/
    .venv/bin/python bench/build_second_domain.py foldoc/usr/share/dictd --out bench/out/foldoc

Writes a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) that
``hardneg eval`` and ``bench/quality.py --second-domain`` read. The training data
(Debian package descriptions) never contains FOLDOC text.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dictd", type=Path, help="folder holding foldoc.index and foldoc.dict.dz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    items = list(entries(args.dictd))
    rng = random.Random(args.seed)
    rng.shuffle(items)
    items = items[: args.docs]
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(args.out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for i, (_, body) in enumerate(items):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": body}, ensure_ascii=False) + "\n")
    with open(args.out / "queries.jsonl", "w", encoding="utf-8") as q, open(args.out / "qrels" / "test.tsv", "w") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for i, (head, _) in enumerate(items[: args.queries]):
            q.write(json.dumps({"_id": f"q{i}", "text": head}, ensure_ascii=False) + "\n")
            r.write(f"q{i}\td{i}\t1\n")
    print(f"{len(items)} documents, {min(args.queries, len(items))} queries -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
