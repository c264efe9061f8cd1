"""Every kind of cached artefact, damaged in turn: detected, rebuilt with one warning, the same output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hardneg.cli import main

from . import faults
from .conftest import in_process, mine_args


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def one(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))
    return found


def damaged_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("WARNING") and "damaged" in line]


def drop_candidates(run: Path) -> None:
    """Remove the saved candidates (not damage: so that the embeddings are read again)."""
    for path in (run / "candidates").iterdir():
        path.unlink()


# damage applied to a finished dense run; each must be noticed on the next run of the same command
DAMAGE = {
    "candidates-truncated": lambda run: truncate(one(run / "candidates", "*.parquet")),
    "candidates-byte-flipped": lambda run: flip_a_byte(one(run / "candidates", "*.parquet")),
    "candidates-record": lambda run: truncate(one(run / "candidates", "*.json")),
    "integrity-record": lambda run: one(run / "candidates", "*.parquet.sum").write_text("{garbage"),
    "integrity-record-missing": lambda run: one(run / "candidates", "*.parquet.sum").unlink(),
    "document-embeddings": lambda run: (drop_candidates(run), truncate(one(run / "embeddings", "doc-*.npy"))),
    "query-embeddings": lambda run: (drop_candidates(run), flip_a_byte(one(run / "embeddings", "query-*.npy"))),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_run_artefact_is_rebuilt_with_one_warning(kind, workspace, capsys):
    DAMAGE[kind](workspace.run)
    out = workspace.root / "again.jsonl"
    assert main(["-q", *mine_args(workspace, workspace.run, out)]) == 0
    err = capsys.readouterr().err
    assert len(damaged_warnings(err)) == 1, err
    assert out.read_bytes() == workspace.output.read_bytes()
    from hardneg.store import integrity_problem

    for artefact in [*workspace.run.glob("candidates/*.parquet"), *workspace.run.glob("embeddings/*.npy")]:
        assert integrity_problem(artefact) is None  # rebuilt, with a fresh record


def test_damaged_encoding_shard_is_rebuilt(base_workspace, mine_reference, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "out.jsonl"
    stop = faults.Interrupter("hardneg.retrieve.encoder:SentenceTransformerEncoder._encode", call=4)
    try:
        with pytest.raises(AssertionError):  # Ctrl-C: exit 130, three shards saved
            in_process(mine_args(base_workspace, run, out))
    finally:
        stop.restore()
    parts = one(run / "embeddings", "doc-*.parts")
    assert len(list(parts.glob("*.npy"))) == 3
    truncate(parts / "00001.npy")
    capsys.readouterr()
    in_process(mine_args(base_workspace, run, out))
    assert len(damaged_warnings(capsys.readouterr().err)) == 1
    assert out.read_bytes() == mine_reference[0]


@pytest.fixture
def small_run(base_workspace, tmp_path) -> Path:
    """A BM25 run on 30 queries, 10 candidates each: few pairs for the teacher."""
    run = tmp_path / "small-run"
    assert main(["-q", "mine", str(base_workspace.data), "--max-queries", "30", "--depth", "10", "--run-dir", str(run),
                 "-o", str(tmp_path / "bm25.jsonl")]) == 0
    return run


def rescore_args(ws, run: Path) -> list[str]:
    return ["rescore", str(run), "--cross-encoder", str(ws.cross_encoder), "--shard-size", "40",
            "--teacher-precision", "fp32"]


@pytest.mark.parametrize("kind", ["teacher-scores", "teacher-shard"])
def test_damaged_teacher_scores_are_rebuilt(kind, base_workspace, small_run, tmp_path, capsys):
    reference_run = tmp_path / "reference-run"
    shutil.copytree(small_run, reference_run)
    in_process(rescore_args(base_workspace, reference_run))
    if kind == "teacher-scores":
        in_process(rescore_args(base_workspace, small_run))
        flip_a_byte(one(small_run / "teacher", "*.npy"))
    else:
        stop = faults.Interrupter("hardneg.teacher.scorer:CrossEncoderScorer.score_pairs", call=3)
        try:
            with pytest.raises(AssertionError):
                in_process(rescore_args(base_workspace, small_run))
        finally:
            stop.restore()
        truncate(one(small_run / "teacher", "*.parts") / "00001.npy")
    capsys.readouterr()
    in_process(rescore_args(base_workspace, small_run))
    assert len(damaged_warnings(capsys.readouterr().err)) == 1
    (reference,) = (reference_run / "candidates").glob("*.parquet")
    assert (small_run / "candidates" / reference.name).read_bytes() == reference.read_bytes()


def test_damaged_topic_labels_are_rebuilt_on_resume(base_workspace, tmp_path, capsys):
    def args(out: Path) -> list[str]:
        return ["train", str(base_workspace.data), "--model", str(base_workspace.model), "--precision", "fp32",
                "--max-queries", "48", "--train-batch-size", "8", "--max-steps", "3", "--save-steps", "2",
                "--retriever", "bm25", "--num-negatives", "1", "--batching", "topic", "--dev-split", "none",
                "--output", str(out)]

    in_process(args(tmp_path / "reference"))
    out = tmp_path / "out"
    stop = faults.Interrupter("transformers.trainer:Trainer.training_step", call=3)
    try:
        with pytest.raises(AssertionError):
            in_process(args(out))
    finally:
        stop.restore()
    truncate(out / "topics.npy")
    capsys.readouterr()
    in_process([*args(out), "--resume"])
    assert len(damaged_warnings(capsys.readouterr().err)) == 1
    final = (out / "final" / "model.safetensors").read_bytes()
    assert final == (tmp_path / "reference" / "final" / "model.safetensors").read_bytes()
