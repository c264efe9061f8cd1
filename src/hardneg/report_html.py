"""The mining report as one self-contained HTML page with plots.

At the end of a run, :func:`save_snapshot` stores what the page needs beside
``report.json`` (score samples per source before and after denoising, and a few
example queries with their texts); :func:`render_html` turns the run directory into
``report.html``: PNG plots drawn with matplotlib (Agg) and embedded as base64 data
URIs, so the page opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.atomic import atomic_path
from hardneg.candidates import EMPTY
from hardneg.errors import HardnegError
from hardneg.report import read_report_file, search_quality_text, signed, stage_rows
from hardneg.store import RunDir, write_json

logger = logging.getLogger(__name__)

SNAPSHOT, EXAMPLES, PAGE = RunDir.SNAPSHOT, RunDir.EXAMPLES, RunDir.PAGE
MAX_SAMPLE = 200_000
N_EXAMPLES = 5


def score_groups(data, candidates, selection) -> dict[str, np.ndarray]:
    """Score samples for the histograms, named ``<source>|<group>``.

    Groups per source: ``positive`` (the query's positives), ``candidates`` (its
    non-positive candidates, before denoising) and ``after_denoise`` (those the denoise
    rule kept), plus ``all|negative`` (the selected negatives). Teacher logits when the
    candidates were rescored (comparable across sources), else the source's own score.
    """
    from hardneg.select import filters

    is_pos = filters.is_positive(candidates.doc_ids, data.positives)
    teacher = candidates.teacher_scores is not None
    flagged = np.zeros(candidates.doc_ids.shape, dtype=bool)
    if selection.denoised is not None:
        # the denoised docs of each kept query, mapped back onto candidate slots
        for i, q in enumerate(selection.query_rows.tolist()):
            gone = set(selection.denoised[i][selection.denoised[i] != EMPTY].tolist())
            if gone:
                flagged[q] = np.isin(candidates.doc_ids[q], list(gone))
    groups: dict[str, np.ndarray] = {}
    for name in candidates.sources:
        present = (candidates.source_ranks[name] >= 0) & ~is_pos
        values = candidates.teacher_scores if teacher else candidates.source_scores[name]
        positive = candidates.teacher_positive_scores if teacher else candidates.positive_scores
        groups[f"{name}|positive"] = positive[np.isfinite(positive)]
        groups[f"{name}|candidates"] = values[present & np.isfinite(values)]
        groups[f"{name}|after_denoise"] = values[present & ~flagged & np.isfinite(values)]
    negatives = selection.teacher_scores if teacher and selection.teacher_scores is not None else selection.scores
    groups["all|negative"] = negatives[(selection.negatives != EMPTY) & np.isfinite(negatives)]
    rng = np.random.default_rng(0)
    for key, v in groups.items():
        if len(v) > MAX_SAMPLE:
            groups[key] = np.sort(rng.choice(v, MAX_SAMPLE, replace=False))
        groups[key] = groups[key].astype(np.float32)
    return groups


def example_rows(data, selection, n: int = N_EXAMPLES) -> list[dict[str, Any]]:
    """A few queries with their positives, dropped false negatives and kept negatives (texts).

    Queries with the most denoised candidates come first; without denoising, the
    first kept queries.
    """
    passages, ids = data.corpus.passages, data.corpus.ids
    m = len(selection.query_rows)
    if selection.denoised is not None:
        counts = (selection.denoised != EMPTY).sum(axis=1)
        order = np.argsort(-counts, kind="stable")[:n]
    else:
        order = np.arange(min(n, m))
    teacher = selection.teacher_scores
    out = []
    for i in order.tolist():
        q = int(selection.query_rows[i])

        def doc(d: int, score: float) -> dict[str, Any]:
            return {"id": ids[d], "text": passages[d][:400], "score": None if np.isnan(score) else round(float(score), 4)}

        neg_scores = teacher[i] if teacher is not None else selection.scores[i]
        pos_scores = selection.teacher_positive_scores[i] if teacher is not None else selection.positive_scores[i]
        row = {
            "query_id": data.queries.ids[q],
            "query": data.queries.texts[q],
            "positives": [doc(int(d), float(s)) for d, s in zip(data.positives[q].tolist(), pos_scores.tolist())],
            "kept": [doc(d, s) for d, s in zip(selection.negatives[i].tolist(), neg_scores.tolist()) if d != EMPTY],
            "dropped": [],
        }
        if selection.denoised is not None:
            row["dropped"] = [
                doc(d, s) for d, s in zip(selection.denoised[i].tolist(), selection.denoised_scores[i].tolist()) if d != EMPTY
            ]
        out.append(row)
    return out


def save_snapshot(run_dir: RunDir, data, candidates, selection, dense=None) -> None:
    """Store the score samples and examples the HTML page needs, atomically; with the ``dense`` retriever
    the run used, also the neighbourhood map of a few telling queries from its cached embeddings
    (:func:`hardneg.neighbourhood.mining_map`)."""
    groups = score_groups(data, candidates, selection)
    if dense is not None:
        from hardneg.neighbourhood import mining_map

        write_json(run_dir.neighbourhood_map, mining_map(dense, run_dir, data, candidates, selection))
    with atomic_path(run_dir.snapshot) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **groups)
    write_json(
        run_dir.examples,
        {
            "score": "teacher logit" if candidates.teacher_scores is not None else "retriever score",
            "denoise_rule": selection.denoise_rule,
            "promoted": bool(selection.promoted),
            "examples": example_rows(data, selection),
        },
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise HardnegError("The HTML report draws its plots with matplotlib: pip install 'hardneg[report]'.") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


HISTOGRAM_STYLES = {
    "positives": {"alpha": 0.6},
    "candidates": {"alpha": 0.35},
    "candidates (before denoising)": {"alpha": 0.35},
    "candidates after denoising": {"histtype": "step", "linewidth": 1.4},
    "kept negatives": {"histtype": "step", "linewidth": 2.0, "color": "#c0504d"},
}


def _plots(groups: dict[str, np.ndarray], score_name: str) -> list[tuple[str, str]]:
    plt = _pyplot()

    sources = sorted({k.split("|", 1)[0] for k in groups if not k.startswith("all|")})
    plots = []
    for name in sources:
        candidates, kept = groups[f"{name}|candidates"], groups[f"{name}|after_denoise"]
        denoised = len(kept) != len(candidates)
        series = {"positives": groups[f"{name}|positive"],
                  "candidates (before denoising)" if denoised else "candidates": candidates}
        if denoised:
            series["candidates after denoising"] = kept
        # the kept negatives' scores are on this source's scale when it is the only one (or all are teacher logits)
        if len(sources) == 1 or score_name == "teacher logit":
            series["kept negatives"] = groups.get("all|negative", np.empty(0))
        finite = [v for v in series.values() if len(v)]
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        if finite:
            allv = np.concatenate(finite)
            lo, hi = float(allv.min()), float(allv.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
            for label, v in series.items():
                if len(v):
                    ax.hist(v, bins=edges, density=True, label=f"{label} (n={len(v)})", **HISTOGRAM_STYLES[label])
        ax.set_xlabel(score_name)
        ax.set_ylabel("density")
        ax.set_title(f"{name}: positives, candidates and kept negatives")
        ax.legend(fontsize=7)
        plots.append((f"{name}: score distributions", _png(fig)))
        plt.close(fig)
    return plots


def _drops_plot(dropped: dict[str, int]) -> str:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 0.35 * max(len(dropped), 2) + 1))
    rows = [(name, n) for name, n, _ in stage_rows(0, dropped)][::-1]  # pipeline order, top to bottom
    labels = [f"{name} (added)" if n < 0 else name for name, n in rows]
    ax.barh(labels, [abs(n) for _, n in rows], color=["#4f81bd" if n < 0 else "#c0504d" for _, n in rows])
    ax.set_xscale("symlog", linthresh=1)  # counts span 1 to 10^5+: on a linear axis the big step hides the rest
    for y, (_, n) in enumerate(rows):
        ax.text(max(abs(n), 1), y, f" {abs(n):,}", va="center", fontsize=7)
    ax.set_xlabel("candidates dropped (log scale); padding adds")
    ax.set_title("what each selection step dropped")
    out = _png(fig)
    plt.close(fig)
    return out


def _doc_cells(docs: list[dict[str, Any]]) -> str:
    if not docs:
        return "<em>none</em>"
    return "".join(
        f"<div class='doc'><b>{html.escape(d['id'])}</b> "
        f"<span class='score'>{'' if d['score'] is None else d['score']}</span><br>{html.escape(d['text'])}</div>"
        for d in docs
    )


def render_html(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the run directory's report as a self-contained HTML page; returns its path.

    Args:
        run_dir: a run directory written by ``hardneg mine`` (or :class:`hardneg.Miner`).
        output: the page to write; default ``RUN_DIR/report.html``.
    """
    run = RunDir(run_dir)
    report, groups, meta = _read_run(run)
    try:
        plots = _plots(groups, meta["score"])
        drops = _drops_plot(report["dropped"]) if report.get("dropped") else None
        parts = [*_head(report), *_selection_section(report, drops), *_teacher_section(report.get("teacher")),
                 f"<h2>Score distributions</h2><p>{html.escape(meta['score'])}s per source.</p>"]
        for title, uri in plots:
            parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='{uri}'>")
        parts += _map_section(run)
        parts += _examples_section(meta["examples"], denoised=bool(meta.get("denoise_rule")))
    except KeyError as exc:
        raise HardnegError(f"{run.path}'s report files lack {exc}: they are damaged or from another version; "
                           f"mine again with --run-dir {run.path} to write them again.") from exc
    parts.append("</body></html>")
    page = Path(output) if output is not None else run.page
    with atomic_path(page) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return page


