"""The mining report: what each filter dropped and where the scores lie."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.candidates import EMPTY
from hardneg.errors import HardnegError
from hardneg.store import write_json


def score_stats(values: np.ndarray) -> dict[str, float | int | None]:
    """Count, mean and quantiles of the finite values."""
    v = values[np.isfinite(values)]
    if not len(v):
        return {"count": 0, "mean": None, "p05": None, "p25": None, "p50": None, "p75": None, "p95": None}
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "count": int(len(v)),
        "mean": round(float(v.mean()), 6),
        **{k: round(float(x), 6) for k, x in zip(("p05", "p25", "p50", "p75", "p95"), q)},
    }


def histogram(groups: dict[str, np.ndarray], bins: int = 30) -> dict[str, Any]:
    """Histograms of several score groups on shared bin edges."""
    finite = [g[np.isfinite(g)] for g in groups.values()]
    allv = np.concatenate(finite) if finite else np.empty(0)
    if not len(allv):
        return {"edges": [], **{k: [] for k in groups}}
    lo, hi = float(allv.min()), float(allv.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    out: dict[str, Any] = {"edges": [round(float(e), 6) for e in edges]}
    for name, v in zip(groups, finite):
        out[name] = np.histogram(v, bins=edges)[0].tolist()
    return out


def read_report_file(path: str | Path, load):
    """``load(path)`` for a run directory's report files; damage becomes a one-line :class:`HardnegError`."""
    import zipfile

    path = Path(path)
    try:
        return load(path)
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise HardnegError(
            f"{path} is damaged or not a hardneg report ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). "
            f"Run the `hardneg mine` command again with --run-dir {path.parent} (it reuses the saved candidates "
            "and takes seconds) to write it again."
        ) from exc


def stage_rows(candidates: int, dropped: dict[str, int]) -> list[tuple[str, int, int]]:
    """``(stage, dropped, left)`` per selection stage, in pipeline order, with the running count left.

    ``dropped`` may come back from JSON with its keys sorted; the pipeline order
    (:data:`hardneg.select.stages.STAGES`) is restored here. A negative count (padding)
    adds negatives.
    """
    from hardneg.select.stages import STAGES

    rank = {name: i for i, name in enumerate(STAGES)}
    rows, left = [], candidates
    for stage in sorted(dropped, key=lambda name: rank.get(name, len(STAGES))):
        left -= dropped[stage]
        rows.append((stage, dropped[stage], left))
    return rows


def signed(n: int) -> str:
    """A stage's count as shown: ``12`` dropped, ``+12`` added."""
    return f"+{-n}" if n < 0 else str(n)


@dataclass
class MiningReport:
    """Counts and score distributions of one mining run (JSON-ready)."""

    data: str
    method: str
    n_queries: int
    n_docs: int
    depth: int
    reused_candidates: bool
    selection: dict[str, Any]
    candidates: int
    dropped: dict[str, int]
    queries: dict[str, int]
    scores: dict[str, dict[str, Any]]
    histogram: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    output: str | None = None
    teacher: dict[str, Any] | None = None
    search_quality: dict[str, Any] | None = None

    @classmethod
    def build(cls, data, candidates, selection, config, *, reused: bool, seconds: dict[str, float]) -> MiningReport:
        """Summarise ``selection`` (made from ``candidates`` with ``config``)."""
        positive = candidates.positive_scores.reshape(-1)
        kept = selection.scores[selection.negatives != EMPTY]
        retrieved = candidates.scores[candidates.doc_ids != EMPTY]
        teacher = teacher_summary(data, candidates, selection, config) if candidates.teacher_scores is not None else None
        return cls(
            data=data.source,
            method=candidates.method,
            n_queries=len(data.queries),
            n_docs=len(data.corpus),
            depth=candidates.depth,
            reused_candidates=reused,
            selection=config.to_dict(),
            candidates=selection.n_candidates,
            dropped=dict(selection.dropped),
            queries=dict(selection.queries),
            scores={
                "positive": score_stats(positive),
                "retrieved": score_stats(retrieved),
                "negative": score_stats(kept),
            },
            histogram=histogram({"positive": positive, "negative": kept}),
            seconds={k: round(v, 3) for k, v in seconds.items()},
            teacher=teacher,
            search_quality=dict(candidates.search_quality) or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> MiningReport:
        """Read a saved report; a damaged one raises :class:`HardnegError` saying how to rewrite it."""
        return read_report_file(path, lambda p: cls(**json.loads(p.read_text(encoding="utf-8"))))

    def format_table(self) -> str:
        """A plain-text summary for the terminal."""
        lines = [
            f"data      {self.data}",
            f"method    {self.method} (depth {self.depth}, "
            f"{'reused saved candidates' if self.reused_candidates else 'fresh candidates'})",
            f"queries   {self.n_queries}   documents {self.n_docs}",
            "",
            f"{'stage':<18}{'dropped':>10}{'left':>10}",
            f"{'retrieved':<18}{'':>10}{self.candidates:>10}",
        ]
        for stage, n, left in stage_rows(self.candidates, self.dropped):
            lines.append(f"{stage:<18}{signed(n):>10}{left:>10}")
        q = self.queries
        lines += [
            "",
            f"queries kept {q['total'] - q['dropped']} of {q['total']}: full {q['full']}, padded {q['padded']}, "
            f"short kept {q['short_kept']}, dropped {q['dropped']}",
            "",
            f"{'scores':<12}{'count':>8}{'mean':>10}{'p05':>10}{'p50':>10}{'p95':>10}",
        ]
        for name, s in self.scores.items():
            fmt = lambda x: f"{x:>10.4f}" if x is not None else f"{'-':>10}"  # noqa: E731
            lines.append(f"{name:<12}{s['count']:>8}{fmt(s['mean'])}{fmt(s['p05'])}{fmt(s['p50'])}{fmt(s['p95'])}")
        if self.teacher:
            t = self.teacher
            lines += ["", f"teacher   {t['key']}  (relevant: {t['relevant_rule']})",
                      f"{'est. false negatives in raw top-' + str(t['top']):<34}{'rate':>8}{'flagged':>9}{'of':>7}"]
            for name, r in t["false_negative_rate"].items():
                lines.append(f"  {name:<32}{r['rate']:>8.3f}{r['flagged']:>9}{r['candidates']:>7}")
            if t.get("denoised"):
                lines.append(f"denoised  {t['denoised']} candidates ({t['denoise_rule']})"
                             + (", promoted to positives" if t.get("promoted") else ""))
        if self.search_quality:
            lines += ["", "index     " + search_quality_text(self.search_quality)]
        if self.seconds:
            lines += ["", "time      " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())]
        if self.output:
            lines.append(f"output    {self.output}")
        return "\n".join(lines)


