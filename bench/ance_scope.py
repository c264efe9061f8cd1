"""ANCE refresh scope: a pool-scope refresh against a full one, at the same training checkpoint.

Student all-MiniLM-L6-v2 on debian-desc full (51,797 documents), a fixed sample of
training queries, 64 tokens, hardneg's default selection (dense TopK-PercPos 0.05,
3 negatives, short queries padded). The run:

1. mines the training queries on the whole corpus with the untrained model (the
   "last full mining"; timed) and prints, per pool depth D, how many documents the
   pool would hold and what share of this mining's negatives lie inside it;
2. trains with the bench's usual budget (batch 32, learning rate 5e-5, one epoch's
   schedule) up to a checkpoint step (default: the first refresh of a 3-refresh run);
3. refreshes twice from those same weights, side by side: pool scope at depth D
   (re-encodes the pool only) and full scope (re-encodes the whole corpus), both
   through :class:`hardneg.train.refresh.Refresher`, each on its own copy of the
   negatives; and reports their seconds, documents encoded and the overlap of the
   pool scope's negatives with the full refresh's (per query, shared negatives / 3).

No cache is shared between the two refreshes (no run directory): each encodes its
queries and documents itself. ``uptime`` is recorded before and after each timed
part: on a shared machine the ratio is fair only within one run.

    .venv/bin/python bench/ance_scope.py                         # ~1.5 h on 2 shared CPU cores
    .venv/bin/python bench/ance_scope.py --data ../shared/data/debian-desc/small --checkpoint 8
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "debian-desc" / "full"
DEPTHS = (3, 5, 10, 15, 20, 30, 50, 100)

logger = logging.getLogger("bench.ance_scope")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    """Mean over examples of the share of ``b``'s negatives that ``a`` also has."""
    return sum(len(set(x) & set(y)) / len(y) for x, y in zip(a, b)) / len(a)


def inside(selection_negatives, rows) -> float:
    """Share of a selection's negatives (corpus rows, -1 = none) inside ``rows``."""
    import numpy as np

    neg = selection_negatives[selection_negatives >= 0]
    return float(np.isin(neg, rows).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--refreshes", type=int, default=3, help="refreshes of the schedule the checkpoint is taken from")
    p.add_argument("--checkpoint", type=int, help="step of the comparison (default: the schedule's first refresh)")
    p.add_argument("--scope-depth", type=int, help="pool depth D of the pool-scope refresh (default: the deepest of "
                   f"{DEPTHS} whose pool holds at most --max-pool-share of the corpus, chosen after the first mining)")
    p.add_argument("--max-pool-share", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "transformers", "faiss", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from quality import fresh_model, load_splits
    from transformers import TrainerCallback

    from hardneg.mine import Miner
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.select import SelectionConfig
    from hardneg.train.pool import pool_from_selection
    from hardneg.train.recipe import DEFAULT_RECIPE
    from hardneg.train.refresh import RefreshConfig, Refresher
    from hardneg.train.refresh_scope import pool_scope
    from hardneg.train.trainer import TrainConfig, train

    train_data, _, _ = load_splits(args.data, args.queries)
    out = {"data": str(args.data), "documents": len(train_data.corpus), "queries": len(train_data.queries),
           "max_length": args.max_length, "threads": args.threads, "scope_depth": args.scope_depth, "load": {}}
    model = fresh_model(args.max_length)
    encoder = SentenceTransformerEncoder(model, max_length=args.max_length, precision="auto", batch_size=64)
    selection = SelectionConfig(num_negatives=DEFAULT_RECIPE.num_negatives, relative_margin=DEFAULT_RECIPE.relative_margin,
                                if_short=DEFAULT_RECIPE.if_short, seed=args.seed)
    miner = Miner(DenseRetriever(encoder), selection, show_progress=False)

    out["load"]["before_first_mining"] = uptime()
    t0 = time.perf_counter()
    first = miner.mine(train_data, save_report=False)
    out["seconds_first_full_mining"] = round(time.perf_counter() - t0, 1)
    out["load"]["after_first_mining"] = uptime()
    logger.info("first full mining: %.0f s", out["seconds_first_full_mining"])
    pools = {d: pool_scope(first.candidates.doc_ids, train_data.positives, d) for d in DEPTHS}
    out["pool_by_depth"] = {d: {"documents": len(r), "share_of_corpus": round(len(r) / len(train_data.corpus), 4),
                                "first_negatives_inside": round(inside(first.selection.negatives, r), 4)}
                            for d, r in pools.items()}
    logger.info("pool by depth: %s", json.dumps(out["pool_by_depth"]))
    if args.scope_depth is None:
        fits = [d for d in DEPTHS if len(pools[d]) <= args.max_pool_share * len(train_data.corpus)]
        args.scope_depth = max(fits) if fits else DEPTHS[0]
        out["scope_depth"] = args.scope_depth
        logger.info("scope depth %d chosen", args.scope_depth)

    pool = pool_from_selection(train_data, first.selection)
    steps = max(1, len(pool) // args.batch_size)
    checkpoint = args.checkpoint or max(1, math.ceil(steps / (args.refreshes + 1)))
    out.update({"steps_schedule": steps, "checkpoint": checkpoint})

    class StopAt(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if state.global_step >= checkpoint:
                control.should_training_stop = True

    config = TrainConfig(batch_size=args.batch_size, learning_rate=DEFAULT_RECIPE.learning_rate,
                         max_steps=steps, max_length=args.max_length, precision="auto", seed=args.seed,
                         log_gradient_every=None, logging_steps=5)
    out["load"]["before_training"] = uptime()
    t0 = time.perf_counter()
    train(model, pool, args.out / "ance-scope-train", config, callbacks=[StopAt()], show_progress=False)
    out["seconds_training"] = round(time.perf_counter() - t0, 1)
    model.eval()

    entries = {}
    negatives = {}
    for scope in ("pool", "full"):  # same weights, one after the other
        copy = pool_from_selection(train_data, first.selection)
        refresher = Refresher(miner, train_data, copy, RefreshConfig(every=checkpoint, scope=scope,
                                                                     scope_depth=args.scope_depth, full_every=None),
                              candidates=first.candidates)
        out["load"][f"before_{scope}"] = uptime()
        with torch.inference_mode():
            entries[scope] = refresher.refresh(checkpoint)
        out["load"][f"after_{scope}"] = uptime()
        negatives[scope] = (copy.negatives, refresher.last_selection)
        logger.info("%s refresh: %s", scope, entries[scope])
    full_selection = negatives["full"][1]
    out["refresh"] = entries
    out["overlap_pool_with_full"] = round(overlap(negatives["pool"][0], negatives["full"][0]), 4)
    out["seconds_ratio"] = round(entries["pool"]["seconds_mine"] / entries["full"]["seconds_mine"], 4)
    # what share of the full refresh's negatives any pool depth could have held (an upper bound of the overlap)
    out["full_negatives_inside_pool_by_depth"] = {d: round(inside(full_selection.negatives, r), 4)
                                                  for d, r in pools.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ance_scope.json").write_text(json.dumps(out, indent=2, sort_keys=True))
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
