"""Bad input of every kind: one `hardneg: error:` line, the right exit code, no traceback, no file touched.

Each case runs the real CLI in-process (``hardneg.cli.main``) on a copy of a workspace
holding the data, a finished run directory and earlier outputs; afterwards every file
that was there must be byte-identical, and no temporary file may be left behind.
"""

from __future__ import annotations

import errno
import gzip
import importlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hardneg.cli import main

from .conftest import Workspace, snapshot, stray_temp_files


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    message: str  # a phrase the error line must hold
    code: int = 2
    prepare: Callable[[Workspace, pytest.MonkeyPatch], None] | None = None
    early: bool = True  # refused before any work: not a single new file or folder


def mine(*extra: str) -> tuple[str, ...]:
    return ("mine", "{data}", "-o", "{new}", *extra)


def dense(*extra: str) -> tuple[str, ...]:
    return mine("--retriever", "dense", "--model", "{model}", "--run-dir", "{run}", *extra)


def train(*extra: str) -> tuple[str, ...]:
    return ("train", "{data}", "--model", "{model}", "--output", "{root}/trained", "--max-steps", "1", *extra)


# ----------------------------------------------------------------------------- prepare steps


def conflicting_qrels(ws: Workspace, mp) -> None:
    qrels = ws.data / "qrels" / "train.tsv"
    query, doc, _ = qrels.read_text().splitlines()[1].split("\t")
    with open(qrels, "a") as fh:
        fh.write(f"{query}\t{doc}\t0\n")


def broken_model(kind: str):
    def prepare(ws: Workspace, mp) -> None:
        shutil.copytree(ws.model, ws.root / "model")
        if kind == "truncated":
            weights = ws.root / "model" / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        else:
            (ws.root / "model" / "config.json").unlink()

    return prepare


def truncate(relative: str, keep: int = 40):
    def prepare(ws: Workspace, mp) -> None:
        path = ws.root / relative
        path.write_bytes(path.read_bytes()[:keep])

    return prepare