def search_quality_text(quality: dict[str, Any]) -> str:
    """The report's line on an approximate index: its kind, the parameters it ran with and the recall
    they bought, e.g. on the bundled sample ``ivf-pq (nlist 51, nprobe 32, pq m 48, refine factor 2,
    train sample 2000): recall@100 against exact search 0.9557 (1000 sampled queries)``. Parameters
    by name, so a report read back from saved candidates reads the same; reports written before the
    parameters were recorded have none to show."""
    parameters = quality.get("parameters") or {}
    shown = " (" + ", ".join(f"{name.replace('_', ' ')} {parameters[name]}" for name in sorted(parameters)) + ")"
    return (f"{quality['index']}{shown if parameters else ''}: recall@{quality['depth']} against exact search "
            f"{quality['recall_vs_exact']:.4f} ({quality['queries']} sampled queries)")


FALSE_NEGATIVE_TOP = 10


def teacher_summary(data, candidates, selection, config) -> dict[str, Any]:
    """The teacher part of the report: score stats and each source's estimated false-negative rate.

    "Relevant" is the configured denoise rule, or ``sigmoid(teacher logit) > 0.5``
    without one. The rate is measured on each retriever's raw top-10 non-positive
    candidates (before any filter).

    References:
        Qu et al., "RocketQA", NAACL 2021 (about 70 % of top-retrieved MS MARCO
        "negatives" are unlabelled positives).
    """
    from hardneg.select import denoise, filters

    rule, threshold = (config.denoise, config.denoise_threshold) if config.denoise else ("probability", 0.5)
    ref = filters.reference_positive_score(candidates.teacher_positive_scores)
    relevant = denoise.teacher_says_relevant(candidates.teacher_scores, ref, rule, threshold)
    is_pos = filters.is_positive(candidates.doc_ids, data.positives)
    rates = denoise.false_negative_rates(dict(candidates.source_ranks), is_pos, relevant, FALSE_NEGATIVE_TOP)
    filled = candidates.doc_ids != EMPTY
    kept = selection.teacher_scores[selection.negatives != EMPTY] if selection.teacher_scores is not None else np.empty(0)
    return {
        "key": candidates.teacher,
        "relevant_rule": denoise.describe_rule(rule, threshold),
        "top": FALSE_NEGATIVE_TOP,
        "false_negative_rate": rates,
        "scores": {
            "positive": score_stats(candidates.teacher_positive_scores.reshape(-1)),
            "retrieved_non_positive": score_stats(candidates.teacher_scores[filled & ~is_pos]),
            "negative": score_stats(kept),
        },
        "denoised": selection.dropped.get("denoise", 0),
        "denoise_rule": selection.denoise_rule,
        "promoted": bool(selection.promoted),
    }