def _read_run(run: RunDir) -> tuple[dict, dict, dict]:
    """The report, the score samples and the examples of a run directory; each checked."""
    if not run.report.is_file():
        if (run.path / "train_summary.json").is_file():  # the --output folder of `hardneg train`
            mined = run.path / "hardneg-run"
            raise HardnegError(f"{run.path} is a training output: its training report is {run.path / 'report.html'}"
                               + (f", and the mining report of its negatives: hardneg report {mined}."
                                  if (mined / "report.json").is_file() else "."))
        raise HardnegError(f"{run.path} holds no report.json; run `hardneg mine ... --run-dir {run.path}` first.")
    report = read_report_file(run.report, lambda p: json.loads(p.read_text(encoding="utf-8")))
    snap_path, ex_path = run.snapshot, run.examples
    if not snap_path.is_file() or not ex_path.is_file():
        raise HardnegError(
            f"{run.path} has a report.json but no {SNAPSHOT}/{EXAMPLES} (written by hardneg >= 0.1 at the end of "
            "mining); mine again with the same --run-dir (it reuses the saved candidates and takes seconds)."
        )
    groups = read_report_file(snap_path, _read_npz)
    meta = read_report_file(ex_path, lambda p: json.loads(p.read_text(encoding="utf-8")))
    for name, value, kind in (("report.json", report, dict), (EXAMPLES, meta, dict)):
        if not isinstance(value, kind):
            raise HardnegError(f"{run.path / name} is not a hardneg report; mine again with --run-dir {run.path}.")
    return report, groups, meta


