"""A few telling queries' neighbourhoods in 2-D, sized by the gradient each document would get.

For a query, its positive, its kept hard negatives, the candidates the selection
skipped above them (scored too close to the positive, or dropped as likely false
negatives) and some other examples' positives (what in-batch negatives look like)
are embedded with the model, projected to 2-D by PCA, and weighted by their softmax
probability ``softmax(scale * cos(query, doc))`` over everything shown: under an
InfoNCE loss, the push a negative gets is that probability (:mod:`hardneg.train.gradient`).
A skipped candidate's weight is what it *would* get if it were trained on as a negative.

Telling queries, not the first ones: those where a negative outscores the positive
by most, interleaved with those where the selection skipped the most candidates.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from hardneg.candidates import EMPTY

MAP_FILE = "report_map.json"
KINDS = ("positive", "hard negative", "padding", "skipped candidate", "in-batch")
COLOURS = {"positive": "#2ca02c", "hard negative": "#d62728", "padding": "#9467bd", "skipped candidate": "#ff7f0e",
           "in-batch": "#7f7f7f"}
LABELS = {"in-batch": "in-batch / random document"}


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """``float[n, 2]``: the rows of ``vectors`` on their two main axes of variation (zeros past the rank)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(vectors), 2))
    width = min(2, vt.shape[0])
    out[:, :width] = centred @ vt[:width].T
    return out


def softmax_weights(query: np.ndarray, docs: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over ``scale * cos(query, doc)`` (unit vectors in, probabilities out)."""
    logits = scale * (docs @ query)
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def pick_telling(positive: np.ndarray, best_negative: np.ndarray, skipped: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` indices: by turns, where the best negative beats the positive by most and where the most
    candidates were skipped (only those with any)."""
    by_margin = np.argsort(-(best_negative - positive), kind="stable").tolist()
    by_skipped = [i for i in np.argsort(-skipped, kind="stable").tolist() if skipped[i] > 0]
    picked: list[int] = []
    for pair in zip(by_margin, by_skipped + [None] * (len(by_margin) - len(by_skipped))):
        for i in pair:
            if i is not None and i not in picked and len(picked) < n:
                picked.append(i)
    return picked


def skipped_candidates(candidates, selection, data, cap: int = 5) -> dict[int, list[int]]:
    """Query row -> up to ``cap`` doc rows the selection passed over: candidates ranked above the query's
    deepest kept negative that are neither positives nor kept (the margin and denoise filters' work)."""
    out: dict[int, list[int]] = {}
    for i, q in enumerate(selection.query_rows.tolist()):
        ranked = [d for d in candidates.doc_ids[q].tolist() if d != EMPTY]
        kept = set(d for d in selection.negatives[i].tolist() if d != EMPTY)
        depth = max((ranked.index(d) for d in kept if d in ranked), default=-1)
        if depth < 0:
            depth = min(len(ranked), 10)  # all padding: what the filters left out of the top 10
        positives = set(data.positives[q].tolist())
        gone = [d for d in ranked[:depth] if d not in kept and d not in positives]
        if gone:
            out[int(q)] = gone[:cap]
    return out


def unit_rows(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def model_encoders(model):
    """``(encode_queries, encode_documents)`` of a ``SentenceTransformer`` for :func:`neighbourhoods`."""

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)

    return encode, encode


def neighbourhoods(encoders, pool, *, skipped: dict[int, list[str]] | None = None,
                   padding: dict[int, set[str]] | None = None, n: int = 4, others: int = 8, sample: int = 64,
                   scale: float = 20.0, seed: int = 0) -> list[dict[str, Any]]:
    """The map data of up to ``n`` telling examples of ``pool`` (module docstring), from ``sample`` examples.

    Args:
        encoders: ``(encode_queries, encode_documents)``, texts -> vectors (:func:`model_encoders`).
        pool: the training examples and the negatives in use.
        skipped: query row -> texts the selection skipped (from :func:`skipped_candidates`).
        padding: query row -> its negatives that are random padding.
        others: other examples' positives shown as in-batch documents.
    """
    skipped, padding = skipped or {}, padding or {}
    encode_q, encode_d = (lambda texts, f=f: unit_rows(f(texts)) for f in encoders)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(pool), min(sample, len(pool)), replace=False))
    q = encode_q([pool.anchors[i] for i in rows])
    p = encode_d([pool.positives[i] for i in rows])
    pos_score = (q * p).sum(axis=1)
    best_neg = np.full(len(rows), -np.inf)
    if pool.num_negatives:
        negs = encode_d([t for i in rows for t in pool.negatives[i]]).reshape(len(rows), pool.num_negatives, -1)
        best_neg = np.einsum("nd,nkd->nk", q, negs).max(axis=1)
    n_skipped = np.array([len(skipped.get(int(pool.query_rows[i]), ())) for i in rows])
    maps = []
    for j in pick_telling(pos_score, best_neg, n_skipped, n):
        i = int(rows[j])
        qrow = int(pool.query_rows[i])
        outside = [int(x) for x in rng.permutation(len(pool))[: others * 3] if pool.groups[x] != pool.groups[i]]
        points = [("positive", pool.positives[i])]
        points += [("padding" if t in padding.get(qrow, ()) else "hard negative", t) for t in pool.negatives[i]]
        taken = {t for _, t in points}  # after a refresh, a candidate skipped at mining time may be a negative now
        points += [("skipped candidate", t) for t in dict.fromkeys(skipped.get(qrow, [])) if t not in taken]
        taken.update(t for _, t in points)
        points += [("in-batch", t) for t in dict.fromkeys(pool.positives[x] for x in outside) if t not in taken][:others]
        vectors = np.concatenate([encode_q([pool.anchors[i]]), encode_d([t for _, t in points])])
        maps.append(one_map(pool.anchors[i], points, vectors, scale, float(best_neg[j] - pos_score[j]),
                            int(n_skipped[j])))
    return maps


