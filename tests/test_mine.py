"""The mining pipeline: caching in the run directory, resume, determinism, report."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg import BM25Retriever, Miner, SelectionConfig
from hardneg.errors import HardnegError
from hardneg.retrieve.dense import DenseRetriever, EncodeJob, cached_encode
from hardneg.store import RunDir


def test_selection_only_rerun_reuses_candidates_and_embeddings(tmp_path, tiny_train, fake_encoder):
    retriever = DenseRetriever(fake_encoder)
    first = Miner(retriever, SelectionConfig(num_negatives=3), run_dir=tmp_path, show_progress=False).mine(tiny_train)
    calls = fake_encoder.calls
    assert not first.reused_candidates and calls > 0
    second = Miner(
        retriever, SelectionConfig(num_negatives=2, relative_margin=0.05), run_dir=tmp_path, show_progress=False
    ).mine(tiny_train)
    assert second.reused_candidates and fake_encoder.calls == calls
    np.testing.assert_array_equal(second.candidates.doc_ids, first.candidates.doc_ids)
    assert second.report.dropped["relative_margin"] > 0


def test_changed_model_never_reuses_stale_candidates(tmp_path, tiny_train, fake_encoder):
    from conftest import FakeEncoder

    Miner(DenseRetriever(fake_encoder), run_dir=tmp_path, show_progress=False).mine(tiny_train)
    other = FakeEncoder(salt="finetuned")
    result = Miner(DenseRetriever(other), run_dir=tmp_path, show_progress=False).mine(tiny_train)
    assert not result.reused_candidates and other.calls > 0


def test_embeddings_cache_resumes_after_a_kill(tmp_path, fake_encoder):
    texts = [f"text number {i} about topic {i % 7}" for i in range(50)]
    run_dir = RunDir(tmp_path)

    class Killed(Exception):
        pass

    def dying_encode(chunk, show_progress=False):
        if dying_encode.calls == 2:
            raise Killed
        dying_encode.calls += 1
        return fake_encoder.encode_documents(chunk)

    class DyingEncoder:
        encode_documents = staticmethod(dying_encode)

    dying_encode.calls = 0
    with pytest.raises(Killed):
        cached_encode(EncodeJob(DyingEncoder()), texts, "doc-x", run_dir, 16, False, "test")
    assert not list((tmp_path / "embeddings").glob("*.npy")), "no final file after a kill"
    done_before = fake_encoder.texts_encoded
    resumed = cached_encode(EncodeJob(fake_encoder), texts, "doc-x", run_dir, 16, False, "test")
    # two shards of 16 were saved; only the remaining 18 texts are encoded again
    assert fake_encoder.texts_encoded - done_before == 18
    np.testing.assert_allclose(resumed, fake_encoder.encode_documents(texts), atol=1e-7)


def test_same_seed_gives_identical_selection(tiny_train):
    config = SelectionConfig(num_negatives=4, sampling="random", seed=11)
    retriever = BM25Retriever()
    a = Miner(retriever, config, show_progress=False).mine(tiny_train).selection
    b = Miner(retriever, config, show_progress=False).mine(tiny_train).selection
    assert (a.negatives == b.negatives).all() and (a.query_rows == b.query_rows).all()


def test_report_counts_add_up(tiny_train, tmp_path):
    config = SelectionConfig(num_negatives=3, range_min=1, range_max=20, max_score=30.0)
    result = Miner(BM25Retriever(), config, run_dir=tmp_path, show_progress=False).mine(tiny_train)
    report = result.report
    chosen = int((result.selection.negatives >= 0).sum())
    dropped_queries = report.queries["dropped"]
    assert report.candidates - sum(report.dropped.values()) >= chosen
    assert report.queries["total"] == len(tiny_train.queries)
    assert report.scores["negative"]["count"] == chosen
    assert (tmp_path / "report.json").exists()
    table = report.format_table()
    for stage in ("positive_id", "rank_window", "max_score"):
        assert stage in table
    assert dropped_queries == report.queries["total"] - len(result.selection.query_rows)


def test_depth_must_cover_range_max():
    with pytest.raises(HardnegError, match="depth"):
        Miner(BM25Retriever(), SelectionConfig(range_max=500), depth=100)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from hardneg.atomic import atomic_path

    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_report_lists_stages_in_pipeline_order_with_a_running_count(tiny_train, tmp_path):
    """Saved as JSON (sorted keys) and loaded again, terminal and HTML tables still follow the pipeline."""
    import re

    from hardneg.report import MiningReport
    from hardneg.report_html import render_html
    from hardneg.select.pipeline import STAGES

    config = SelectionConfig(num_negatives=200, range_min=1, max_score=30.0, relative_margin=0.0, if_short="pad")
    result = Miner(BM25Retriever(), config, depth=210, run_dir=tmp_path, show_progress=False).mine(tiny_train)
    q = result.report.queries
    assert q["padded"] > 0 and q["dropped"] > 0  # padded, and padded but still too short
    assert q["full"] + q["padded"] + q["short_kept"] + q["dropped"] == q["total"]
    report = MiningReport.load(tmp_path / "report.json")
    lines = report.format_table().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("retrieved")))
    rows = [line.split() for line in lines[start + 1 :] if line and line.split()[0] in STAGES]
    assert [r[0] for r in rows] == [s for s in STAGES if s in report.dropped]
    output_negatives = int((result.selection.negatives != -1).sum())
    assert int(rows[-1][-1]) == output_negatives
    assert rows[-1][0] == "padding" and rows[-1][1].startswith("+")
    page = render_html(tmp_path).read_text(encoding="utf-8")
    html_rows = re.findall(r"<tr><td class='l'>(\w+)</td><td>([+\d]+)</td><td>(\d+)</td></tr>", page)
    assert [r[0] for r in html_rows] == [r[0] for r in rows] and int(html_rows[-1][2]) == output_negatives


def test_the_next_write_removes_a_killed_writers_temporary_file(tmp_path):
    import socket
    import subprocess
    import sys

    from hardneg.atomic import atomic_path

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f".out.jsonl.{host}-{int(gone.stdout)}.abc123.tmp"  # its writer was killed
    elsewhere = tmp_path / f".out.jsonl.another-host-{int(gone.stdout)}.def456.tmp"  # another machine's writer
    other_file = tmp_path / f".other.jsonl.{host}-{int(gone.stdout)}.ghi789.tmp"
    for path in (stale, elsewhere, other_file):
        path.write_text("partial")
    with atomic_path(tmp_path / "out.jsonl") as tmp:
        assert tmp.name.startswith(f".out.jsonl.{host}-")
        tmp.write_text("done")
    assert not stale.exists() and elsewhere.exists() and other_file.exists()
    assert (tmp_path / "out.jsonl").read_text() == "done"
