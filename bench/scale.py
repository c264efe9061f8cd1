"""Mining at scale without the model: seconds and peak RSS per stage, corpus 10 k - 1 M x queries 10 k / 100 k.

Each configuration (retriever x documents x queries) runs in its own child process, through
hardneg's public API as a user's script would: ``hardneg.load`` a BEIR folder, a
``Miner`` with a run directory (``miner.candidates``, ``miner.select``), ``hardneg.export``
(triplets). The dense retrievers use a deterministic fake encoder (a unit vector per text,
from a hash of the text: no model, so the non-encoding path is what is measured).

Stages: load, encode (dense: ``DenseRetriever.embed``), index (approximate dense: FAISS
``build_index``; exact search builds none; BM25: ``BM25Retriever.index``, tokenising
included), search (the rest of ``miner.candidates``: search, positives' scores, saving the
candidates), select, export. encode / index / search are told apart by timing hardneg's own functions as
``miner.candidates`` calls them (wrappers that only read the clock and the RSS high-water
mark); CPU seconds (all threads) beside wall seconds, the steadier figure on a shared
machine. Peak RSS per stage: the process's high-water mark (VmHWM), reset when the stage
starts; it counts memory-mapped pages the stage touched. "model" = the process's RSS
after importing hardneg, numpy, FAISS and building the fake encoder (no model here). An
approximate index's row also keeps the mining report's ``search_quality`` (its recall against
exact search on 1,000 sampled queries; the fake encoder's vectors are random, so it says
little about a real corpus's).

Data: synthetic, made once per size under bench/out/scale/: documents of 20-80 Zipf
words (bench/bm25_memory.py's generator), query q's positive is document
``q * docs // queries``, and the query is 6 words drawn from it.

    .venv/bin/python bench/scale.py --docs 10000 100000 --queries 10000 100000 --json bench/out/scale/small.json
    .venv/bin/python bench/scale.py --docs 1000000 --queries 100000 --retrievers bm25 ivf
    .venv/bin/python bench/scale.py --docs 8800000 --queries 100000 --retrievers ivf-pq --embedding-dtype float16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from peak_rss import reset_peak, status_mb  # bench/, first on the path when this script runs

OUT = Path(__file__).resolve().parent / "out" / "scale"
RETRIEVERS = ["bm25", "exact", "ivf", "ivf-pq"]
STAGES = ["load", "encode", "index", "search", "select", "export"]
DIM = 384

class FakeEncoder:
    """Deterministic unit vectors: each text's is a function of the text alone (a 64-bit hash, then
    splitmix64 per coordinate), so documents and queries encode the same way in every process."""

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim

    def key(self) -> str:
        return f"fake-splitmix-{self.dim}"

    def encode_queries(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts) -> np.ndarray:
        import hashlib

        seeds = np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
                          for t in texts], dtype=np.uint64)
        x = seeds[:, None] * np.uint64(self.dim) + np.arange(self.dim, dtype=np.uint64)
        with np.errstate(over="ignore"):  # splitmix64 wraps modulo 2**64 by design
            x = x + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
        v = (x >> np.uint64(40)).astype(np.float32) / np.float32(2**23) - np.float32(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class Stopwatch:
    """Sequential stages; re-entering a stage adds to it (its peak is the highest of its pieces)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.current, self.started, self.cpu_started = None, 0.0, 0.0

    def begin(self, name: str | None) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.current is not None:
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self.started
            self.cpu[self.current] = self.cpu.get(self.current, 0.0) + cpu - self.cpu_started
            self.peak[self.current] = max(self.peak.get(self.current, 0.0), status_mb("VmHWM"))
        reset_peak()
        self.current, self.started, self.cpu_started = name, time.perf_counter(), time.process_time()

    @contextlib.contextmanager
    def around(self, owner, attr: str, name: str, resume: str):
        """While open, ``owner.attr`` is timed as stage ``name``, then stage ``resume`` goes on."""
        inner = getattr(owner, attr)

        def timed(*args, **kwargs):
            self.begin(name)
            try:
                return inner(*args, **kwargs)
            finally:
                self.begin(resume)

        setattr(owner, attr, timed)
        try:
            yield
        finally:
            setattr(owner, attr, inner)


