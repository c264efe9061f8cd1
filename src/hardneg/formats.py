"""Every training-file format, its writer and its reader side by side, in one table.

A format's *writer* turns one kept query of a selection into rows; its *reader* (for
the formats ``hardneg train`` accepts) turns one row back into training examples
``(anchor, positive, negatives, scores)``. Adding a format is two functions and one
row in :data:`TABLE`. File input/output lives in :mod:`hardneg.export` (writing) and
:mod:`hardneg.train.files` (reading).

Imported by ``hardneg/__init__`` through :mod:`hardneg.export`, so it imports only the
standard library at the top.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hardneg.errors import HardnegError

Example = tuple[str, str, list[str], "list[float | None] | None"]


@dataclass(frozen=True)
class QueryRows:
    """One kept query of a selection, as the writers see it.

    Attributes:
        query: the query text; ``query_id`` its id.
        pos, negs: corpus rows of its positives (labelled, then promoted) and negatives.
        pos_scores, neg_scores: the scores written as labels (teacher logits when the
            selection carries them, else the selection's scores).
        selection_pos, selection_neg: the selection's own scores.
        teacher_pos, teacher_neg: teacher logits, or None.
        denoised: ``(corpus row, teacher logit)`` of the candidates the denoise rule
            dropped, or None without denoising.
        sources: per negative, which retrievers returned it (``bm25+dense``); only for ``ids``.
        width: negatives per query the selection asked for.
    """

    query: str
    query_id: str
    pos: list[int]
    negs: list[int]
    pos_scores: list[float | None]
    neg_scores: list[float | None]
    selection_pos: list[float | None]
    selection_neg: list[float | None]
    teacher_pos: list[float | None] | None
    teacher_neg: list[float | None] | None
    denoised: list[tuple[int, float | None]] | None
    sources: list[str]
    width: int


@dataclass(frozen=True)
class Format:
    """One format: ``write(rows, passages, doc_ids, with_scores)`` and, if trainable, ``read(row, data)``.

    Attributes:
        columns: the columns that identify a file of this format when it is read back.
    """

    write: Callable[[QueryRows, tuple[str, ...], tuple[str, ...], bool], list[dict[str, Any]]]
    read: Callable[[dict[str, Any], Any], list[Example]] | None = None
    columns: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- writers


def _write_triplet(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    rows = []
    for p, ps in zip(r.pos, r.pos_scores):
        for n, ns in zip(r.negs, r.neg_scores):
            row = {"anchor": r.query, "positive": passages[p], "negative": passages[n]}
            if with_scores:
                row["scores"] = [ps, ns]
            rows.append(row)
    return rows


def _write_n_tuple(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    if len(r.negs) != r.width:
        raise HardnegError(
            f"Query {r.query_id!r} has {len(r.negs)} negatives but n-tuple needs "
            f"{r.width}; use --if-short drop or pad with this format."
        )
    rows = []
    for p, ps in zip(r.pos, r.pos_scores):
        row = {"anchor": r.query, "positive": passages[p]}
        row.update({f"negative_{j + 1}": passages[n] for j, n in enumerate(r.negs)})
        if with_scores:
            row["scores"] = [ps, *r.neg_scores]
        rows.append(row)
    return rows


def _write_labeled_pair(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    labelled = [*((p, 1, ps) for p, ps in zip(r.pos, r.pos_scores)),
                *((n, 0, ns) for n, ns in zip(r.negs, r.neg_scores))]
    rows = []
    for d, label, s in labelled:
        row = {"anchor": r.query, "document": passages[d]}
        row["score" if with_scores else "label"] = s if with_scores else label
        rows.append(row)
    return rows


def _write_labeled_list(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    row: dict[str, Any] = {"anchor": r.query, "documents": [passages[d] for d in r.pos + r.negs]}
    if with_scores:
        row["scores"] = r.pos_scores + r.neg_scores
    else:
        row["labels"] = [1] * len(r.pos) + [0] * len(r.negs)
    return [row]


def _write_flag(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    return [{
        "query": r.query,
        "pos": [passages[p] for p in r.pos],
        "neg": [passages[n] for n in r.negs],
        "pos_scores": r.pos_scores,
        "neg_scores": r.neg_scores,
    }]


def _write_ids(r: QueryRows, passages, doc_ids, with_scores: bool) -> list[dict[str, Any]]:
    row: dict[str, Any] = {
        "query_id": r.query_id,
        "positive_ids": [doc_ids[p] for p in r.pos],
        "negative_ids": [doc_ids[n] for n in r.negs],
        "positive_scores": r.selection_pos,
        "negative_scores": r.selection_neg,
        "negative_sources": r.sources[: len(r.negs)],
    }
    if r.teacher_pos is not None:
        row["teacher_positive_scores"] = r.teacher_pos
        row["teacher_negative_scores"] = r.teacher_neg
    if r.denoised is not None:
        row["denoised_ids"] = [doc_ids[d] for d, _ in r.denoised]
        row["denoised_scores"] = [s for _, s in r.denoised]
    return [row]


# --------------------------------------------------------------------------- readers


def _read_triplet(row: dict[str, Any], data) -> list[Example]:
    return [(row["anchor"], row["positive"], [row["negative"]], row.get("scores"))]


def _read_n_tuple(row: dict[str, Any], data) -> list[Example]:
    negs = [row[f"negative_{j}"] for j in range(1, 1 + sum(1 for c in row if c.startswith("negative_")))]
    return [(row["anchor"], row["positive"], negs, row.get("scores"))]


def _read_flag(row: dict[str, Any], data) -> list[Example]:
    out: list[Example] = []
    for p, ps in zip(row["pos"], row.get("pos_scores") or [None] * len(row["pos"])):
        out.append((row["query"], p, list(row["neg"]), [ps, *(row.get("neg_scores") or [None] * len(row["neg"]))]))
    return out


def _read_ids(row: dict[str, Any], data) -> list[Example]:
    if data is None:
        raise HardnegError("The ids format holds only ids: pass the data it was mined from (DATA argument).")
    q = _query_row(data)[row["query_id"]]
    passages, doc = data.corpus.passages, data.corpus.row_of
    negs = [passages[doc[d]] for d in row["negative_ids"]]
    scores = row.get("negative_scores")
    return [
        (data.queries.texts[q], passages[doc[p]], negs, [ps, *scores] if scores is not None else None)
        for p, ps in zip(row["positive_ids"], row.get("positive_scores") or [None] * len(row["positive_ids"]))
    ]


def _query_row(data) -> dict[str, int]:
    cache = getattr(data, "_hardneg_query_row", None)
    if cache is None:
        cache = {qid: i for i, qid in enumerate(data.queries.ids)}
        object.__setattr__(data, "_hardneg_query_row", cache)
    return cache


# --------------------------------------------------------------------------- the table

TABLE: dict[str, Format] = {
    "triplet": Format(_write_triplet, _read_triplet, frozenset({"anchor", "positive", "negative"})),
    "n-tuple": Format(_write_n_tuple, _read_n_tuple, frozenset({"anchor", "positive", "negative_1"})),
    "labeled-pair": Format(_write_labeled_pair),
    "labeled-list": Format(_write_labeled_list),
    "flag": Format(_write_flag, _read_flag, frozenset({"query", "pos", "neg"})),
    "ids": Format(_write_ids, _read_ids, frozenset({"query_id", "positive_ids", "negative_ids"})),
}

FORMATS: tuple[str, ...] = tuple(TABLE)
TRAINABLE_FORMATS: tuple[str, ...] = tuple(name for name, fmt in TABLE.items() if fmt.read is not None)


def check_name(fmt: str) -> Format:
    """The format called ``fmt``; an unknown name raises listing the known ones."""
    if fmt not in TABLE:
        raise HardnegError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    return TABLE[fmt]


def detect_format(columns: set[str]) -> str:
    """Which trainable format a set of columns is."""
    for name in TRAINABLE_FORMATS:
        if TABLE[name].columns <= columns:
            return name
    raise HardnegError(
        f"Cannot train from a file with columns {sorted(columns)}: expected a hardneg export in one of the formats "
        f"{', '.join(TRAINABLE_FORMATS)} (write one with `hardneg mine --format n-tuple`)."
    )


def examples_of_row(fmt: str, row: dict[str, Any], data) -> list[Example]:
    """Training examples ``(anchor, positive, negatives, scores)`` of one row of a ``fmt`` file."""
    reader = TABLE[fmt].read
    if reader is None:
        raise HardnegError(f"Cannot train from the {fmt} format; use one of {', '.join(TRAINABLE_FORMATS)}.")
    return reader(row, data)


# --------------------------------------------------------------------------- building rows


def _score(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def build_rows(data, selection, fmt: str, *, with_scores: bool = False) -> list[dict[str, Any]]:
    """The rows of a training file.

    Formats:
        ``triplet``: ``anchor, positive, negative`` — one row per positive x negative.
        ``n-tuple``: ``anchor, positive, negative_1 .. negative_n`` — one row per positive.
        ``labeled-pair``: ``anchor, document, label`` (1 positive, 0 negative).
        ``labeled-list``: ``anchor, documents, labels``.
        ``flag``: FlagEmbedding ``query, pos, neg, pos_scores, neg_scores``.
        ``ids``: ``query_id, positive_ids, negative_ids, positive_scores, negative_scores,
        negative_sources`` — ids only, for Tevatron-style pipelines and audits.

    Teacher scores: when the selection carries cross-encoder teacher logits, the
    ``scores`` column (``with_scores``) and FlagEmbedding's ``pos_scores``/``neg_scores``
    hold the teacher's logits (distillation targets); ``ids`` keeps the selection scores
    and adds ``teacher_positive_scores``/``teacher_negative_scores``. With denoising,
    ``ids`` adds ``denoised_ids`` and ``denoised_scores`` (their teacher logits); with
    ``promote_denoised`` the denoised documents are listed as extra positives in every
    format.

    Args:
        with_scores: add a ``scores`` column (triplet and n-tuple: ``[positive, negatives...]``,
            for MarginMSE-style distillation); labeled formats then carry scores, not labels.
    """
    writer = check_name(fmt).write
    passages, doc_ids = data.corpus.passages, data.corpus.ids
    rows: list[dict[str, Any]] = []
    for i in range(len(selection.query_rows)):
        rows.extend(writer(query_rows(data, selection, i, with_sources=fmt == "ids"), passages, doc_ids, with_scores))
    return rows


def query_rows(data, selection, i: int, *, with_sources: bool = False) -> QueryRows:
    """What the writers need of kept query ``i`` of ``selection`` (``with_sources``: the negatives' retrievers)."""
    from hardneg.candidates import EMPTY

    q = int(selection.query_rows[i])
    filled = [d != EMPTY for d in selection.negatives[i].tolist()]
    negs = [d for d in selection.negatives[i].tolist() if d != EMPTY]
    selection_neg = [_score(s) for s, f in zip(selection.scores[i].tolist(), filled) if f]
    labelled = data.positives[q].tolist()
    promoted = selection.promoted_positives(i) if hasattr(selection, "promoted_positives") else []
    selection_pos = [_score(s) for s in selection.positive_scores[i, : len(labelled)].tolist()]
    if promoted:
        selection_pos += [_score(s) for s in selection.denoised_selection_scores[i, : len(promoted)].tolist()]
    teacher_pos = teacher_neg = None
    if getattr(selection, "teacher_scores", None) is not None:
        teacher_neg = [_score(s) for s, f in zip(selection.teacher_scores[i].tolist(), filled) if f]
        teacher_pos = [_score(s) for s in selection.teacher_positive_scores[i, : len(labelled)].tolist()]
        teacher_pos += [_score(s) for s in selection.denoised_scores[i, : len(promoted)].tolist()] if promoted else []
    denoised = None
    if getattr(selection, "denoised", None) is not None:
        pairs = zip(selection.denoised[i].tolist(), selection.denoised_scores[i].tolist())
        denoised = [(d, _score(s)) for d, s in pairs if d != EMPTY]
    return QueryRows(
        query=data.queries.texts[q], query_id=data.queries.ids[q], pos=labelled + promoted, negs=negs,
        pos_scores=teacher_pos if teacher_pos is not None else selection_pos,
        neg_scores=teacher_neg if teacher_neg is not None else selection_neg,
        selection_pos=selection_pos, selection_neg=selection_neg, teacher_pos=teacher_pos, teacher_neg=teacher_neg,
        denoised=denoised, sources=selection.source_labels(i) if with_sources else [], width=selection.negatives.shape[1],
    )
