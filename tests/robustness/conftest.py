"""Robustness suite fixtures: a workspace holding data, a finished run and earlier outputs.

The workspace is built once per session (the tiny fixture as a BEIR folder and as a
pairs file, a dense run directory with its output, a negatives file) and copied for
every test, so each test starts from the same files and can check that none of them
changed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from hardneg.cli import main

from . import faults

TINY = Path(__file__).parent.parent / "fixtures" / "tiny"
SHARD = 32  # rows per encoding shard in fault tests: several resume points on the tiny data


@dataclass(frozen=True)
class Workspace:
    root: Path
    data: Path  # a BEIR folder
    pairs: Path  # the same data as a pairs file ...
    pairs_corpus: Path  # ... with its corpus
    run: Path  # run directory of a finished dense mine
    output: Path  # that run's training file
    negatives: Path  # an n-tuple file mined from `data` (for train)
    model: Path  # tiny bi-encoder (outside root)
    cross_encoder: Path  # tiny cross-encoder (outside root)

    def fill(self, arg: str) -> str:
        return arg.format(data=self.data, pairs=self.pairs, corpus=self.pairs_corpus, run=self.run,
                          out=self.output, neg=self.negatives, model=self.model, ce=self.cross_encoder,
                          root=self.root, new=self.root / "new.jsonl")

    def moved(self, root: Path) -> Workspace:
        return Workspace(root, *(root / p.relative_to(self.root) for p in
                                 (self.data, self.pairs, self.pairs_corpus, self.run, self.output, self.negatives)),
                         self.model, self.cross_encoder)


def _pairs_files(root: Path) -> tuple[Path, Path]:
    corpus = {}
    for line in (TINY / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = row["text"]
    queries = {json.loads(x)["_id"]: json.loads(x)["text"] for x in (TINY / "queries.jsonl").read_text().splitlines()}
    pairs, corpus_file = root / "pairs.jsonl", root / "pairs-corpus.jsonl"
    lines = (TINY / "qrels" / "train.tsv").read_text().splitlines()[1:]
    with open(pairs, "w", encoding="utf-8") as fh:
        for line in lines:
            q, d, _ = line.split("\t")
            fh.write(json.dumps({"query": queries[q], "positive": corpus[d]}) + "\n")
    with open(corpus_file, "w", encoding="utf-8") as fh:
        for doc_id, text in corpus.items():
            fh.write(json.dumps({"_id": doc_id, "text": text}) + "\n")
    return pairs, corpus_file


@pytest.fixture(scope="session")
def base_workspace(tmp_path_factory, tiny_models) -> Workspace:
    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(TINY, root / "data")
    pairs, pairs_corpus = _pairs_files(root)
    ws = Workspace(root, root / "data", pairs, pairs_corpus, root / "run", root / "out" / "train.jsonl",
                   root / "negatives.jsonl", *tiny_models)
    assert main(["-q", *mine_args(ws, ws.run, ws.output)]) == 0
    assert main(["-q", "mine", str(ws.data), "--format", "n-tuple", "--num-negatives", "2", "-o", str(ws.negatives),
                 "--run-dir", str(root / "bm25-run")]) == 0
    shutil.rmtree(root / "bm25-run")
    return ws


@pytest.fixture
def workspace(base_workspace, tmp_path) -> Workspace:
    """A fresh copy of the session's workspace."""
    shutil.copytree(base_workspace.root, tmp_path / "ws")
    return base_workspace.moved(tmp_path / "ws")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stray_temp_files(root: Path) -> list[str]:
    """Temporary files an atomic write left behind (``.NAME.XXXX.tmp``)."""
    return [str(p.relative_to(root)) for p in root.rglob(".*.tmp")]


def in_process(args: list[str], *, count: str | None = None, armed_by: str | None = None) -> int:
    """Run the CLI here with the same small shards as the killed run; returns the calls of ``count``."""
    undo = faults.small_shards(SHARD)
    counter = faults.Counter(count, armed_by) if count else None
    try:
        assert main(["-q", *args]) == 0
    finally:
        if counter:
            counter.restore()
        for u in undo:
            u()
    return counter.calls if counter else 0


def mine_args(ws, run: Path, out: Path) -> list[str]:
    return ["mine", str(ws.data), "--retriever", "dense", "--model", str(ws.model), "--precision", "fp32",
            "--format", "ids", "--run-dir", str(run), "-o", str(out)]


@pytest.fixture(scope="session")
def mine_reference(base_workspace, tmp_path_factory):
    """An uninterrupted run's output, and how many encoding calls (shards) it made."""
    folder = tmp_path_factory.mktemp("mine-reference")
    encodes = in_process(mine_args(base_workspace, folder / "run", folder / "out.jsonl"),
                         count="hardneg.retrieve.encoder:SentenceTransformerEncoder._encode")
    assert encodes > 4  # several shards: the kill lands between resume points
    return (folder / "out.jsonl").read_bytes(), encodes