def foreign_negatives(ws: Workspace, mp) -> None:
    rows = [{"anchor": f"an unrelated question {i}", "positive": f"answer {i}", "negative_1": "x", "negative_2": "y"}
            for i in range(4)]
    (ws.root / "foreign.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def truncated_gz_negatives(ws: Workspace, mp) -> None:
    blob = gzip.compress(ws.negatives.read_bytes())
    (ws.root / "neg.jsonl.gz").write_bytes(blob[: len(blob) // 2])


def a_file_named(relative: str):
    def prepare(ws: Workspace, mp) -> None:
        (ws.root / relative).write_text("not a directory\n")

    return prepare


def a_trained_model(ws: Workspace, mp) -> None:
    (ws.root / "trained" / "final").mkdir(parents=True)
    (ws.root / "trained" / "final" / "config.json").write_text("{}")


def corpus_holding(text: str):
    def prepare(ws: Workspace, mp) -> None:
        (ws.data / "corpus.jsonl").write_text(text, encoding="utf-8")

    return prepare


def writes_fail(code: int, message: str):
    """Every atomic write under the workspace fails (a read-only mount that says it is writable)."""

    def prepare(ws: Workspace, mp) -> None:
        import tempfile

        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(ws.root)):
                raise OSError(code, message, str(dir))
            return real(*args, dir=dir, **kwargs)

        mp.setattr(tempfile, "mkstemp", mkstemp)

    return prepare


def disk_full_in_export(ws: Workspace, mp) -> None:
    export_module = importlib.import_module("hardneg.export")  # (hardneg.export is the function)

    class Full:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 200:
                raise OSError(errno.ENOSPC, "No space left on device", self.fh.name)
            return self.fh.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    mp.setattr(export_module, "open", lambda *a, **k: Full(open(*a, **k)), raising=False)


def disk_full_in_cache(ws: Workspace, mp) -> None:
    import numpy as np

    def save(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(np, "save", save)


CASES = [
    # --- numbers that make no sense
    Case("min-score-nan", mine("--min-score", "nan"), "--min-score must be a finite number"),
    Case("max-score-inf", mine("--max-score", "inf"), "--max-score must be a finite number"),
    Case("min-score-overflow", mine("--min-score", "1e400"), "finite"),
    Case("absolute-margin-nan", mine("--absolute-margin", "nan"), "--absolute-margin must be a finite number"),
    Case("simans-a-nan", mine("--sampling", "simans", "--simans-a", "nan"), "--simans-a must be a finite"),
    Case("simans-a-zero", mine("--sampling", "simans", "--simans-a", "0"), "--simans-a must be above 0"),
    Case("relative-margin-above-1", mine("--relative-margin", "1.5"), "relative_margin is a fraction"),
    Case("relative-margin-word", mine("--relative-margin", "lots"), "--relative-margin"),
    Case("seed-negative", mine("--seed", "-1"), "--seed must be at least 0"),
    Case("num-negatives-zero", mine("--num-negatives", "0"), "--num-negatives must be at least 1"),
    Case("num-negatives-negative", mine("--num-negatives", "-3"), "--num-negatives must be at least 1"),
    Case("range-min-negative", mine("--range-min", "-1"), "--range-min must be at least 0"),
    Case("depth-zero", mine("--depth", "0"), "--depth must be at least 1"),
    Case("max-queries-zero", mine("--max-queries", "0"), "--max-queries must be at least 1"),
    Case("batch-size-zero", dense("--batch-size", "0"), "--batch-size must be at least 1"),
    Case("max-batch-tokens-zero", dense("--max-batch-tokens", "0"), "--max-batch-tokens must be at least 1"),
    Case("max-length-zero", dense("--max-length", "0"), "--max-length must be at least 1"),
    Case("max-length-negative", dense("--max-length", "-5"), "--max-length must be at least 1"),
    Case("max-length-beyond-positions", dense("--max-length", "1000", "--run-dir", "{root}/fresh"), "512 tokens", early=False),
    Case("rank-window-too-small", mine("--range-min", "5", "--range-max", "6"), "rank window"),
    Case("train-batch-size-one", train("--train-batch-size", "1"), "--train-batch-size must be at least 2"),
    Case("learning-rate-nan", train("--learning-rate", "nan"), "--learning-rate must be a finite"),
    Case("warmup-ratio-above-1", train("--warmup-ratio", "2"), "--warmup-ratio must be at most 1"),
    Case("rescore-shard-size-zero", ("rescore", "{run}", "--cross-encoder", "{ce}", "--shard-size", "0"),
         "--shard-size must be at least 1"),
    # --- flags that contradict each other or name nothing
    Case("bm25-with-model", mine("--retriever", "bm25", "--model", "{model}"), "would ignore --model"),
    Case("eval-bm25-with-model", ("eval", "{data}", "--retriever", "bm25", "--model", "{model}"), "would ignore"),
    Case("dense-without-model", mine("--retriever", "dense"), "needs --model"),
    Case("unknown-flag", mine("--frobnicate"), "unrecognized arguments"),
    Case("unknown-format", mine("--format", "csv"), "invalid choice"),
    Case("unknown-stopwords", mine("--stopwords", "xx"), "Unknown stopword list 'xx'"),
    Case("unknown-stemmer", mine("--stemmer", "klingon"), "Unknown stemmer language"),
    Case("both-margins", mine("--relative-margin", "0.1", "--absolute-margin", "0.1"), "not allowed with"),
    Case("threshold-without-denoise", mine("--denoise-threshold", "0.9"), "--denoise-threshold needs --denoise"),
    Case("n-tuple-kept-short", mine("--format", "n-tuple", "--if-short", "keep"), "--if-short keep"),
    Case("split-for-pairs-file", ("mine", "{pairs}", "--split", "dev", "-o", "{new}"), "pairs file, which has no splits"),
    Case("missing-split", mine("--split", "validation"), "qrels/validation.tsv"),
    Case("rescore-without-teacher", ("rescore", "{run}"), "needs --cross-encoder"),
    # --- outputs that would destroy something
    Case("output-extension", ("mine", "{data}", "-o", "{root}/train.csv"), "end it with .jsonl"),
    Case("output-is-a-directory", ("mine", "{data}", "-o", "{root}/out"), "is a directory"),
    Case("output-is-the-corpus", ("mine", "{data}", "-o", "{data}/corpus.jsonl"), "is an input"),
    Case("output-is-the-queries", ("mine", "{data}", "-o", "{data}/queries.jsonl"), "is an input"),
    Case("output-is-the-qrels", ("mine", "{data}", "-o", "{data}/qrels/train.tsv"), "is an input"),
    Case("output-is-the-pairs-file", ("mine", "{pairs}", "-o", "{pairs}"), "is an input"),
    Case("output-is-the-corpus-of-pairs", ("mine", "{pairs}", "--corpus", "{corpus}", "-o", "{corpus}"), "is an input"),
    Case("output-is-the-run-report", ("mine", "{data}", "--run-dir", "{run}", "-o", "{run}/report.json"),
         "run directory's own files"),
    Case("output-into-run-caches", ("mine", "{data}", "--run-dir", "{run}", "-o", "{run}/candidates/x.parquet"),
         "run directory's own files"),
    Case("train-output-is-the-data", ("train", "{data}", "--model", "{model}", "--output", "{data}"), "is an input"),
    Case("train-output-is-a-file", ("train", "{data}", "--model", "{model}", "--output", "{out}"), "is a file"),
    Case("run-dir-is-a-file", ("mine", "{data}", "--run-dir", "{root}/runfile", "-o", "{new}"), "is a file",
         prepare=a_file_named("runfile")),
    Case("read-only-output", mine(), "cannot write", prepare=writes_fail(errno.EACCES, "Permission denied")),
    # a mount that says it is writable (permission bits, os.access) but refuses every file: caught by a probe
    Case("read-only-mount", mine("--run-dir", "{root}/fresh"), "(Read-only file system)",
         prepare=writes_fail(errno.EROFS, "Read-only file system")),
    Case("output-in-proc", ("mine", "{data}", "-o", "/proc/hardneg-out.jsonl"),
         "--output /proc/hardneg-out.jsonl: cannot write in /proc"),  # not the default run dir beside it
    Case("train-output-in-proc", ("train", "{data}", "--model", "{model}", "--output", "/proc/hardneg-model"),
         "cannot write in /proc"),
    Case("disk-full-in-export", mine("--run-dir", "{run}"), "No space left on device", code=1,
         prepare=disk_full_in_export, early=False),
    Case("disk-full-in-cache", dense("--run-dir", "{root}/fresh"), "No space left on device", code=1,
         prepare=disk_full_in_cache, early=False),
    # --- data that says something else than the user thinks
    Case("missing-data", ("mine", "{root}/nope", "-o", "{new}"), "no such file or directory"),
    Case("qrels-graded-1-and-0", mine(), "expected one grade per pair", prepare=conflicting_qrels),
    Case("pad-cannot-fill", mine("--num-negatives", "500", "--depth", "500", "--if-short", "pad"), "Padding could not fill",
         early=False),
    Case("filters-keep-nothing", mine("--max-score", "-1000"), "loosen --max-score", early=False),
    Case("negatives-from-other-data", train("--negatives", "{root}/foreign.jsonl"), "an unrelated question 0",
         prepare=foreign_negatives, early=False),
    Case("negatives-missing", train("--negatives", "{root}/nope.jsonl"), "does not exist"),
    Case("negatives-truncated-gz", train("--negatives", "{root}/neg.jsonl.gz"), "Cannot read the negatives file",
         prepare=truncated_gz_negatives, early=False),
    Case("train-missing-dev-split", train("--dev-split", "validation"), "qrels/validation.tsv"),
    Case("reranker-missing-dev-split", ("train-reranker", "{data}", "--base", "{model}", "--output", "{root}/t",
                                        "--dev-split", "validation"), "qrels/validation.tsv"),
    # --- models and run directories that are broken
    Case("model-missing", mine("--retriever", "dense", "--model", "{root}/no-model"),
         "/no-model: no such folder"),
    Case("model-missing-relative", mine("--model", "./no-model"), "--model ./no-model: no such folder"),
    Case("cross-encoder-is-a-bi-encoder", mine("--cross-encoder", "{model}"), "has no trained scoring head"),
    Case("cross-encoder-missing", mine("--cross-encoder", "{root}/no-ce"), "/no-ce: no such folder"),
    Case("model-name-not-in-cache", mine("--retriever", "dense", "--model", "no-such-org/no-such-model"),
         "Could not load the model", early=False),
    Case("corpus-empty", mine(), "corpus.jsonl: no documents", prepare=corpus_holding("")),
    Case("train-over-a-trained-model", train(), "already holds a trained model", prepare=a_trained_model),
    Case("train-output-is-a-file-and-a-run-dir-would-be-under-it",
         ("train", "{data}", "--model", "{model}", "--output", "{out}"), "--output "),
    Case("corpus-only-empty-texts", mine(), "no documents (", prepare=corpus_holding(
        '{"_id": "a", "text": ""}\n{"_id": "b", "text": "  "}\n')),
    Case("pairs-wrong-columns", ("mine", "{pairs}", "--corpus", "{corpus}", "--query-column", "question", "-o", "{new}"),
         "--query-column / --positive-column"),
    Case("model-truncated-weights", dense("--model", "{root}/model", "--run-dir", "{root}/fresh"),
         "Could not load the model", prepare=broken_model("truncated"), early=False),
    Case("model-without-config", dense("--model", "{root}/model", "--run-dir", "{root}/fresh"),
         "Could not load the model", prepare=broken_model("no-config"), early=False),
    Case("report-truncated-json", ("report", "{run}"), "report.json is damaged", prepare=truncate("run/report.json")),
    Case("report-truncated-npz", ("report", "{run}"), "report_scores.npz is damaged",
         prepare=truncate("run/report_scores.npz")),
    Case("report-not-a-run", ("report", "{data}"), "holds no report.json"),
    Case("rescore-not-a-run", ("rescore", "{root}/nope", "--cross-encoder", "{ce}"), "not a run directory"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line_and_touches_nothing(case, workspace, monkeypatch, capsys):
    if case.prepare is not None:
        case.prepare(workspace, monkeypatch)
    before = snapshot(workspace.root)
    paths_before = set(workspace.root.rglob("*"))
    rc = main(["-q", *(workspace.fill(a) for a in case.argv)])
    err = capsys.readouterr().err
    monkeypatch.undo()
    errors = [line for line in err.splitlines() if line.startswith("hardneg: error:")]
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    assert case.message in errors[0], errors[0]
    assert rc == case.code, err
    after = snapshot(workspace.root)
    changed = [name for name, blob in before.items() if after.get(name) != blob]
    assert not changed, f"pre-existing files changed or removed: {changed}"
    assert not stray_temp_files(workspace.root)
    assert not (workspace.root / "new.jsonl").exists()
    if case.early:
        assert set(workspace.root.rglob("*")) == paths_before, "work was done before the input was refused"


def test_there_are_at_least_forty_kinds():
    assert len({c.id for c in CASES}) == len(CASES) >= 40