def one_map(query: str, points: list[tuple[str, str]], vectors: np.ndarray, scale: float, margin: float,
            n_skipped: int) -> dict[str, Any]:
    """One query's map: ``points`` are ``(kind, text)``, ``vectors`` unit rows of the query then each point."""
    weights = softmax_weights(vectors[0], vectors[1:], scale)
    xy = pca_2d(vectors)
    scores = vectors[1:] @ vectors[0]
    reason = (f"a hard negative outscores the positive by {margin:.3f}" if margin > 0
              else f"best hard negative {-margin:.3f} below the positive")
    if n_skipped:
        reason += f"; {n_skipped} candidates skipped by the filters"
    return {
        "query": query, "reason": reason, "x": float(xy[0, 0]), "y": float(xy[0, 1]),
        "points": [{"kind": kind, "text": text, "x": float(a), "y": float(b), "weight": float(w), "score": float(s)}
                   for (kind, text), (a, b), w, s in zip(points, xy[1:], weights, scores)],
    }



def mining_map(dense, run_dir, data, candidates, selection, *, n: int = 3, sample: int = 32, others: int = 8,
               scale: float = 20.0, seed: int = 0) -> list[dict[str, Any]]:
    """The map of a mining run from the embeddings ``dense`` cached in ``run_dir`` (nothing is encoded; [] when
    they are not there). In-batch stand-ins are random corpus documents."""
    cached = dense.cached_embeddings(data, run_dir)
    kept = [i for i in range(len(selection.query_rows)) if len(data.positives[int(selection.query_rows[i])])]
    if cached is None or not kept:
        return []
    queries, docs = cached
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(kept, min(sample, len(kept)), replace=False))
    rows = selection.query_rows[picks]
    negatives = [[d for d in selection.negatives[i].tolist() if d != EMPTY] for i in picks]
    skipped = skipped_candidates(candidates, selection, data)
    q = unit_rows(queries[rows])
    pos_score = np.einsum("nd,nd->n", q, unit_rows(docs[[int(data.positives[r][0]) for r in rows]]))
    best_neg = np.array([(unit_rows(docs[n_]) @ q[j]).max() if n_ else -np.inf for j, n_ in enumerate(negatives)])
    padding = padding_texts(selection, data.corpus.passages)
    passages = data.corpus.passages
    maps = []
    for j in pick_telling(pos_score, best_neg, np.array([len(skipped.get(int(r), ())) for r in rows]), n):
        r = int(rows[j])
        outside = [int(d) for d in rng.choice(len(passages), min(others * 2, len(passages)), replace=False)
                   if d not in set(data.positives[r].tolist()) and d not in negatives[j]][:others]
        points = [("positive", int(data.positives[r][0]))]
        points += [("padding" if passages[d] in padding.get(r, ()) else "hard negative", d) for d in negatives[j]]
        points += [("skipped candidate", d) for d in skipped.get(r, [])]
        points += [("in-batch", d) for d in outside]
        vectors = np.concatenate([q[j : j + 1], unit_rows(docs[[d for _, d in points]])])
        maps.append(one_map(data.queries.texts[r], [(kind, passages[d]) for kind, d in points], vectors, scale,
                            float(best_neg[j] - pos_score[j]), len(skipped.get(r, ()))))
    return maps


