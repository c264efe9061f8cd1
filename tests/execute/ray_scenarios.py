"""The Ray engine's scenarios, run in ONE process on ONE local Ray cluster (then a simulated two-node one).

``test_ray_engine.py`` starts this script inside a private network namespace (loopback only)
and PID namespace (``unshare --net --pid``) and asserts on what it writes: ``OUT/results.json`` (one entry per scenario,
or the error it raised) and the files each scenario leaves under ``OUT/<scenario>/``.

    python ray_scenarios.py OUT MINILM_PATH TINY_BI_ENCODER_PATH
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from hardneg.execute import EmbeddedExecutor, ShardWork
from hardneg.execute.ray_engine import RayExecutor
from hardneg.store import RunDir, sharded_compute

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import TINY, FakeEncoder, OverlapTeacher  # noqa: E402

ORDER = np.random.default_rng(0).permutation(53)
SHARD = 6  # 9 shards


class CountingJob:
    """rows -> [row, row**2, row**3] (float32); appends one line per shard to ``log`` (counts across processes).

    With ``die_at``, the worker that draws that shard first kills its own process (a worker lost mid-run).
    """

    def __init__(self, log: Path, die_at: int | None = None) -> None:
        self.log, self.die_at = str(log), die_at

    def load(self):
        def compute(idx: np.ndarray) -> np.ndarray:
            if self.die_at is not None and self.die_at in idx.tolist():
                os._exit(1)
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return np.stack([idx, idx**2, idx**3], axis=1).astype(np.float32)

        return compute

    def portable(self):
        return self


class FolderJob:
    """rows -> rows x the number in ``FOLDER/sub/weights.txt``, read from the folder the job loads from (a model
    directory in miniature); appends that folder to ``log`` once per load."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder, self.log = str(folder), str(log)

    def model_dir(self) -> Path:
        return Path(self.folder)

    def loading_from(self, folder) -> FolderJob:
        return FolderJob(folder, Path(self.log))

    def load(self):
        scale = float((Path(self.folder) / "link.txt").read_text())  # a link to sub/weights.txt in the original
        with open(self.log, "a") as fh:
            fh.write(f"{self.folder}\n")
        return lambda idx: (np.asarray(idx)[:, None] * scale).astype(np.float32)

    def portable(self) -> FolderJob:
        return self


