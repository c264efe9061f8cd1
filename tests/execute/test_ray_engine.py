"""The Ray engine against the embedded one: same shard files, same outputs, resume across engines and kills.

Ray runs in ONE subprocess for the whole module (``ray_scenarios.py``: one local cluster,
then a simulated two-node one), inside a private network namespace where only loopback
exists, so no Ray process can reach any other address. Each test asserts on what one
scenario left behind.

The namespace is a private PID namespace too: when the subprocess ends — or is killed at the
timeout — the kernel ends every process in it, so no Ray daemon (raylet, dashboard agent,
runtime-env agent) outlives the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the Ray tests need the [ray] extra (pip install 'hardneg[ray]')")

HERE = Path(__file__).resolve().parent


# a private network namespace (loopback only) and PID namespace (its processes end with its first);
# --kill-child ends that first process when unshare itself is killed
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]


def namespace_problem() -> str | None:
    """Why the private namespaces cannot be made here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    probe = subprocess.run([*NAMESPACE, "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"{' '.join(NAMESPACE)} failed: {probe.stderr.strip()}"


# All scenarios take ~75 s on 2 quiet cores; 900 s ran out while two training runs shared them (session 24)
SCENARIOS_TIMEOUT_S = 2400


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory, minilm_path, tiny_model):
    """Run every Ray scenario once (one Ray cluster for the module); the results and the folder they wrote."""
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(f"Ray tests run only inside a private network namespace (loopback only): {problem}")
    out = tmp_path_factory.mktemp("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    script = f"ip link set lo up && exec {sys.executable} {HERE / 'ray_scenarios.py'} {out} {minilm_path} {tiny_model}"
    results_file = out / "results.json"
    try:
        done = subprocess.run([*NAMESPACE, "sh", "-c", script], env=env, capture_output=True, text=True,
                              timeout=SCENARIOS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        finished = json.loads(results_file.read_text()) if results_file.exists() else {}
        pytest.fail(f"the Ray scenarios ran past {SCENARIOS_TIMEOUT_S} s; finished (seconds): "
                    f"{ {name: r['seconds'] for name, r in finished.items()} }")
    if not results_file.exists():
        pytest.fail(f"the Ray scenarios wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(results_file.read_text()), out


def scenario(scenarios, name: str) -> tuple[dict, Path]:
    results, out = scenarios
    if name not in results:
        pytest.fail(f"scenario {name} did not run (an earlier one stopped the script)")
    if not results[name]["ok"]:
        pytest.fail(f"scenario {name} failed:\n{results[name]['error']}")
    return results[name], out / name


def same_files(a: Path, b: Path, pattern: str) -> list[str]:
    """The files matching ``pattern`` under ``a``, checked byte for byte against ``b``'s; their names."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob(pattern))
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob(pattern))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def test_ray_runs_where_only_loopback_exists(scenarios):
    result, _ = scenario(scenarios, "isolation")
    assert result["interfaces"] == ["lo"]
    # a copy pickled into another process (an asynchronous refresh) joins this cluster, on loopback
    assert result["copy_joins"] == result["joined"] and result["joined"].startswith("127.0.0.1:")


def test_ray_writes_byte_identical_shard_files_from_two_actors(scenarios):
    result, out = scenario(scenarios, "shard_files")
    assert same_files(out / "embedded" / "parts", out / "ray" / "parts", "*.npy") == [f"{i:05d}.npy" for i in range(9)]
    # two actors computed them, neither of them the driver
    assert result["ray_worker_pids"] == 2 and not result["driver_pid_among_them"]


def test_a_mining_run_on_ray_writes_the_same_files_as_embedded(scenarios):
    _, out = scenario(scenarios, "mining_outputs")
    assert len(same_files(out / "embedded", out / "ray", "embeddings/*.npy")) == 2  # queries, documents
    assert len(same_files(out / "embedded", out / "ray", "teacher/*.npy")) == 1
    assert len(same_files(out / "embedded", out / "ray", "candidates/*.parquet")) == 1
    assert (out / "embedded" / "train.jsonl").read_bytes() == (out / "ray" / "train.jsonl").read_bytes()
    assert (out / "ray" / "train.jsonl").stat().st_size > 0


def test_minilm_gives_the_same_candidates_on_ray(scenarios):
    result, _ = scenario(scenarios, "minilm")
    assert result["documents"] == 210 and result["same_ids"]
    assert result["max_score_gap"] < 1e-5


def test_a_killed_worker_loses_only_its_shards(scenarios):
    result, out = scenario(scenarios, "killed_worker")
    assert result["error"] is not None and "A Ray worker died while computing shard" in result["error"]
    assert "run the same command again" in result["error"]
    assert 0 < result["saved_after_kill"] < result["shards"]
    assert result["rerun_computes"] == result["shards"] - result["saved_after_kill"]
    assert (out / "out.npy").read_bytes() == (out / "one-shot.npy").read_bytes()


def test_a_run_dir_moves_between_engines_both_ways(scenarios):
    result, out = scenario(scenarios, "interchange")
    for name in ("embedded-then-ray", "ray-then-embedded"):
        assert result[name]["saved"] >= 1
        assert result[name]["second_computes"] == 9 - result[name]["saved"], name
        assert (out / name / "out.npy").read_bytes() == (out / "one-shot.npy").read_bytes(), name
        assert not (out / name / "parts").exists()


def test_a_two_node_cluster_gives_the_same_result(scenarios):
    result, out = scenario(scenarios, "two_nodes")
    assert result["nodes"] == 2
    assert (out / "ray.npy").read_bytes() == (out / "embedded.npy").read_bytes()
    assert len(set((out / "ray.log").read_text().split())) == 2  # both actors worked


def test_on_two_nodes_a_local_model_folder_travels_to_the_workers(scenarios):
    """No shared storage needed: each actor unpacks its own copy of the folder (links followed), loads from it,
    and removes it when the executor closes."""
    result, _ = scenario(scenarios, "two_nodes")
    assert len(result["loaded_from"]) == 2 and result["model"] not in result["loaded_from"]
    assert all(Path(f).name.startswith("hardneg-model-") for f in result["loaded_from"])
    assert result["existed_while_loaded"] == [True, True] and result["left_after_close"] == []
    # a second pass of the same job (the queries after the documents): nothing sent or unpacked again
    assert result["sent_once"] and result["loads"] == 2
    assert result["shipped_rows"] == [3.0 * row for row in range(53)]


def test_ance_refresh_re_encodes_on_ray_from_a_snapshot_in_the_run_dir(scenarios):
    result, _ = scenario(scenarios, "refresh")
    assert result["same_negatives"]
    # the workers loaded the current weights, saved once under their fingerprint; the older snapshot is gone
    assert result["snapshots"] == [result["current_key"]]
    assert not result["embedded_snapshots"]  # the embedded engine encodes the model in memory
    # an asynchronous refresh re-mined on the same cluster from another process while "training" went on
    assert result["async_applied_step"] == 3 and result["async_pool_version"] == 2


def test_the_loaded_rows_are_the_computed_ones(scenarios):
    _, out = scenario(scenarios, "two_nodes")
    rows = np.load(out / "ray.npy")
    idx = np.arange(len(rows))
    np.testing.assert_array_equal(rows, np.stack([idx, idx**2, idx**3], axis=1).astype(np.float32))


def test_hardneg_train_runs_its_refreshes_on_ray_with_the_same_result(scenarios):
    """``hardneg train --executor ray``: mining and ANCE refreshes (synchronous and asynchronous) encode on Ray
    actors from snapshots of the model being trained; the synchronous run's final weights equal the embedded run's."""
    result, _ = scenario(scenarios, "train_cli")
    assert result["steps"] == {"embedded": 4, "ray": 4, "ray-async": 4}
    assert result["kinds"]["embedded"] == result["kinds"]["ray"] == ["refresh"], result  # at step 2 (no dev split)
    # started at step 2 on the cluster; applied if it finished before step 4, else discarded when training ended
    assert result["kinds"]["ray-async"] in (["refresh"], ["refresh-discarded"]), result
    assert result["same_weights_sync"]
    assert result["snapshots"]["embedded"] == 0 and result["snapshots"]["ray"] >= 1 and result["snapshots"]["ray-async"] >= 1
