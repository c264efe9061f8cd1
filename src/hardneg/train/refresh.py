"""ANCE-style refresh: re-mine the negatives with the model being trained.

Every ``every`` optimizer steps the callback re-encodes the corpus with the
current weights, rebuilds the index, re-runs the *same* :class:`~hardneg.mine.Miner`
(and so the same selection settings) the run started with, and swaps the new
negatives into the :class:`~hardneg.train.pool.NegativePool` the batches are drawn
from. Each refresh is logged with its wall time, the staleness of the negatives it
replaced, and dev-split metrics.

Synchronous (default): training pauses while the corpus is re-encoded.

Asynchronous (``RefreshConfig(asynchronous=True)``, ANCE's design): at a refresh
step the weights are saved as a snapshot and another process re-encodes, re-mines
and evaluates with them while training continues on the old negatives. The new
negatives are swapped in at the first step after the worker finishes, and at the
latest at the next refresh step (training waits there, so negatives never lag more
than one period behind). Staleness is then measured against the snapshot's top-k,
and the log records both the snapshot step and the step the negatives were applied.
A refresh still running when training ends is discarded, and one running at a
checkpoint is not saved with it (a resumed run keeps the negatives in use). It pays
off where the worker has its own hardware (a second GPU, spare CPU cores); on a
CPU that training already saturates, the two processes share the cores.

Scope (``RefreshConfig(scope=...)``, :mod:`hardneg.train.refresh_scope`): ``full`` re-encodes
the whole corpus; ``pool`` (the default) re-encodes only the documents that can change the
selection, and is full again every ``full_every``-th refresh. Told the batch sampler's look-ahead
(``Refresher.look_ahead``; :func:`hardneg.train.trainer.train` wires it), it mines only the queries
of the batches before the next refresh, over their pool: their nearest ``scope_depth`` documents in
the last full mining's embeddings, found with the current model's query embeddings (``pool:
fresh-queries``; synchronous refreshes with a run directory), else their top ``scope_depth``
candidates of that mining (``pool: candidates``); positives always join. It skips the dev
evaluation (a whole-corpus encode): dev metrics come at the start, at full refreshes and at the end.

References:
    Xiong et al., "Approximate Nearest Neighbor Negative Contrastive Learning for
    Dense Text Retrieval", ICLR 2021.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.store import load_npy, save_npy, write_json
from hardneg.train.pool import full_rows_as_texts
from hardneg.train.refresh_scope import SCOPES, Scope, fresh_query_pool, pool_scope, scoped_data, to_corpus_rows
from hardneg.train.refresh_worker import PendingRefresh, mine_snapshot
from hardneg.train.staleness import overlap_at_k, top_k_keys

logger = logging.getLogger(__name__)

REFRESH_STATE = "hardneg_refresh.json"
NEGATIVES_STATE = "hardneg_negatives.json"
SCOPE_STATE = "hardneg_refresh_scope.npy"
DEFAULT_SCOPE_DEPTH = 30  # debian-desc full: 0.92-0.94 of a full refresh's mined negatives at 0.21-0.25 of its seconds


@dataclass(frozen=True)
class RefreshConfig:
    """When and how to refresh.

    Attributes:
        every: refresh after every ``every`` optimizer steps (never at the last step);
            None: never re-mine, only evaluate on dev (a dev curve for static negatives).
        staleness_k: staleness compares the negatives in use with the refreshed
            model's top ``staleness_k`` candidates of the same query.
        dev_max_queries: evaluate on at most this many dev queries (the first ones);
            None: all.
        asynchronous: re-mine from a weight snapshot in another process while
            training continues (see the module docstring).
        worker_threads: torch threads of the asynchronous worker.
        scope: ``pool`` (default): re-encode only the pool of documents that can change the
            selection (:mod:`hardneg.train.refresh_scope`); ``full``: the whole corpus every time.
        scope_depth: pool scope: each training query's nearest ``scope_depth`` documents join the
            pool (at most the miner's depth); None: 30, or the miner's depth when smaller.
        full_every: pool scope: every ``full_every``-th refresh is full (and renews the pool);
            None: only when no pool is known yet.
        pool_at_most: pool scope: a pool of more than this share of the corpus is refreshed in full
            instead (it would cost about as much, and a full refresh also renews the pool and runs the
            dev evaluation): small corpora, or many queries per refresh.
    """

    every: int | None = None
    staleness_k: int = 10
    dev_max_queries: int | None = 200
    asynchronous: bool = False
    worker_threads: int = 1
    scope: str = "pool"
    scope_depth: int | None = None
    full_every: int | None = 4
    pool_at_most: float = 0.5

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise HardnegError(f"refresh scope must be one of {', '.join(SCOPES)}; got {self.scope!r}.")
        if self.scope_depth is not None and self.scope_depth < 1:
            raise HardnegError(f"refresh scope depth must be at least 1, got {self.scope_depth}.")
        if not 0 < self.pool_at_most <= 1:
            raise HardnegError(f"pool_at_most is a share of the corpus in (0, 1], got {self.pool_at_most}.")
        if self.full_every is not None and self.full_every < 1:
            raise HardnegError(f"full_every must be at least 1 refresh (or None: never), got {self.full_every}.")
        if self.every is not None and self.every < 1:
            raise HardnegError(f"refresh every must be at least 1 step, got {self.every}.")
        if self.worker_threads < 1:
            raise HardnegError(f"worker_threads must be at least 1, got {self.worker_threads}.")
        if self.staleness_k < 1:
            raise HardnegError(f"staleness_k must be at least 1, got {self.staleness_k}.")


def find_dense(retriever) -> Any:
    """The dense retriever inside ``retriever`` (a :class:`~hardneg.retrieve.base.DenseBacked`: dense or hybrid)."""
    from hardneg.retrieve.base import DenseBacked

    if isinstance(retriever, DenseBacked):
        return retriever.dense_part()
    raise HardnegError(
        "A refresh re-encodes the corpus with the model being trained, so the miner needs a dense or hybrid "
        "retriever (--retriever dense or hybrid); BM25 candidates do not change with training."
    )


class DevEvaluator:
    """nDCG@10 & co. of the current model on (a cap of) the dev split; prepared once.

    Document embeddings go through the miner's run directory, so right after a
    refresh (same weights) they are read back instead of encoded again.
    """

    def __init__(self, dense, dev_data, run_dir, max_queries: int | None, depth: int = 100) -> None:
        from hardneg.evaluate import Evaluator

        if max_queries is not None and len(dev_data.queries) > max_queries:
            dev_data = dev_data.subset(range(max_queries))
        self.dense, self.data, self.run_dir, self.depth = dense, dev_data, run_dir, depth
        self.evaluator = Evaluator(dev_data.qrels())

    def __call__(self, show_progress: bool = False) -> dict[str, float]:
        from hardneg.evaluate import run_from_candidates

        found = self.dense.retrieve(self.data, self.depth, run_dir=self.run_dir, show_progress=show_progress)
        return self.evaluator.evaluate(run_from_candidates(found, self.data.corpus.ids))


class Refresher:
    """Re-mines negatives for ``pool`` with ``miner`` and logs what changed (framework-free).

    Args:
        miner: the very Miner the run's first negatives came from; its retriever's
            encoder must wrap the model being trained (a ``SentenceTransformerEncoder``
            built from the model object, so its fingerprint follows the weights).
        data: the training data the miner mines for.
        pool: the negatives in use.
        config: refresh settings.
        dev: an optional :class:`DevEvaluator`.
        log_path: JSONL file receiving one line per refresh/evaluation.
        snapshot_dir: where asynchronous refreshes keep weight snapshots and results
            while they run (default: beside ``log_path``).
        candidates: the candidates of the last full mining of ``data`` (the one the pool's
            negatives came from): a pool-scope refresh re-encodes their top documents.
            Without them the first refresh is full.

    Attributes:
        look_ahead: optional; given a number of batches, the indices of ``pool``'s examples they will
            (most likely) hold: a pool-scope refresh then mines only their queries (else every query).
    """

    def __init__(self, miner, data, pool, config: RefreshConfig, *, dev: DevEvaluator | None = None,
                 log_path: str | Path | None = None, snapshot_dir: str | Path | None = None,
                 candidates=None) -> None:
        self.miner, self.data, self.pool, self.config, self.dev = miner, data, pool, config, dev
        self.dense = find_dense(miner.retriever)
        self.log_path = Path(log_path) if log_path is not None else None
        if snapshot_dir is None and self.log_path is not None:
            snapshot_dir = self.log_path.parent / "refresh-snapshots"
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.pending: PendingRefresh | None = None
        self.last_selection = None
        if config.scope == "pool" and config.scope_depth is not None and config.scope_depth > miner.depth:
            raise HardnegError(f"refresh scope depth {config.scope_depth} exceeds the miner's depth {miner.depth}: "
                               "lower it or raise --depth.")
        self.scope_depth = config.scope_depth or min(DEFAULT_SCOPE_DEPTH, miner.depth)
        self.refreshes_started = 0
        # each query's top scope_depth candidates at the last full mining: the pools of pool-scope refreshes
        self.scope_candidates: np.ndarray | None = None
        self.stale_documents: np.ndarray | None = None  # the last full mining's document embeddings (memmap)
        self.look_ahead = None
        if candidates is not None:
            self._renew_scope(candidates)

    def _renew_scope(self, candidates, in_process: bool = True) -> None:
        """The pools of later pool-scope refreshes, from a full mining: its candidates and, when it ran in this
        process (not in an asynchronous worker, whose files are keyed by its snapshot), its document embeddings."""
        if self.config.scope == "pool":
            self.scope_candidates = np.ascontiguousarray(candidates.doc_ids[:, : self.scope_depth])
            run_dir = getattr(self.miner, "run_dir", None) if in_process else None
            found = self.dense.cached_embeddings(self.data, run_dir) if run_dir is not None else None
            self.stale_documents = found[1] if found is not None else None

    def _next_scope(self, intervals: int = 1) -> Scope | None:
        """Count a refresh; what it mines (None: every query on the whole corpus). ``intervals``: for how
        many refresh periods its negatives will be in use (2 when applied up to one period late)."""
        self.refreshes_started += 1
        every = self.config.full_every
        if (self.config.scope == "full" or self.scope_candidates is None
                or (every and self.refreshes_started % every == 0)):
            return None
        queries = None
        if self.look_ahead is not None and self.config.every:
            examples = np.asarray(self.look_ahead(intervals * self.config.every), np.int64)
            rows = self.pool.query_rows[examples]
            queries = np.unique(rows[rows >= 0]).astype(np.int64)
            if not len(queries):  # nothing planned ahead (cannot happen mid-training): mine every query
                queries = None
        scope = self._pool(queries)
        if len(scope.documents) > self.config.pool_at_most * len(self.data.corpus):
            logger.info("refresh %d: the pool holds %d of %d documents; refreshing in full instead",
                        self.refreshes_started, len(scope.documents), len(self.data.corpus))
            return None
        return scope

    def _pool(self, queries: np.ndarray | None) -> Scope:
        """The documents whose selection can change for ``queries`` (None: every query)."""
        rows = range(len(self.data.queries)) if queries is None else queries.tolist()
        positives, depth = [self.data.positives[q] for q in rows], self.scope_depth
        if self.stale_documents is not None:  # where the current model puts these queries, in the stale index
            embedded = self.dense.encoder.encode_queries([self.data.queries.texts[q] for q in rows], show_progress=False)
            return Scope(fresh_query_pool(embedded, self.stale_documents, positives, depth), queries, "fresh-queries")
        candidates = self.scope_candidates if queries is None else self.scope_candidates[queries]
        return Scope(pool_scope(candidates, positives, depth), queries)

    def _mine(self, miner, scope: Scope | None):
        """``miner``'s result for the data within ``scope`` (None: all), in corpus and data rows."""
        if scope is None:
            return miner.mine(self.data)
        cut = scoped_data(self.data, scope.documents, scope.queries)
        return to_corpus_rows(miner.mine(cut, save_report=False), scope.documents, scope.queries)

    def _check_can_refresh(self) -> None:
        if self.pool.scores is not None:
            raise HardnegError("Refresh cannot be combined with teacher-scored negatives (margin-mse, listwise-distill): "
                               "new negatives would have no teacher scores. Drop --refresh-every or use a ranking loss.")
        if (self.pool.query_rows < 0).all():
            raise HardnegError("Refresh needs to know which query each example belongs to: pass the data the "
                               "negatives were mined from (its queries must match the file's).")

    def _forget_weights(self) -> None:
        forget = getattr(self.dense.encoder, "forget_key", None)
        if forget is None:
            raise HardnegError("The miner's encoder cannot forget its fingerprint (no forget_key()); a refresh "
                               "would reuse stale embeddings. Use SentenceTransformerEncoder(model).")
        forget()

    def _log(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        logger.info("refresh log: %s", json.dumps(entry, sort_keys=True))
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def evaluate(self, step: int, kind: str = "eval") -> dict[str, Any]:
        """Dev metrics of the current weights (logged)."""
        if self.dev is None:
            return {}
        self._forget_weights()
        t0 = time.perf_counter()
        metrics = self.dev()
        entry = {"kind": kind, "step": step, "seconds": round(time.perf_counter() - t0, 3),
                 **dev_fields(metrics)}
        self._log(entry)
        return entry

    def refresh(self, step: int) -> dict[str, Any]:
        """Re-mine, measure staleness, swap the negatives, evaluate on dev; returns the log entry."""
        self._check_can_refresh()
        t0 = time.perf_counter()  # finding a pool (embedding its queries, searching the stale index) counts
        scope = self._next_scope()
        self._forget_weights()
        result = self._mine(self.miner, scope)
        t_mine = time.perf_counter() - t0
        entry = self._swap(result, step, scope)
        entry["seconds_mine"] = round(t_mine, 3)
        if self.dev is not None and scope is None:  # dev re-encodes the whole corpus: only at full refreshes
            t1 = time.perf_counter()
            metrics = self.dev()
            entry["seconds_dev"] = round(time.perf_counter() - t1, 3)
            entry.update(dev_fields(metrics))
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        self._log(entry)
        return entry

    def _swap(self, result, step: int, scope: Scope | None, in_process: bool = True) -> dict[str, Any]:
        """Swap ``result``'s negatives (mined within ``scope``; None: everything) into the pool; the entry says
        how much changed, how stale it was and how many documents were encoded."""
        if scope is None:
            self._renew_scope(result.candidates, in_process)
        mined = range(len(self.data.queries)) if scope is None or scope.queries is None else scope.queries
        top = top_k_keys(result.candidates.doc_ids[:, : self.config.staleness_k], self.data.corpus.passage_keys)
        overlap = overlap_at_k(self._in_use_keys(mined), top)  # candidate rows follow the queries mined
        new = full_rows_as_texts(result.selection, self.data.corpus.passages, self.pool.num_negatives)
        queries_in_pool = set(self.pool.query_rows.tolist()) - {-1}
        changed = self.pool.swap(new)
        self.last_selection = result.selection  # read by the gradient-share log (which negatives are padding)
        return {
            "kind": "refresh",
            "step": step,
            f"overlap@{self.config.staleness_k}": round(overlap, 6),
            "staleness": round(1.0 - overlap, 6),
            "negatives_changed": round(changed, 6),
            "queries_refreshed": len(queries_in_pool & set(new)),
            "queries_kept_old": len(queries_in_pool - set(new)),
            "pool_version": self.pool.version,
            "scope": "full" if scope is None else "pool",
            "pool": None if scope is None else scope.pool,
            "documents_encoded": len(self.data.corpus) if scope is None else len(scope.documents),
            "queries_mined": len(self.data.queries) if scope is None or scope.queries is None else len(scope.queries),
        }

    # ------------------------------------------------------------------ asynchronous refresh

    def start_async(self, step: int) -> None:
        """Snapshot the current weights and start re-mining with them in another process."""
        import multiprocessing

        self._check_can_refresh()
        if self.pending is not None:
            raise HardnegError(f"A refresh from step {self.pending.step} is still running; poll() it first.")
        snapshot = getattr(self.dense.encoder, "snapshot", None)
        if snapshot is None or self.snapshot_dir is None:
            raise HardnegError("An asynchronous refresh needs an encoder with snapshot() (SentenceTransformerEncoder) "
                               "and a snapshot directory (pass log_path or snapshot_dir).")
        t0 = time.perf_counter()
        scope = self._next_scope(intervals=2)  # applied up to one period late, then used for one more
        folder = self.snapshot_dir / f"step-{step}"
        shutil.rmtree(folder, ignore_errors=True)
        worker_dense = copy.copy(self.dense)
        worker_dense.encoder = snapshot(folder / "model")
        worker_miner = copy.copy(self.miner)
        worker_miner.show_progress = False
        worker_miner.retriever = self.miner.retriever.with_dense_part(worker_dense)
        worker_dev = None
        if self.dev is not None and scope is None:  # dev re-encodes the whole corpus: only at full refreshes
            worker_dev = copy.copy(self.dev)
            worker_dev.dense = worker_dense
        process = multiprocessing.get_context("spawn").Process(
            target=mine_snapshot, name=f"hardneg-refresh-{step}", daemon=True,
            args=(worker_miner, self.data if scope is None else scoped_data(self.data, scope.documents, scope.queries),
                  worker_dev, folder / "result.pkl", self.config.worker_threads, scope is None),
        )
        process.start()
        self.pending = PendingRefresh(step, folder, process, time.perf_counter(), time.perf_counter() - t0, scope)

    def poll(self, step: int, *, wait: bool = False) -> dict[str, Any] | None:
        """Apply a finished asynchronous refresh (waiting for it with ``wait``); its log entry, else None."""
        pending = self.pending
        if pending is None or (not wait and pending.process.is_alive()):
            return None
        t_wait = time.perf_counter()
        pending.process.join()
        waited = time.perf_counter() - t_wait
        self.pending = None
        result_path = pending.folder / "result.pkl"
        if pending.process.exitcode != 0 or not result_path.exists():
            shutil.rmtree(pending.folder, ignore_errors=True)
            raise HardnegError(
                f"The asynchronous refresh from step {pending.step} failed (worker exit code "
                f"{pending.process.exitcode}; its traceback is on stderr). Rerun without asynchronous refresh "
                "to see the error in this process."
            )
        with open(result_path, "rb") as fh:
            result, metrics = pickle.load(fh)
        shutil.rmtree(pending.folder, ignore_errors=True)
        if pending.scope is not None:
            result = to_corpus_rows(result, pending.scope.documents, pending.scope.queries)
        entry = self._swap(result, pending.step, pending.scope, in_process=False)
        entry.update({
            "asynchronous": True,
            "applied_step": step,
            "seconds_snapshot": round(pending.seconds_snapshot, 3),
            "seconds_worker": round(time.perf_counter() - pending.started, 3),
            "seconds_waited": round(waited, 3),
        })
        if metrics is not None:
            entry.update(dev_fields(metrics))
        self._log(entry)
        return entry

    def cancel(self, step: int) -> None:
        """Stop a running asynchronous refresh (training ended first) and log that it was discarded."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.process.is_alive():
            pending.process.terminate()
        pending.process.join()
        shutil.rmtree(pending.folder, ignore_errors=True)
        self._log({"kind": "refresh-discarded", "step": pending.step, "applied_step": None, "ended_at_step": step})

    def _in_use_keys(self, query_rows: Sequence[int]) -> list[np.ndarray]:
        """Per query row, the text keys of its negatives in use (empty when the pool has no example of it)."""
        first: dict[int, int] = {}
        for i, q in enumerate(self.pool.query_rows.tolist()):
            first.setdefault(q, i)
        none = np.empty(0, np.int64)
        return [self.pool.negative_keys[first[q]] if q in first else none for q in np.asarray(query_rows).tolist()]

    # ------------------------------------------------------------------ checkpoint state

    def save(self, folder: str | Path) -> None:
        """Write the refresh history and the negatives in use into a checkpoint folder."""
        folder = Path(folder)
        if self.scope_candidates is not None:
            save_npy(folder / SCOPE_STATE, self.scope_candidates)
        write_json(folder / REFRESH_STATE, {"history": self.history, "config": self.config.__dict__,
                                            "refreshes_started": self.refreshes_started})
        self.pool.save_negatives(folder / NEGATIVES_STATE)

    def load(self, folder: str | Path) -> None:
        """Restore what :meth:`save` wrote."""
        folder = Path(folder)
        state_path = folder / REFRESH_STATE
        if not state_path.exists():
            raise HardnegError(f"{folder} has no {REFRESH_STATE}: it was not written by a hardneg refresh run.")
        state = json.loads(state_path.read_text(encoding="utf-8"))
        self.history = state["history"]
        self.refreshes_started = state.get("refreshes_started",
                                           sum(e["kind"] in ("refresh", "refresh-discarded") for e in self.history))
        scope = load_npy(folder / SCOPE_STATE, what="refresh scope")
        # an earlier hardneg saved the pool's rows (1-D), not each query's candidates: the next refresh is full
        self.scope_candidates = scope if scope is not None and scope.ndim == 2 else None
        self.pool.load_negatives(folder / NEGATIVES_STATE)


def dev_fields(metrics: dict[str, float]) -> dict[str, float]:
    """Dev metrics as log-entry fields: ``dev_ndcg@10`` & co., rounded to 6 places."""
    return {f"dev_{k}": round(v, 6) for k, v in metrics.items()}