def computes(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def run_shards(executor, parts: Path, final: Path | None, job) -> np.ndarray:
    return sharded_compute(ShardWork(job, lambda idx: np.asarray(idx, np.int64)), ORDER, shard_size=SHARD,
                           parts_dir=parts, final=final, show_progress=False, executor=executor)


def shard_files(out: Path, ray_executor) -> dict:
    """The same shards (kept: no final file) from each engine."""
    for name, executor in (("embedded", EmbeddedExecutor()), ("ray", ray_executor)):
        run_shards(executor, out / name / "parts", None, CountingJob(out / name / "computes.log"))
    pids = set((out / "ray" / "computes.log").read_text().split())
    return {"ray_worker_pids": len(pids), "driver_pid_among_them": str(os.getpid()) in pids}


def mining_outputs(out: Path, ray_executor) -> dict:
    """A whole mining run (fake encoder, fake teacher, export) with each engine: outputs byte for byte."""
    from hardneg.data import load_beir
    from hardneg.export import export
    from hardneg.mine import Miner
    from hardneg.retrieve.dense import DenseRetriever

    data = load_beir(TINY, "train")
    for name, executor in (("embedded", None), ("ray", ray_executor)):
        miner = Miner(DenseRetriever(FakeEncoder(), shard_size=40, executor=executor), run_dir=out / name,
                      teacher=OverlapTeacher(), executor=executor, show_progress=False)
        result = miner.mine(data)
        export(data, result.selection, out / name / "train.jsonl", "triplet", with_scores=True)
    return {}


def minilm_candidates(out: Path, ray_executor, minilm: str) -> dict:
    """Real MiniLM on the tiny corpus (210 documents, 60 queries): the same candidate ids on both engines."""
    from hardneg.data import load_beir
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    data = load_beir(TINY, "train").subset(range(60))
    found = {}
    for name, executor in (("embedded", None), ("ray", ray_executor)):
        encoder = SentenceTransformerEncoder(minilm, max_length=64, precision="fp32")
        cands = DenseRetriever(encoder, shard_size=64, executor=executor).retrieve(
            data, 20, run_dir=RunDir(out / name), show_progress=False)
        found[name] = cands
    same = bool((found["embedded"].doc_ids == found["ray"].doc_ids).all())
    gap = float(np.nanmax(np.abs(found["embedded"].scores - found["ray"].scores)))
    return {"same_ids": same, "max_score_gap": gap, "queries": len(data.queries), "documents": len(data.corpus)}


def killed_worker(out: Path, ray_executor) -> dict:
    """A worker dies mid-run; the rerun computes only the shards that were not saved."""
    parts, final = out / "parts", out / "out.npy"
    error = None
    try:
        run_shards(ray_executor, parts, final, CountingJob(out / "first.log", die_at=int(ORDER[5 * SHARD])))
    except Exception as exc:  # the run must fail with the engine's message
        error = f"{type(exc).__name__}: {exc}"
    saved = len(list(parts.glob("*.npy")))
    run_shards(ray_executor, parts, final, CountingJob(out / "rerun.log"))
    run_shards(EmbeddedExecutor(), out / "ref-parts", out / "one-shot.npy", CountingJob(out / "ref.log"))
    return {"error": error, "saved_after_kill": saved, "rerun_computes": computes(out / "rerun.log"),
            "shards": -(-len(ORDER) // SHARD)}


def interchange(out: Path, ray_executor) -> dict:
    """Half a run on one engine, the rest on the other (both ways), against a one-shot run."""

    class StopAfter(CountingJob):
        def load(self):
            inner = super().load()

            def compute(idx):
                if computes(Path(self.log)) == 4:
                    raise RuntimeError("stopped")
                return inner(idx)

            return compute

    run_shards(EmbeddedExecutor(), out / "one-parts", out / "one-shot.npy", CountingJob(out / "one.log"))
    result = {}
    for name, first, second in (("embedded-then-ray", EmbeddedExecutor(), ray_executor),
                                ("ray-then-embedded", ray_executor, EmbeddedExecutor())):
        try:
            run_shards(first, out / name / "parts", out / name / "out.npy", StopAfter(out / name / "first.log"))
        except RuntimeError:
            pass
        saved = len(list((out / name / "parts").glob("*.npy")))
        run_shards(second, out / name / "parts", out / name / "out.npy", CountingJob(out / name / "second.log"))
        result[name] = {"saved": saved, "second_computes": computes(out / name / "second.log")}
    return result


def refresh_on_ray(out: Path, ray_executor, tiny_bi: str) -> dict:
    """ANCE refresh with the model being trained (in memory): workers encode a snapshot saved in the run dir."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.data import load_beir
    from hardneg.mine import Miner
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.select import SelectionConfig
    from hardneg.train.pool import pool_from_selection
    from hardneg.train.refresh import RefreshConfig, Refresher

    data = load_beir(TINY, "train").subset(range(40))
    ids, model, refresher, pool = {}, None, None, None
    for name, executor in (("embedded", None), ("ray", ray_executor)):
        torch.manual_seed(0)
        model = SentenceTransformer(tiny_bi, device="cpu")
        encoder = SentenceTransformerEncoder(model, max_length=32, precision="fp32")
        miner = Miner(DenseRetriever(encoder, shard_size=50, executor=executor), SelectionConfig(num_negatives=2),
                      run_dir=out / name, show_progress=False)
        pool = pool_from_selection(data, miner.mine(data).selection)
        refresher = Refresher(miner, data, pool, RefreshConfig(every=1), snapshot_dir=out / name / "async")
        train_a_little(model)
        refresher.refresh(step=1)
        ids[name] = ([list(n) for n in pool.negatives], encoder.key())  # a copy: the async refresh swaps more in
    snapshots = sorted(p.name for p in (out / "ray" / "snapshots").iterdir())
    # asynchronous: another process re-mines from a snapshot, on the same Ray cluster, while "training" goes on
    train_a_little(model)
    refresher.start_async(step=2)
    train_a_little(model)
    entry = refresher.poll(step=3, wait=True)
    return {"same_negatives": ids["embedded"][0] == ids["ray"][0], "snapshots": snapshots,
            "current_key": ids["ray"][1], "embedded_snapshots": (out / "embedded" / "snapshots").exists(),
            "async_applied_step": entry["applied_step"], "async_pool_version": pool.version}


def train_cli(out: Path, ray_executor, tiny_bi: str) -> dict:
    """``hardneg train --executor ray`` end to end, as a user runs it: mining, a synchronous refresh and an
    asynchronous one re-encode on the cluster's actors while the driver trains; the same run embedded."""
    import torch

    from hardneg.cli import main as cli

    torch.set_num_threads(1)
    flags = [str(TINY), "--model", tiny_bi, "--max-queries", "24", "--num-negatives", "1", "--train-batch-size", "8",
             "--max-steps", "4", "--max-length", "32", "--precision", "fp32", "--dev-split", "none",
             "--refresh-every", "2", "--seed", "0"]
    for name, extra in (("embedded", []), ("ray", ["--executor", "ray", "--workers", "2", "--cpus-per-worker", "0.5"]),
                        ("ray-async", ["--executor", "ray", "--refresh-async"])):
        rc = cli(["-q", "train", *flags, "--output", str(out / name), *extra])
        if rc != 0:
            raise RuntimeError(f"hardneg train ({name}) exited {rc}")
    summaries = {name: json.loads((out / name / "train_summary.json").read_text())
                 for name in ("embedded", "ray", "ray-async")}

    def weights(name: str) -> bytes:
        return (out / name / "final" / "model.safetensors").read_bytes()

    return {"kinds": {n: [e["kind"] for e in s["history"]] for n, s in summaries.items()},
            "steps": {n: s["steps"] for n, s in summaries.items()},
            "same_weights_sync": weights("embedded") == weights("ray"),
            # the model being trained is in memory: Ray workers encode the snapshots saved for them
            "snapshots": {n: len(list((out / n / "hardneg-run" / "snapshots").glob("*")))
                          for n in ("embedded", "ray", "ray-async")}}


def train_a_little(model) -> None:
    """Stand-in for training steps: the weights move, so a refresh must re-encode."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))


def two_nodes(out: Path) -> dict:
    """A simulated two-node cluster (ray.cluster_utils.Cluster): one actor on each node, the same shards."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        executor = RayExecutor(address=cluster.address, workers=2, cpus_per_worker=1)
        run_shards(executor, out / "ray-parts", out / "ray.npy", CountingJob(out / "ray.log"))
        run_shards(EmbeddedExecutor(), out / "ref-parts", out / "embedded.npy", CountingJob(out / "ref.log"))
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        # a model in a local folder: two nodes, so each actor loads its own copy, sent through Ray
        model = out / "model"
        (model / "sub").mkdir(parents=True)
        (model / "sub" / "weights.txt").write_text("3")
        (model / "link.txt").symlink_to(model / "sub" / "weights.txt")
        shipped = run_shards(executor, out / "ship-parts", None, FolderJob(model, out / "loads.log"))
        sent = executor._shipped
        run_shards(executor, out / "ship-parts-2", None, FolderJob(model, out / "loads.log"))  # a second pass
        sent_once = executor._shipped is sent
        loads = (out / "loads.log").read_text().split()
        loaded_from = sorted(set(loads))
        existed = [Path(f).is_dir() for f in loaded_from]
        executor.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"nodes": nodes, "model": str(model), "loaded_from": loaded_from, "existed_while_loaded": existed,
            "sent_once": sent_once, "loads": len(loads),
            "left_after_close": [f for f in loaded_from if Path(f).exists()], "shipped_rows": shipped.ravel().tolist()}


def isolation(out: Path, ray_executor) -> dict:
    """What this process can reach (only loopback), and where a pickled executor would connect."""
    import pickle
    import socket

    ray_executor.connect()
    copy = pickle.loads(pickle.dumps(ray_executor))
    return {"interfaces": [name for _, name in socket.if_nameindex()], "copy_joins": copy.address,
            "joined": ray_executor._joined}


def main(out: Path, minilm: str, tiny_bi: str) -> None:
    ray_executor = RayExecutor(workers=2, cpus_per_worker=0.5)
    scenarios = {
        "isolation": lambda o: isolation(o, ray_executor),
        "shard_files": lambda o: shard_files(o, ray_executor),
        "mining_outputs": lambda o: mining_outputs(o, ray_executor),
        "killed_worker": lambda o: killed_worker(o, ray_executor),
        "interchange": lambda o: interchange(o, ray_executor),
        "minilm": lambda o: minilm_candidates(o, ray_executor, minilm),
        "refresh": lambda o: refresh_on_ray(o, ray_executor, tiny_bi),
        "train_cli": lambda o: train_cli(o, ray_executor, tiny_bi),
        "two_nodes": two_nodes,
    }
    results = {}
    for name, scenario in scenarios.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            results[name] = {"ok": True, **scenario(folder)}
        except Exception:
            results[name] = {"ok": False, "error": traceback.format_exc()}
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