def _head(report: dict) -> list[str]:
    esc = html.escape
    return [
        "<!doctype html><html><head><meta charset='utf-8'><title>hardneg report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td.l,th.l{text-align:left}.doc{font-size:12px;margin:4px 0;padding:4px;background:#f6f6f6}"
        ".score{color:#06c}.ex td{vertical-align:top;text-align:left;width:33%}",
        "</style></head><body>",
        f"<h1>hardneg mining report</h1><p>{esc(str(report.get('data')))}<br>method "
        f"<b>{esc(str(report.get('method')))}</b>, "
        f"depth {report.get('depth')}, {report.get('n_queries')} queries, {report.get('n_docs')} documents</p>",
        *([f"<p>index {esc(search_quality_text(report['search_quality']))}</p>"] if report.get("search_quality") else []),
    ]


def _selection_section(report: dict, drops: str | None) -> list[str]:
    candidates, q = report["candidates"], report["queries"]
    parts = [
        "<h2>Selection steps</h2><table><tr><th class='l'>step</th><th>dropped</th><th>left</th></tr>",
        f"<tr><td class='l'>retrieved</td><td></td><td>{candidates}</td></tr>",
    ]
    for stage, n, left in stage_rows(candidates, report["dropped"]):
        parts.append(f"<tr><td class='l'>{html.escape(stage)}</td><td>{signed(n)}</td><td>{left}</td></tr>")
    parts.append("</table>")
    if drops:
        parts.append(f"<p><img alt='drops per step' src='{drops}'></p>")
    parts.append(
        f"<p>queries kept {q['total'] - q['dropped']} of {q['total']}: full {q['full']}, padded {q['padded']}, "
        f"short kept {q['short_kept']}, dropped {q['dropped']}</p>"
    )
    return parts


