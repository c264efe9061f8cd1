"""ANCE refresh scope: a pool-scope refresh against a full one, at the same training checkpoint.

Student all-MiniLM-L6-v2 on debian-desc full (51,797 documents), a fixed sample of
training queries, 64 tokens, hardneg's default selection (dense TopK-PercPos 0.05,
3 negatives, short queries padded). The run:

1. mines the training queries on the whole corpus with the untrained model (the
   "last full mining"; timed) and prints, per pool depth D, how many documents the
   pool would hold and what share of this mining's negatives lie inside it;
2. trains with the bench's usual budget (batch 32, learning rate 5e-5, --epochs
   passes) up to a checkpoint step (default: the last refresh of a 3-refresh run);
3. refreshes from those same weights, side by side: pool scope at each depth D and
   full scope (re-encodes the whole corpus, re-mines every query), all through
   :class:`hardneg.train.refresh.Refresher`, each on its own copy of the negatives.
   A pool refresh is told, as the trainer's batch sampler would tell it, which
   examples the batches up to the next refresh hold, and mines only their queries
   among their top-D candidates of the first mining (``pool-D*``) or among their top D
   in the first mining's document embeddings searched with the current model's query
   embeddings (``fresh-D*``, what a refresher with a run directory does); it reports its seconds,
   documents encoded and the overlap of its negatives with the full refresh's for
   those queries (per query, shared negatives / 3);
4. measures, without more refreshes, what share of the full refresh's negatives
   other pools of the next interval's queries would hold (the refreshed model's
   queries searched in the first mining's document embeddings; both pools' union),
   and with ``--skip-designs`` left out, the older designs (per-query windows,
   stale index made fresh in the pool).

No cache is shared between the two refreshes (no run directory): each encodes its
queries and documents itself. ``uptime`` is recorded before and after each timed
part: on a shared machine the ratio is fair only within one run.

    .venv/bin/python bench/ance_scope.py      # debian-desc full: > 2.5 h on 2 CPU cores at load ~10
    # what bench/RESULTS.md reports (46 min at load ~11): small, queries scaled to full's queries per document
    .venv/bin/python bench/ance_scope.py --data ../shared/data/debian-desc/small --queries 433 --epochs 4
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


def padding_mask(selection):
    """True where a selection's negative is random padding (the last source bit), not a mined candidate."""
    return (selection.sources & (1 << (len(selection.source_names) - 1))) != 0


def by_query(selection, mined_only: bool) -> dict[int, set[int]]:
    """Query row -> the corpus rows of its negatives (only the mined ones with ``mined_only``)."""
    keep = (selection.negatives >= 0) & (~padding_mask(selection) if mined_only else True)
    return {int(q): set(selection.negatives[i][keep[i]].tolist()) for i, q in enumerate(selection.query_rows)}


def overlap(pool_selection, full_selection, mined_only: bool, queries=None) -> float:
    """Mean over queries (those of ``queries`` only, given) of the share of the full refresh's negatives (only its
    mined ones with ``mined_only``) that the pool-scope refresh also selected."""
    pool, full = by_query(pool_selection, False), by_query(full_selection, mined_only)
    wanted = None if queries is None else set(int(q) for q in queries)
    shares = [len(pool.get(q, set()) & rows) / len(rows) for q, rows in full.items()
              if rows and (wanted is None or q in wanted)]
    return sum(shares) / len(shares)


def inside(selection, rows, mined_only: bool, queries=None) -> float:
    """Share of a selection's negatives (only the mined ones with ``mined_only``; only those of ``queries``,
    query rows, given) inside ``rows``."""
    import numpy as np

    keep = (selection.negatives >= 0) & (~padding_mask(selection) if mined_only else True)
    if queries is not None:
        keep &= np.isin(selection.query_rows, queries)[:, None]
    return float(np.isin(selection.negatives[keep], rows).mean())


def next_interval_examples(pool, batch_size: int, seed: int, start: int, count: int):
    """The examples the batch sampler hands out in batches ``start .. start + count`` of its plan (epoch after
    epoch, as the trainer draws them with these negatives): those whose negatives a refresh at step ``start``
    feeds before the next one."""
    import numpy as np

    from hardneg.train.sampler import iter_batches

    batches, epoch = [], 0
    while len(batches) < start + count:
        batches.extend(iter_batches(pool, batch_size, np.random.default_rng([seed, epoch])))
        epoch += 1
    return np.asarray([i for b in batches[start:start + count] for i in b], np.int64)


def window_pool(candidate_rows, selection, positives, margin: int):
    """A per-query pool: each query's candidates down to the rank of its last mined negative plus ``margin``
    (``margin`` alone for a query with none), and every positive."""
    import numpy as np

    mined = padding_mask(selection)
    parts = [np.asarray(p, np.int64) for p in positives]
    for i, q in enumerate(selection.query_rows.tolist()):
        row = candidate_rows[q]
        picked = [n for n, pad in zip(selection.negatives[i].tolist(), mined[i].tolist()) if n >= 0 and not pad]
        ranks = [int(np.flatnonzero(row == n)[0]) for n in picked if (row == n).any()]
        depth = (max(ranks) + 1 if ranks else 0) + margin
        top = row[:depth]
        parts.append(top[top >= 0].astype(np.int64))
    return np.unique(np.concatenate(parts))