def make_data(docs: int, queries: int) -> Path:
    """A BEIR folder of synthetic documents and queries (made once, reused)."""
    folder = OUT / f"data-{docs}-{queries}"
    if (folder / "qrels" / "train.tsv").exists():
        return folder
    from bm25_memory import synthetic_texts

    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    positive = np.arange(queries, dtype=np.int64) * docs // queries
    rng = np.random.default_rng(2)
    query_texts: dict[int, list[str]] = {}
    want = {int(d): [] for d in positive.tolist()}
    for q, d in enumerate(positive.tolist()):
        want[d].append(q)
    with open(folder / "corpus.jsonl", "w") as fh:
        for d, text in enumerate(synthetic_texts(docs, 20, 80, seed=0)):
            fh.write(json.dumps({"_id": f"d{d}", "title": "", "text": text}) + "\n")
            for q in want.get(d, ()):
                query_texts[q] = " ".join(rng.choice(text.split(), 6).tolist())
    with open(folder / "queries.jsonl", "w") as fh:
        for q in range(queries):
            fh.write(json.dumps({"_id": f"q{q}", "text": query_texts[q]}) + "\n")
    with open(folder / "qrels" / "train.tsv.tmp", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        fh.writelines(f"q{q}\td{d}\t1\n" for q, d in enumerate(positive.tolist()))
    (folder / "qrels" / "train.tsv.tmp").rename(folder / "qrels" / "train.tsv")
    return folder


def run_one(retriever_name: str, folder: Path, run_dir: Path, embedding_dtype: str = "float32") -> dict:
    """One configuration, in this process: the stages, timed."""
    import hardneg
    from hardneg.retrieve import bm25 as bm25_module
    from hardneg.retrieve import dense as dense_module

    _import_libraries()
    if retriever_name == "bm25":
        retriever = hardneg.BM25Retriever()
    else:
        kind = "flat" if retriever_name == "exact" else retriever_name
        retriever = hardneg.DenseRetriever(FakeEncoder(), hardneg.IndexConfig(kind=kind), embedding_dtype=embedding_dtype)
    model_mb = status_mb("VmRSS")
    watch = Stopwatch()
    watch.begin("load")
    data = hardneg.load(folder)
    miner = hardneg.Miner(retriever, run_dir=run_dir, show_progress=False)
    watch.begin("search")
    with contextlib.ExitStack() as hooks:
        hooks.enter_context(watch.around(bm25_module.BM25Retriever, "index", "index", "search"))
        hooks.enter_context(watch.around(dense_module.DenseRetriever, "embed", "encode", "search"))
        hooks.enter_context(watch.around(dense_module, "build_index", "index", "search"))
        candidates, _ = miner.candidates(data)
    watch.begin("select")
    selection = miner.select(data, candidates)
    watch.begin("export")
    hardneg.export(data, selection, run_dir / "triplets.jsonl")
    watch.begin(None)
    return {"model_mb": round(model_mb), "seconds": {k: round(v, 2) for k, v in watch.seconds.items()},
            "cpu_seconds": {k: round(v, 2) for k, v in watch.cpu.items()},
            "peak_mb": {k: round(v) for k, v in watch.peak.items()}, "rows": len(selection.query_rows),
            "search_quality": dict(candidates.search_quality)}


def _import_libraries() -> None:
    """Import what the stages use before the clock starts (a real run has them loaded with its model)."""
    import importlib.util

    import bm25s  # noqa: F401
    import pandas  # noqa: F401 - the candidates are saved through it
    import pyarrow.parquet  # noqa: F401

    from hardneg.retrieve.search import require_faiss

    require_faiss()
    if importlib.util.find_spec("numba") is not None:
        import hardneg.retrieve.bm25_numba  # noqa: F401


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_child(retriever_name: str, docs: int, queries: int, embedding_dtype: str = "float32") -> dict:
    import shutil

    folder = make_data(docs, queries)
    run_dir = OUT / f"run-{retriever_name}-{docs}-{queries}"
    shutil.rmtree(run_dir, ignore_errors=True)
    load_before, start = load_average(), time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", retriever_name, str(folder), str(run_dir),
                           embedding_dtype],
                          capture_output=True, text=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    if proc.returncode != 0:
        return {"retriever": retriever_name, "docs": docs, "queries": queries, "error": proc.stderr[-2000:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"retriever": retriever_name, "docs": docs, "queries": queries, "embedding_dtype": embedding_dtype, **result,
            "load_avg": [load_before, load_average()], "utc": time.strftime("%H:%M", time.gmtime(start))}


def growth(rows: list[dict]) -> dict:
    """Per retriever, queries and stage: the log-log slope of CPU seconds (wall where there are none) against
    documents (least squares)."""
    out = {}
    for r in {row["retriever"] for row in rows}:
        for q in {row["queries"] for row in rows}:
            points = sorted((row["docs"], row.get("cpu_seconds", row["seconds"])) for row in rows
                            if row["retriever"] == r and row["queries"] == q and "seconds" in row)
            if len(points) < 2:
                continue
            for stage in STAGES:
                xs = [np.log(d) for d, s in points if s.get(stage, 0) > 0]
                ys = [np.log(s[stage]) for d, s in points if s.get(stage, 0) > 0]
                if len(xs) >= 2:
                    out[f"{r} q={q} {stage}"] = round(float(np.polyfit(xs, ys, 1)[0]), 2)
    return out


def markdown(rows: list[dict]) -> str:
    """The RESULTS.md table: per configuration, wall s / CPU s and peak RSS per stage."""
    lines = ["| retriever | docs | queries | " + " | ".join(f"{st}: s (CPU) / peak MB" for st in STAGES)
             + " | model MB | load |", "|---|---|---|" + "---|" * (len(STAGES) + 2)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['retriever']} | {row['docs']:,} | {row['queries']:,} | failed |")
            continue
        s, c, p = row["seconds"], row["cpu_seconds"], row["peak_mb"]
        cells = [f"{s[st]:.1f} ({c[st]:.1f}) / {p[st]:,}" if st in s else "—" for st in STAGES]
        lines.append(f"| {row['retriever']} | {row['docs']:,} | {row['queries']:,} | " + " | ".join(cells)
                     + f" | {row['model_mb']} | {row['load_avg'][0]:.1f}–{row['load_avg'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--retrievers", nargs="+", default=RETRIEVERS, choices=RETRIEVERS)
    parser.add_argument("--json", type=Path, help="append each configuration's result to this JSON lines file")
    parser.add_argument("--table", type=Path, help="print the markdown table and growth of a --json file, run nothing")
    parser.add_argument("--embedding-dtype", choices=("float32", "float16"), default="float32",
                        help="how the dense retrievers store embeddings (default float32, as the rows in RESULTS)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]
        print(markdown(rows))
        print(json.dumps(growth(rows), indent=1))
        return
    if args.child:
        print(json.dumps(run_one(args.child[0], Path(args.child[1]), Path(args.child[2]), args.child[3])))
        return
    rows = []
    for docs in args.docs:
        for queries in args.queries:
            for name in args.retrievers:
                row = run_child(name, docs, queries, args.embedding_dtype)
                rows.append(row)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                if "error" in row:
                    print(f"{name} {docs:,} x {queries:,}: FAILED\n{row['error']}", flush=True)
                    continue
                s, p = row["seconds"], row["peak_mb"]
                cells = "  ".join(f"{st} {s.get(st, 0):.1f}s/{p.get(st, 0):,}MB" for st in STAGES)
                print(f"{name:<6} {docs:>9,} x {queries:>7,}  {cells}  (model {row['model_mb']} MB, "
                      f"load {row['load_avg'][0]:.1f}->{row['load_avg'][1]:.1f})", flush=True)
    print(json.dumps(growth(rows), indent=1))


if __name__ == "__main__":
    main()
