"""Build the bundled sample data from debian-desc small.

Writes two BEIR folders, deterministically (same source -> byte-identical output):

* ``data/sample/`` — about 2,000 documents, the demo data;
* ``tests/fixtures/tiny/`` — about 200 documents, a subset of the sample, for tests.

Documents are kept in whole *groups* of sibling packages so the sample keeps its
natural hard negatives (``libfoo-dev`` next to ``libfoo-doc``). A group is the
packages sharing the first ``-``-separated component of their name; a group larger
than ``MAX_GROUP`` is split by the first two components, and so on. Groups are
taken in the order of a salted sha256 of their key until the document budget is
reached. Qrels keep only kept documents; queries keep only those in kept qrels.
Lines are copied verbatim from the source files, in source order.

Usage::

    python scripts/make_sample.py [--source ../shared/data/debian-desc/small]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "debian-desc" / "small"
SALT = "hardneg-sample-v1"
MAX_GROUP = 40
SAMPLE_DOCS = 2000
TINY_DOCS = 200
TINY_MIN = {"train": 100, "dev": 15, "test": 15}
SPLITS = ("train", "dev", "test")


def group_packages(names: list[str], depth: int = 1) -> dict[str, list[str]]:
    """Group package names by their first ``depth`` name components, splitting groups over MAX_GROUP."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups["-".join(name.split("-")[:depth])].append(name)
    out: dict[str, list[str]] = {}
    for key, members in groups.items():
        if len(members) > MAX_GROUP and any(len(m.split("-")) > depth for m in members):
            out.update(group_packages(members, depth + 1))
        else:
            out[key] = members
    return out


def stable_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: (hashlib.sha256(f"{SALT}\0{k}".encode()).hexdigest(), k))


def read_qrels(path: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """Header line and rows ``(query_id, doc_id, raw_line)``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for line in lines[1:]:
        query_id, doc_id, _ = line.rstrip("\n").split("\t")
        rows.append((query_id, doc_id, line))
    return lines[0], rows


def write_folder(
    out: Path,
    doc_lines: list[tuple[str, str]],
    query_lines: list[tuple[str, str]],
    qrels: dict[str, tuple[str, list[tuple[str, str, str]]]],
    keep_docs: set[str],
) -> dict[str, int]:
    """Write one BEIR folder restricted to ``keep_docs``; return its counts."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    kept_queries: set[str] = set()
    for split, (header, rows) in qrels.items():
        kept = [r for r in rows if r[1] in keep_docs]
        kept_queries.update(r[0] for r in kept)
        (out / "qrels" / f"{split}.tsv").write_text(header + "".join(r[2] for r in kept), encoding="utf-8")
        counts[split] = len({r[0] for r in kept})
    docs = [line for doc_id, line in doc_lines if doc_id in keep_docs]
    queries = [line for query_id, line in query_lines if query_id in kept_queries]
    (out / "corpus.jsonl").write_text("".join(docs), encoding="utf-8")
    (out / "queries.jsonl").write_text("".join(queries), encoding="utf-8")
    counts["docs"] = len(docs)
    counts["queries"] = len(queries)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="debian-desc small BEIR folder")
    parser.add_argument("--sample-out", type=Path, default=REPO / "data" / "sample")
    parser.add_argument("--tiny-out", type=Path, default=REPO / "tests" / "fixtures" / "tiny")
    args = parser.parse_args(argv)

    doc_lines: list[tuple[str, str]] = []
    for line in (args.source / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True):
        doc_lines.append((json.loads(line)["_id"], line))
    query_lines = [
        (json.loads(line)["_id"], line)
        for line in (args.source / "queries.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    ]
    qrels = {split: read_qrels(args.source / "qrels" / f"{split}.tsv") for split in SPLITS}
    split_of_doc = {doc_id: split for split, (_, rows) in qrels.items() for _, doc_id, _ in rows}

    groups = group_packages([doc_id for doc_id, _ in doc_lines])
    order = stable_order(list(groups))

    sample_keys: list[str] = []
    total = 0
    for key in order:
        if total >= SAMPLE_DOCS:
            break
        sample_keys.append(key)
        total += len(groups[key])

    # tiny: the first sample groups up to the budget, then further sample groups that
    # bring a split still short of its minimum (dev is only 5 % of the data).
    tiny_keys: list[str] = []
    have = dict.fromkeys(SPLITS, 0)
    total = 0
    for key in sample_keys:
        if total >= TINY_DOCS and all(have[s] >= TINY_MIN[s] for s in SPLITS):
            break
        brings: dict[str, int] = defaultdict(int)
        for doc_id in groups[key]:
            if doc_id in split_of_doc:
                brings[split_of_doc[doc_id]] += 1
        if total >= TINY_DOCS:  # over budget: only small groups that help a split still short
            short = [s for s in SPLITS if have[s] < TINY_MIN[s]]
            if len(groups[key]) > 10 or not any(brings[s] for s in short):
                continue
        tiny_keys.append(key)
        total += len(groups[key])
        for split in SPLITS:
            have[split] += brings[split]
    if not all(have[s] >= TINY_MIN[s] for s in SPLITS):
        sys.stderr.write(f"tiny fixture falls short of its minimum queries per split: {have} < {TINY_MIN}\n")
        return 1

    sample_docs = {d for key in sample_keys for d in groups[key]}
    tiny_docs = {d for key in tiny_keys for d in groups[key]}
    sample = write_folder(args.sample_out, doc_lines, query_lines, qrels, sample_docs)
    tiny = write_folder(args.tiny_out, doc_lines, query_lines, qrels, tiny_docs)
    (args.sample_out / "README.md").write_text(
        "# debian-desc sample\n\n"
        "Known-item search over Debian package descriptions (bookworm, main): query = a package's one-line\n"
        "synopsis, document = its long description (title = package name), one relevant document per query.\n"
        f"{sample['docs']:,} documents; {sample['train']:,} train, {sample['dev']:,} dev and {sample['test']:,} test "
        "queries. Cut from debian-desc small by\n"
        "`python scripts/make_sample.py`, which keeps whole groups of sibling packages together (natural hard\n"
        "negatives).\n"
        "Descriptions are written by Debian maintainers under their packages' licences; use them for research "
        "and testing.\n",
        encoding="utf-8",
    )
    for name, counts in (("sample", sample), ("tiny", tiny)):
        sys.stdout.write(
            f"{name}: {counts['docs']} docs, {counts['queries']} queries "
            f"(train {counts['train']}, dev {counts['dev']}, test {counts['test']})\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