def mixed_refresh(miner, data, queries, fresh_docs, stale_docs, rows):
    """The selection a refresh would make re-encoding only ``rows`` and keeping the last full mining's
    embeddings for every other document (ANCE's stale index, made fresh where it matters)."""
    docs = stale_docs.copy()
    docs[rows] = fresh_docs[rows]
    candidates = miner.retriever.search(data, queries, docs, miner.depth, show_progress=False)
    return miner.select(data, candidates)


def other_designs(out, miner, encoder, train_data, first, full, pools, stale_docs, fresh_queries) -> None:
    """Per-query windows and stale-index pools, judged against the full refresh ``full`` (into ``out``)."""
    import numpy as np
    import torch

    # Other pool designs, judged without more refreshes (the overlap of a pool refresh equals the share of the
    # full refresh's negatives inside its pool, within 0.002 in every run so far):
    # per-query windows down to each query's last selected negative (at the first mining) plus a margin,
    windows = {m: window_pool(first.candidates.doc_ids, first.selection, train_data.positives, m)
               for m in (0, 2, 5, 10, 20)}
    out["window_pools"] = {m: {"share_of_corpus": round(len(r) / len(train_data.corpus), 4),
                               "full_negatives_inside": round(inside(full, r, False), 4)} for m, r in windows.items()}
    # and a pool re-encoded while every other document keeps the first mining's embedding (a stale index made
    # fresh where it matters): its selection against the full refresh's, and the same path with every
    # document fresh as the check that this path is the refresh's
    with torch.inference_mode():
        fresh_docs = encoder.encode_documents(train_data.corpus.passages, show_progress=False)
    everything = np.arange(len(train_data.corpus))
    check = mixed_refresh(miner, train_data, fresh_queries, fresh_docs, stale_docs, everything)
    out["mixed_path_check_overlap_with_full"] = round(overlap(check, full, False), 4)
    stale_only = mixed_refresh(miner, train_data, fresh_queries, fresh_docs, stale_docs, everything[:0])
    out["stale_index_overlap"] = round(overlap(stale_only, full, False), 4)
    out["stale_plus_pool"] = {}
    for name, rows in [*((f"D{d}", pools[d]) for d in (3, 5, 10)), *((f"window+{m}", windows[m]) for m in (0, 5))]:
        mixed = mixed_refresh(miner, train_data, fresh_queries, fresh_docs, stale_docs, rows)
        out["stale_plus_pool"][name] = {"share_of_corpus": round(len(rows) / len(train_data.corpus), 4),
                                        "overlap_all_negatives": round(overlap(mixed, full, False), 4)}
    logger.info("designs: %s", json.dumps({k: out[k] for k in ("window_pools", "mixed_path_check_overlap_with_full",
                                                               "stale_index_overlap", "stale_plus_pool")}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1, help="passes over the training queries (the schedule's length)")
    p.add_argument("--refreshes", type=int, default=3, help="refreshes of the schedule the checkpoint is taken from")
    p.add_argument("--checkpoint", type=int, help="step of the comparison (default: the schedule's last refresh, "
                   "the one furthest from the full mining its pool came from when --refreshes < full_every)")
    p.add_argument("--scope-depths", type=int, nargs="*", default=[5, 10],
                   help="pool depths D of the pool-scope refreshes, each run side by side with the full one")
    p.add_argument("--skip-designs", action="store_true",
                   help="leave out the window and stale-index designs (one full-corpus encode fewer)")
    p.add_argument("--pools", nargs="+", default=["candidates", "fresh-queries"], choices=["candidates", "fresh-queries"],
                   help="pool-scope refreshes to run at each depth: the last mining's candidates (pool-D*), the current "
                        "model's queries in the last mining's document embeddings (fresh-D*)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import numpy as np
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
           "max_length": args.max_length, "threads": args.threads, "scope_depths": args.scope_depths, "load": {}}
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
    with torch.inference_mode():  # the last full mining's document embeddings, for the stale-index designs below
        stale_docs = encoder.encode_documents(train_data.corpus.passages, show_progress=False)
    logger.info("first full mining: %.0f s", out["seconds_first_full_mining"])
    pools = {d: pool_scope(first.candidates.doc_ids, train_data.positives, d) for d in DEPTHS}
    out["first_padding_share"] = round(float(padding_mask(first.selection).mean()), 4)
    out["pool_by_depth"] = {d: {"documents": len(r), "share_of_corpus": round(len(r) / len(train_data.corpus), 4),
                                "first_negatives_inside": round(inside(first.selection, r, False), 4),
                                "first_mined_negatives_inside": round(inside(first.selection, r, True), 4)}
                            for d, r in pools.items()}
    logger.info("pool by depth: %s", json.dumps(out["pool_by_depth"]))

    pool = pool_from_selection(train_data, first.selection)
    steps = max(1, len(pool) // args.batch_size) * args.epochs
    period = max(1, math.ceil(steps / (args.refreshes + 1)))  # N refreshes split the run into N + 1 parts
    checkpoint = args.checkpoint or args.refreshes * period
    out.update({"steps_schedule": steps, "checkpoint": checkpoint, "refresh_every": period})
    # the queries trained on between this refresh and the next: what a pool refresh with the look-ahead mines
    examples = next_interval_examples(pool, args.batch_size, args.seed, checkpoint, period)
    upcoming = np.unique(pool.query_rows[examples])

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

    entries, selections = {}, {}
    runs = [(f"{'fresh' if kind == 'fresh-queries' else 'pool'}-D{d}", "pool", d, kind)
            for kind in args.pools for d in args.scope_depths] + [("full", "full", 1, None)]
    for name, scope, depth, kind in runs:  # same weights, one after the other
        copy = pool_from_selection(train_data, first.selection)
        refresher = Refresher(miner, train_data, copy, RefreshConfig(every=period, scope=scope,
                                                                     scope_depth=depth, full_every=None),
                              candidates=first.candidates)
        refresher.look_ahead = lambda batches: examples  # as the trainer's sampler would predict them
        # what a refresher whose miner has a run directory finds there: the first mining's document embeddings
        refresher.stale_documents = stale_docs if kind == "fresh-queries" else None
        out["load"][f"before_{name}"] = uptime()
        with torch.inference_mode():
            entries[name] = refresher.refresh(checkpoint)
        out["load"][f"after_{name}"] = uptime()
        selections[name] = refresher.last_selection
        logger.info("%s refresh: %s", name, entries[name])
    full = selections["full"]
    out["refresh"] = entries
    # Only the queries trained on before the next refresh consume what a refresh mines: the pool of those
    # queries alone, and the share of the full refresh's negatives for them that it holds (upper bound of the
    # overlap a refresh of those queries on that pool reaches; equal to it within 0.002 so far)
    positives_up = [train_data.positives[q] for q in upcoming]
    out["next_interval"] = {"steps": period, "queries": len(upcoming), "by_depth": {}}
    for d in DEPTHS:
        rows = pool_scope(first.candidates.doc_ids[upcoming], positives_up, d)
        out["next_interval"]["by_depth"][d] = {
            "documents": len(rows), "share_of_corpus": round(len(rows) / len(train_data.corpus), 4),
            "full_negatives_inside": round(inside(full, rows, False, upcoming), 4)}
    logger.info("next interval: %s", json.dumps(out["next_interval"]))
    out["full_padding_share"] = round(float(padding_mask(full).mean()), 4)
    out["pool_vs_full"] = {
        name: {"seconds_ratio": round(entries[name]["seconds_mine"] / entries["full"]["seconds_mine"], 4),
               "documents_ratio": round(entries[name]["documents_encoded"] / entries["full"]["documents_encoded"], 4),
               "overlap_all_negatives": round(overlap(selections[name], full, False, upcoming), 4),
               "overlap_mined_negatives": round(overlap(selections[name], full, True, upcoming), 4)}
        for name, *_ in runs[:-1]}
    # what share of the full refresh's negatives each pool depth could have held (an upper bound of the overlap)
    out["full_negatives_inside_pool_by_depth"] = {
        d: {"all": round(inside(full, r, False), 4), "mined": round(inside(full, r, True), 4)} for d, r in pools.items()}
    # the next interval's pool found by the refreshed model's queries in the last full mining's (stale) document
    # embeddings: query encodes are cheap, and the query side of the model's movement is then caught
    with torch.inference_mode():
        fresh_queries = encoder.encode_queries(train_data.queries.texts, show_progress=False)
    ahead = train_data.subset(upcoming)
    found = miner.retriever.search(ahead, fresh_queries[upcoming], stale_docs, max(DEPTHS), show_progress=False)
    designs = {"fresh_query_pool": lambda d: pool_scope(found.doc_ids, positives_up, d),
               "both_pools": lambda d: np.union1d(pool_scope(found.doc_ids, positives_up, d),
                                                  pool_scope(first.candidates.doc_ids[upcoming], positives_up, d))}
    for design, rows_at in designs.items():
        out["next_interval"][design] = {}
        for d in DEPTHS:
            rows = rows_at(d)
            out["next_interval"][design][d] = {
                "documents": len(rows), "share_of_corpus": round(len(rows) / len(train_data.corpus), 4),
                "full_negatives_inside": round(inside(full, rows, False, upcoming), 4)}
        logger.info("next interval, %s: %s", design, json.dumps(out["next_interval"][design]))
    if not args.skip_designs:
        other_designs(out, miner, encoder, train_data, first, full, pools, stale_docs, fresh_queries)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ance_scope.json").write_text(json.dumps(out, indent=2, sort_keys=True))
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
