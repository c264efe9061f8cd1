"""``--executor`` and the Ray flags reach the executor that runs, on every command that encodes or scores.

A recording stand-in replaces :class:`~hardneg.execute.ray_engine.RayExecutor`: it keeps the
options it was built with and the jobs it was handed, and computes them in this process, so
these tests check the wiring without starting Ray (``tests/execute/test_ray_engine.py`` runs Ray).
"""

from __future__ import annotations

import pytest

from hardneg.cli import main
from hardneg.execute import EmbeddedExecutor


class RecordingRay(EmbeddedExecutor):
    name = "ray"
    built: list[RecordingRay] = []

    def __init__(self, **options) -> None:
        self.options, self.jobs = options, []
        RecordingRay.built.append(self)

    def run(self, job, shards):
        shards = list(shards)
        self.jobs.append((type(job).__name__, len(shards)))
        return super().run(job, shards)


@pytest.fixture
def recording(monkeypatch):
    from hardneg.execute import ray_engine

    RecordingRay.built = []
    monkeypatch.setattr(ray_engine, "RayExecutor", RecordingRay)
    return RecordingRay.built


def the_executor(built) -> RecordingRay:
    assert len(built) == 1, "one executor per command"
    return built[0]


def test_mine_encodes_and_scores_on_the_executor_asked_for(tmp_path, tiny_dir, tiny_models, recording):
    bi, ce = map(str, tiny_models)
    assert main(["-q", "mine", str(tiny_dir), "--model", bi, "--max-queries", "12", "--max-length", "32",
                 "--cross-encoder", ce, "--num-negatives", "1", "--output", str(tmp_path / "out.jsonl"),
                 "--executor", "ray", "--workers", "2", "--cpus-per-worker", "0.5"]) == 0
    ray = the_executor(recording)
    assert ray.options == {"workers": 2, "cpus_per_worker": 0.5}
    kinds = [kind for kind, shards in ray.jobs if shards]
    assert kinds.count("EncodeJob") == 2 and kinds.count("ScoreJob") == 1  # documents, queries; teacher


def test_eval_joins_the_cluster_given(tmp_path, tiny_dir, tiny_model, recording):
    assert main(["-q", "eval", str(tiny_dir), "--model", tiny_model, "--max-length", "32", "--max-queries", "5",
                 "--executor", "ray", "--ray-address", "auto", "--gpus-per-worker", "0.25", "--json"]) == 0
    ray = the_executor(recording)
    assert ray.options == {"address": "auto", "gpus_per_worker": 0.25}
    assert [kind for kind, _ in ray.jobs] == ["EncodeJob", "EncodeJob"]


def test_rescore_scores_on_the_executor_asked_for(tmp_path, tiny_dir, tiny_models, recording):
    run = tmp_path / "run"
    assert main(["-q", "mine", str(tiny_dir), "--max-queries", "8", "--num-negatives", "1", "--run-dir", str(run),
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    assert recording == []  # embedded by default
    assert main(["-q", "rescore", str(run), "--cross-encoder", str(tiny_models[1]), "--executor", "ray",
                 "--workers", "3"]) == 0
    ray = the_executor(recording)
    assert ray.options == {"workers": 3} and [kind for kind, _ in ray.jobs] == ["ScoreJob"]


def test_train_mines_on_the_executor_asked_for(tmp_path, tiny_dir, tiny_model, recording):
    assert main(["-q", "train", str(tiny_dir), "--model", tiny_model, "--max-queries", "8", "--num-negatives", "1",
                 "--train-batch-size", "4", "--max-steps", "1", "--max-length", "32", "--precision", "fp32",
                 "--dev-split", "none", "--output", str(tmp_path / "student"),
                 "--executor", "ray", "--workers", "1", "--cpus-per-worker", "2"]) == 0
    ray = the_executor(recording)
    assert ray.options == {"workers": 1, "cpus_per_worker": 2.0}
    assert [kind for kind, shards in ray.jobs if shards] == ["EncodeJob", "EncodeJob"]


@pytest.mark.parametrize("command", ["mine", "eval"])
def test_ray_with_nothing_to_run_says_so_once(tmp_path, tiny_dir, tiny_models, recording, caplog, command):
    out = ["--output", str(tmp_path / "out.jsonl")] if command == "mine" else ["--json"]
    with caplog.at_level("WARNING", logger="hardneg"):
        assert main(["-q", command, str(tiny_dir), "--max-queries", "5", *out, "--executor", "ray"]) == 0
    said = [r.getMessage() for r in caplog.records if "--executor ray" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("--executor ray: nothing here runs on Ray.")
    assert the_executor(recording).jobs == []
    if command == "mine":  # with a teacher there is work for Ray, and no such line
        caplog.clear()
        assert main(["-q", "mine", str(tiny_dir), "--max-queries", "5", "--output", str(tmp_path / "t.jsonl"),
                     "--cross-encoder", str(tiny_models[1]), "--num-negatives", "1", "--executor", "ray"]) == 0
        assert not [r for r in caplog.records if "--executor ray" in r.getMessage()]
        assert [kind for kind, _ in recording[-1].jobs] == ["ScoreJob"]


@pytest.mark.parametrize("flags,message", [
    (["--workers", "2"], "--workers only apply to --executor ray; add --executor ray or drop them."),
    (["--executor", "ray", "--workers", "0"], "--workers must be at least 1, got 0."),
    (["--executor", "ray", "--cpus-per-worker", "0"], "--cpus-per-worker must be above 0, got 0.0."),
    (["--executor", "ray", "--gpus-per-worker", "-1"], "--gpus-per-worker must be at least 0, got -1.0."),
])
def test_executor_flags_are_checked(tmp_path, tiny_dir, capsys, flags, message):
    assert main(["-q", "mine", str(tiny_dir), "--output", str(tmp_path / "o.jsonl"), *flags]) == 2
    assert capsys.readouterr().err.strip() == f"hardneg: error: {message}"


def test_executor_ray_without_ray_says_how_to_install_it(tmp_path, tiny_dir, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["-q", "mine", str(tiny_dir), "--output", str(tmp_path / "o.jsonl"), "--executor", "ray"]) == 2
    assert capsys.readouterr().err.strip() == "hardneg: error: --executor ray needs Ray: pip install 'hardneg[ray]'"