def _teacher_section(teacher: dict | None) -> list[str]:
    if not teacher:
        return []
    esc = html.escape
    parts = [
        f"<h2>Teacher</h2><p>teacher {esc(teacher['key'])}; relevant means {esc(teacher['relevant_rule'])}.</p>"
        f"<table><tr><th class='l'>source</th><th>est. false negatives in raw top-{teacher['top']}</th>"
        "<th>flagged</th><th>looked at</th><th>queries with any</th></tr>"
    ]
    for name, r in teacher["false_negative_rate"].items():
        parts.append(
            f"<tr><td class='l'>{esc(name)}</td><td>{r['rate']:.3f}</td><td>{r['flagged']}</td>"
            f"<td>{r['candidates']}</td><td>{r['queries_with_any']}</td></tr>"
        )
    parts.append("</table>")
    if teacher.get("denoise_rule"):
        parts.append(
            f"<p>denoised {teacher['denoised']} candidates ({esc(teacher['denoise_rule'])})"
            f"{', promoted to positives' if teacher.get('promoted') else ''}.</p>"
        )
    return parts


def _map_section(run: RunDir) -> list[str]:
    """The neighbourhood map, when the run saved one (dense retrieval)."""
    from hardneg.neighbourhood import map_plot, map_texts

    if not run.neighbourhood_map.is_file():
        return []
    maps = read_report_file(run.neighbourhood_map, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if not isinstance(maps, list) or not maps:
        return []
    plt = _pyplot()
    fig = map_plot(plt, maps)
    uri = _png(fig)
    plt.close(fig)
    return ["<h2>Neighbourhoods of telling queries</h2><p>Marker area: the softmax probability (scale 20) each "
            "document would get as a negative of the query under MNRL, i.e. its share of the push; skipped "
            "candidates are those the filters passed over.</p>", f"<img alt='neighbourhood map' src='{uri}'>",
            map_texts(maps)]


def _examples_section(examples: list[dict], denoised: bool) -> list[str]:
    """Each example's positives, kept hard negatives and, when the run denoised, what it dropped as false
    negatives (without a denoise rule that column would be empty everywhere, so it is left out)."""
    parts = ["<h2>Examples</h2>"]
    for ex in examples:
        columns = [("positives", ex["positives"])]
        if denoised:
            columns.append(("dropped as false negatives", ex["dropped"]))
        columns.append(("kept hard negatives", ex["kept"]))
        head = "".join(f"<th class='l'>{name}</th>" for name, _ in columns)
        cells = "".join(f"<td>{_doc_cells(docs)}</td>" for _, docs in columns)
        parts.append(f"<h3>{html.escape(ex['query_id'])}: {html.escape(ex['query'])}</h3>"
                     f"<table class='ex'><tr>{head}</tr><tr>{cells}</tr></table>")
    return parts
