"""Mining end to end: candidates (cached in the run directory) → selection → report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hardneg.candidates import Candidates
from hardneg.data import RetrievalData
from hardneg.errors import HardnegError
from hardneg.execute import Executor
from hardneg.report import MiningReport
from hardneg.retrieve.base import Retriever
from hardneg.select import Selection, SelectionConfig, select_negatives
from hardneg.select.stages import AFTER_FILTERS, LOOSEN
from hardneg.store import RunDir, fingerprint, read_artifact, save_json_artifact
from hardneg.teacher.rescore import rescore_candidates
from hardneg.teacher.scorer import Scorer

logger = logging.getLogger(__name__)

DEFAULT_DEPTH = 100


@dataclass(frozen=True)
class MiningResult:
    """What one :meth:`Miner.mine` call produced."""

    candidates: Candidates
    selection: Selection
    report: MiningReport
    reused_candidates: bool


class Miner:
    """A mining pipeline, prepared once and applied to any data.

    Args:
        retriever: where candidates come from (:mod:`hardneg.retrieve`).
        selection: how candidates become negatives.
        depth: candidates kept per query; default ``max(100, range_max + 10)``. Saved
            candidates are reused when data, retriever and depth are unchanged.
        run_dir: where embeddings, candidates and the report are kept; None keeps
            nothing (every call recomputes).
        show_progress: tqdm bars on long stages.
        teacher: a cross-encoder (:class:`~hardneg.teacher.scorer.Scorer`); every
            candidate and positive gets a teacher score (cached in the run directory
            under the teacher's fingerprint), for ``score_source="teacher"``, denoising,
            distillation scores and the report's false-negative estimate. Without one,
            selection may still read teacher scores saved by an earlier rescoring.
        executor: who computes the teacher's scores (:mod:`hardneg.execute`); default: this
            process. Encoding runs on the retriever's own executor.
    """

    def __init__(
        self,
        retriever: Retriever,
        selection: SelectionConfig | None = None,
        *,
        depth: int | None = None,
        run_dir: str | Path | None = None,
        show_progress: bool = True,
        teacher: Scorer | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.retriever = retriever
        self.teacher = teacher
        self.executor = executor
        self.selection = selection or SelectionConfig()
        if depth is None:
            depth = max(DEFAULT_DEPTH, (self.selection.range_max or 0) + 10)
        if depth < 1:
            raise HardnegError(f"depth must be at least 1, got {depth}.")
        if depth < self.selection.num_negatives:
            raise HardnegError(f"depth {depth} is below num_negatives {self.selection.num_negatives}; raise --depth.")
        if self.selection.range_max is not None and self.selection.range_max > depth:
            raise HardnegError(f"range_max {self.selection.range_max} exceeds depth {depth}; raise --depth.")
        self.depth = depth
        self.run_dir = RunDir(run_dir) if run_dir is not None else None
        self.show_progress = show_progress

    def candidates(self, data: RetrievalData) -> tuple[Candidates, bool]:
        """Retrieve candidates, or load them from the run directory. Returns ``(candidates, reused)``.

        With a teacher, candidates not yet scored by it are rescored (and saved again).
        """
        if self.run_dir is None:
            found = self.retriever.retrieve(data, self.depth, show_progress=self.show_progress)
            return self._rescored(data, found, None), False
        key = fingerprint(data.fingerprint(), self.retriever.key(), self.depth)
        path, manifest = self.run_dir.candidates(key), self.run_dir.candidates_manifest(key)
        record = {"data": data.source, "data_source": data.origin.to_dict(), "data_fingerprint": data.fingerprint(),
                  "retriever_key": self.retriever.key(), "depth": self.depth}
        saved = read_artifact(path, Candidates.load, what="candidates")
        if saved is not None:
            logger.info("reusing candidates %s (same data, retriever and depth)", path)
            if read_artifact(manifest, lambda p: p.read_text(encoding="utf-8"), what="candidates record") is None:
                save_json_artifact(manifest, {**record, "method": saved.method})
            return self._rescored(data, saved, path), True
        found = self.retriever.retrieve(data, self.depth, run_dir=self.run_dir, show_progress=self.show_progress)
        found.save(path)
        save_json_artifact(manifest, {**record, "method": found.method})
        return self._rescored(data, found, path), False

    def _rescored(self, data: RetrievalData, found: Candidates, path: Path | None) -> Candidates:
        if self.teacher is None or found.teacher == self.teacher.key():
            return found
        found = rescore_candidates(found, data, self.teacher, run_dir=self.run_dir, show_progress=self.show_progress,
                                   executor=self.executor)
        if path is not None:
            found.save(path)
        return found

    def select(self, data: RetrievalData, candidates: Candidates) -> Selection:
        """Apply the selection settings to candidates of ``data``."""
        return select_negatives(candidates, data.positives, data.corpus.passage_keys, self.selection)

    def mine(self, data: RetrievalData, *, save_report: bool = True) -> MiningResult:
        """Candidates, selection and report for ``data``.

        Args:
            save_report: save the report (and what ``hardneg report`` draws) in the run
                directory now. The CLI passes False and calls :meth:`save_report` once the
                training file is written, so a failed run leaves the last good report.

        Raises:
            HardnegError: no query kept any negative (the message says which stage took them).
        """
        t0 = time.perf_counter()
        found, reused = self.candidates(data)
        t1 = time.perf_counter()
        selection = self.select(data, found)
        t2 = time.perf_counter()
        if not len(selection.query_rows):
            raise HardnegError(nothing_kept(selection, self.selection, data))
        report = MiningReport.build(
            data, found, selection, self.selection, reused=reused,
            seconds={"candidates": t1 - t0, "selection": t2 - t1},
        )
        result = MiningResult(found, selection, report, reused)
        if save_report:
            self.save_report(data, result)
        return result

    def save_report(self, data: RetrievalData, result: MiningResult) -> None:
        """Save ``result``'s report, score samples and examples in the run directory (if any)."""
        if self.run_dir is None:
            return
        from hardneg.report_html import save_snapshot

        result.report.save(self.run_dir.report)
        from hardneg.retrieve.base import DenseBacked

        dense = self.retriever.dense_part() if isinstance(self.retriever, DenseBacked) else None
        save_snapshot(self.run_dir, data, result.candidates, result.selection, dense)


def nothing_kept(selection: Selection, config: SelectionConfig, data) -> str:
    """Why a selection kept no query, and what to change."""
    total = selection.queries.get("total", 0)
    stages = sorted(((n, name) for name, n in selection.dropped.items() if n > 0 and name not in AFTER_FILTERS),
                    reverse=True)
    biggest = ", ".join(f"{name} {n}" for n, name in stages[:3]) or "none"
    message = (f"No query kept any negatives: all {total} queries ended with fewer than {config.num_negatives} "
               f"(--if-short {config.if_short}). Candidates removed most by: {biggest}.")
    if config.if_short == "pad":
        widest = max((len(p) for p in data.positives), default=0)
        message += (f" Padding could not fill them either: the corpus has {len(data.corpus)} documents, at most "
                    f"{len(data.corpus) - widest} of which can be a query's negatives (fewer where texts repeat a "
                    "positive's).")
    flags = [LOOSEN[name] for _, name in stages[:3] if name in LOOSEN]
    return message + (f" Lower --num-negatives, loosen {', '.join(flags) if flags else 'the filters'}, or use "
                      "--if-short keep with a list format; nothing was written.")

