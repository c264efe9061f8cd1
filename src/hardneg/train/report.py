"""The training report: ``OUTPUT/report.html``, one self-contained page with PNG plots.

Read from what a ``hardneg train`` run leaves in its output folder:
``train_summary.json`` (loss log, dev metrics at start, refreshes and end, refresh
staleness), ``gradient_shares.jsonl`` (:mod:`hardneg.train.gradient`) and
``report_map.json`` (:mod:`hardneg.neighbourhood`). Plots are drawn with
matplotlib (Agg) and embedded as base64 data URIs, like the mining report
(:mod:`hardneg.report_html`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from hardneg.atomic import atomic_path
from hardneg.errors import HardnegError
from hardneg.neighbourhood import MAP_FILE, map_plot, map_texts
from hardneg.report_html import _png, _pyplot
from hardneg.train.gradient import LOG_FILE

PAGE = "report.html"
SUMMARY = "train_summary.json"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def share_table(entries: list[dict[str, Any]], window: int = 3) -> list[tuple[str, dict[str, float]]]:
    """Start and end of training as ``(label, {class: share, ..., "p(positive)": p})``: the mean of the first
    and of the last ``window`` measured steps (one batch each, so single steps are noisy)."""
    if not entries:
        return []
    window = max(1, min(window, len(entries) // 2 or 1))
    parts = [("start", entries[:window])]
    if len(entries) > 1:
        parts.append(("end", entries[-window:]))
    rows = []
    for label, chunk in parts:
        steps = f"step {chunk[0]['step']}" if len(chunk) == 1 else f"steps {chunk[0]['step']}-{chunk[-1]['step']}"
        mean = {name: sum(e["shares"].get(name, 0.0) for e in chunk) / len(chunk) for name in chunk[0]["shares"]}
        mean["p(positive)"] = sum(e["positive_prob"] for e in chunk) / len(chunk)
        rows.append((f"{label} ({steps})", mean))
    return rows


def share_line(entries: list[dict[str, Any]]) -> str | None:
    """One line for the terminal: hard negatives' and in-batch documents' shares at start and end."""
    rows = share_table(entries)
    if not rows:
        return None

    def hard(v):
        return sum(x for k, x in v.items() if k.startswith("hard_"))

    cells = [f"{label}: hard {hard(v):.0%}, in-batch {v['in_batch']:.0%}, padding {v['padding']:.0%}"
             for label, v in rows]
    return "gradient  " + "; ".join(cells)


def _loss_plot(plt, loss_log):
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.plot([e["step"] for e in loss_log], [e["loss"] for e in loss_log], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss")
    return fig


def _dev_plot(plt, history):
    points = [e for e in history if "dev_ndcg@10" in e]
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.plot([e["step"] for e in points], [e["dev_ndcg@10"] for e in points], marker="o")
    for e in points:
        ax.annotate(e["kind"], (e["step"], e["dev_ndcg@10"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("step")
    ax.set_ylabel("dev nDCG@10")
    ax.set_title("dev metrics at start, refreshes and end")
    return fig


def _refresh_plot(plt, refreshes):
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    steps = [e["step"] for e in refreshes]
    ax.plot(steps, [e["staleness"] for e in refreshes], marker="o", label="staleness (1 - overlap@k)")
    ax.plot(steps, [e["negatives_changed"] for e in refreshes], marker="s", label="negatives changed")
    ax.set_ylim(0, 1)
    ax.set_xlabel("refresh step")
    ax.legend(fontsize=7)
    ax.set_title("per refresh: how stale the negatives were, how many changed")
    return fig


def _shares_plot(plt, entries):
    names = list(entries[0]["shares"])
    steps = [e["step"] for e in entries]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.stackplot(steps, [[e["shares"].get(n, 0.0) for e in entries] for n in names], labels=names, alpha=0.8)
    ax.plot(steps, [e["positive_prob"] for e in entries], color="black", linewidth=1.5, label="p(positive)")
    for e in entries:
        if e.get("after_refresh"):
            ax.axvline(e["step"], color="black", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share of the negatives' gradient")
    ax.set_title("who carries the gradient (dotted: first step after a refresh)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _wanted(summary, shares, maps) -> list[tuple[str, Any, Any, str]]:
    """Each figure of the page: its title, how to draw it, its data (nothing to draw when empty), and what the
    page says instead when it is empty."""
    history = summary.get("history") or []
    every = (summary.get("config") or {}).get("logging_steps")
    no_loss = (f"Training loss: it is logged every {every} steps and this run took {summary.get('steps')}."
               if every else "Training loss: no loss was logged.")
    return [("Training loss", _loss_plot, summary.get("loss_log"), no_loss),
            ("Dev metrics", _dev_plot, [e for e in history if "dev_ndcg@10" in e],
             "Dev metrics: no dev split was evaluated (--dev-split none, or the data has no dev split)."),
            ("Refreshes", _refresh_plot, [e for e in history if e.get("kind") == "refresh"],
             "Refreshes: this run had no ANCE refresh (--refresh-every)."),
            ("Gradient shares over training", _shares_plot, shares,
             "Gradient shares: none were logged (--log-gradient-every)."),
            ("Neighbourhoods of telling queries", map_plot, maps,
             "Neighbourhoods of telling queries: no dense embeddings to place them with.")]


def _figures(summary, shares, maps) -> list[tuple[str, str]]:
    plt = _pyplot()
    out = []
    for title, draw, data, _ in _wanted(summary, shares, maps):
        if data:
            fig = draw(plt, data)
            out.append((title, _png(fig)))
            plt.close(fig)
    return out


def missing_figures(summary, shares, maps) -> list[str]:
    """Why each figure that :func:`_figures` leaves out has nothing to draw (one line each)."""
    return [why for _, _, data, why in _wanted(summary, shares, maps) if not data]


def _not_drawn(why: list[str]) -> str:
    if not why:
        return ""
    return "<h2>Not drawn</h2><ul class='why'>" + "".join(f"<li>{html.escape(w)}</li>" for w in why) + "</ul>"


def _table(rows: list[tuple[str, dict[str, float]]]) -> str:
    if not rows:
        return "<p><em>No gradient shares were logged (loss other than mnrl/cached-mnrl, or logging off).</em></p>"
    names = list(rows[0][1])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{v.get(n, 0):.3f}</td>" for n in names)
                   + "</tr>" for label, v in rows)
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _refresh_table(history: list[dict]) -> str:
    """One row per refresh: its scope and pool, queries mined, documents encoded, seconds, staleness and negatives
    changed."""
    rows = [e for e in history if e.get("kind") == "refresh"]
    if not rows:
        return ""
    cells = ("step", "scope", "pool", "queries_mined", "documents_encoded", "seconds_mine", "staleness",
             "negatives_changed")
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cells)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(e.get(c) if e.get(c) is not None else ''))}</td>"
                                    for c in cells) + "</tr>" for e in rows)
    return f"<h2>Refresh log</h2><table><tr>{head}</tr>{body}</table>"


def write_training_report(output_dir: str | Path, model, pool, *, skipped: dict[int, list[str]] | None = None,
                          padding: dict[int, set[str]] | None = None, scale: float = 20.0) -> Path:
    """Draw the telling queries' neighbourhoods with the trained ``model`` into ``report_map.json``, then
    render ``report.html`` (:func:`render_training_report`)."""
    from hardneg.neighbourhood import model_encoders, neighbourhoods
    from hardneg.store import write_json

    maps = neighbourhoods(model_encoders(model), pool, skipped=skipped, padding=padding, scale=scale)
    write_json(Path(output_dir) / MAP_FILE, maps)
    return render_training_report(output_dir)


def render_training_report(output_dir: str | Path) -> Path:
    """Write ``output_dir/report.html`` from a ``hardneg train`` output folder; returns its path."""
    output_dir = Path(output_dir)
    summary_path = output_dir / SUMMARY
    if not summary_path.is_file():
        raise HardnegError(f"{output_dir} has no {SUMMARY}: pass the --output folder of a finished hardneg train run.")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    shares = read_jsonl(output_dir / LOG_FILE)
    map_path = output_dir / MAP_FILE
    maps = json.loads(map_path.read_text(encoding="utf-8")) if map_path.is_file() else []
    figures = "".join(f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>"
                      for t, src in _figures(summary, shares, maps))
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>hardneg training report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
img{{max-width:100%}}.why{{color:#555}}</style></head><body>
<h1>hardneg training report</h1>
<p>{summary.get('steps')} steps on {summary.get('examples')} examples with {summary.get('num_negatives')} hard negatives
each, {summary.get('seconds')} s.</p>
<h2>Share of the gradient on negative scores, start vs end (mean of 3 measured batches each)</h2>
<p>Under the softmax loss each negative is pushed down with its softmax probability; the positive is pulled up
with 1 - p(positive), the sum of those pushes. A share is a class's summed probability over the batch divided by
that sum: hard_r are each query's own mined negatives by rank, padding its random fill-ins, in_batch every other
example's texts.</p>
{_table(share_table(shares))}
{figures}
{_not_drawn(missing_figures(summary, shares, maps))}
{_refresh_table(summary.get("history") or [])}
{"<h2>The telling queries</h2>" + map_texts(maps) if maps else ""}
</body></html>"""
    path = output_dir / PAGE
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