def padding_texts(selection, passages) -> dict[int, set[str]]:
    """Query row -> texts of the negatives that padding added (the selection's last source bit)."""
    bit = np.uint8(1 << (len(selection.source_names) - 1))
    out: dict[int, set[str]] = {}
    for i, q in enumerate(selection.query_rows.tolist()):
        slots = np.flatnonzero((selection.sources[i] & bit) != 0)
        if len(slots):
            out[int(q)] = {passages[int(d)] for d in selection.negatives[i, slots].tolist() if d >= 0}
    return out


def map_plot(plt, maps):
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.2), squeeze=False)
    shown = set()
    for ax, m in zip(axes[0], maps):
        for kind in KINDS:
            pts = [p for p in m["points"] if p["kind"] == kind]
            if pts:
                shown.add(kind)
                ax.scatter([p["x"] for p in pts], [p["y"] for p in pts], s=[20 + 600 * p["weight"] for p in pts],
                           c=COLOURS[kind], alpha=0.7, edgecolors="black", linewidths=0.4)
        ax.scatter([m["x"]], [m["y"]], marker="*", s=220, c="#1f77b4", edgecolors="black")
        ax.set_title(short(m["query"], 40), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="*", linestyle="", color="#1f77b4", markersize=10, label="query")]
    handles += [Line2D([], [], marker="o", linestyle="", color=COLOURS[k], markersize=7, label=LABELS.get(k, k))
                for k in KINDS if k in shown]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("query neighbourhoods (PCA of embeddings); marker area = gradient weight (softmax probability)",
                 fontsize=9)
    return fig


def short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


LISTED = 6  # documents listed under each map: all of its positives and hard negatives, then the most weighted others


def listed_points(points: list[dict]) -> list[dict]:
    """What a map's list shows: every positive and kept hard negative (the ones its headline talks about), then
    the most weighted of the rest up to :data:`LISTED`; each group by weight."""
    by_weight = sorted(points, key=lambda p: -p["weight"])
    always = [p for p in by_weight if p["kind"] in ("positive", "hard negative")]
    rest = [p for p in by_weight if p["kind"] not in ("positive", "hard negative")]
    return always + rest[: max(0, LISTED - len(always))]


def map_texts(maps) -> str:
    """The maps' documents as HTML lists (:func:`listed_points`)."""
    parts = []
    for m in maps:
        items = listed_points(m["points"])
        lis = "".join(f"<li><b>{html.escape(p['kind'])}</b> weight {p['weight']:.3f}, cos {p['score']:.3f}: "
                      f"{html.escape(short(p['text'], 160))}</li>" for p in items)
        parts.append(f"<h3>{html.escape(m['query'])}</h3><p class='why'>{html.escape(m['reason'])}</p><ul>{lis}</ul>")
    return "".join(parts)
