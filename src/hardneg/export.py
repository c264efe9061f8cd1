"""Training files from a selection: sentence-transformers, FlagEmbedding and id formats.

Every format is written as JSONL (``.jsonl``, ``.jsonl.gz``) or Parquet
(``.parquet``), atomically: a partial file never appears under the final name.

Imported by ``hardneg/__init__`` (``hardneg.export`` is this module's :func:`export`),
so it imports only the standard library at the top.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list", "flag", "ids")


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
    from hardneg.candidates import EMPTY

    if fmt not in FORMATS:
        raise HardnegError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    passages, query_texts, doc_ids = data.corpus.passages, data.queries.texts, data.corpus.ids
    rows: list[dict[str, Any]] = []
    teacher = getattr(selection, "teacher_scores", None) is not None
    denoised = getattr(selection, "denoised", None)
    for i, q in enumerate(selection.query_rows.tolist()):
        filled = [d != EMPTY for d in selection.negatives[i].tolist()]
        negs = [d for d in selection.negatives[i].tolist() if d != EMPTY]
        selection_neg = [_score(s) for s, f in zip(selection.scores[i].tolist(), filled) if f]
        labelled = data.positives[q].tolist()
        promoted = selection.promoted_positives(i) if hasattr(selection, "promoted_positives") else []
        pos = labelled + promoted
        selection_pos = [_score(s) for s in selection.positive_scores[i, : len(labelled)].tolist()]
        if promoted:
            selection_pos += [_score(s) for s in selection.denoised_selection_scores[i, : len(promoted)].tolist()]
        if teacher:
            teacher_neg = [_score(s) for s, f in zip(selection.teacher_scores[i].tolist(), filled) if f]
            teacher_pos = [_score(s) for s in selection.teacher_positive_scores[i, : len(labelled)].tolist()]
            teacher_pos += [_score(s) for s in selection.denoised_scores[i, : len(promoted)].tolist()] if promoted else []
            pos_scores, neg_scores = teacher_pos, teacher_neg
        else:
            pos_scores, neg_scores = selection_pos, selection_neg
        query = query_texts[q]
        if fmt == "triplet":
            for p, ps in zip(pos, pos_scores):
                for n, ns in zip(negs, neg_scores):
                    row = {"anchor": query, "positive": passages[p], "negative": passages[n]}
                    if with_scores:
                        row["scores"] = [ps, ns]
                    rows.append(row)
        elif fmt == "n-tuple":
            if len(negs) != selection.negatives.shape[1]:
                raise HardnegError(
                    f"Query {data.queries.ids[q]!r} has {len(negs)} negatives but n-tuple needs "
                    f"{selection.negatives.shape[1]}; use --if-short drop or pad with this format."
                )
            for p, ps in zip(pos, pos_scores):
                row = {"anchor": query, "positive": passages[p]}
                row.update({f"negative_{j + 1}": passages[n] for j, n in enumerate(negs)})
                if with_scores:
                    row["scores"] = [ps, *neg_scores]
                rows.append(row)
        elif fmt == "labeled-pair":
            for d, label, s in [*((p, 1, ps) for p, ps in zip(pos, pos_scores)), *((n, 0, ns) for n, ns in zip(negs, neg_scores))]:
                row = {"anchor": query, "document": passages[d]}
                row["score" if with_scores else "label"] = s if with_scores else label
                rows.append(row)
        elif fmt == "labeled-list":
            row = {"anchor": query, "documents": [passages[d] for d in pos + negs]}
            if with_scores:
                row["scores"] = pos_scores + neg_scores
            else:
                row["labels"] = [1] * len(pos) + [0] * len(negs)
            rows.append(row)
        elif fmt == "flag":
            rows.append(
                {
                    "query": query,
                    "pos": [passages[p] for p in pos],
                    "neg": [passages[n] for n in negs],
                    "pos_scores": pos_scores,
                    "neg_scores": neg_scores,
                }
            )
        else:
            labels = selection.source_labels(i)
            row = {
                "query_id": data.queries.ids[q],
                "positive_ids": [doc_ids[p] for p in pos],
                "negative_ids": [doc_ids[n] for n in negs],
                "positive_scores": selection_pos,
                "negative_scores": selection_neg,
                "negative_sources": labels[: len(negs)],
            }
            if teacher:
                row["teacher_positive_scores"] = teacher_pos
                row["teacher_negative_scores"] = teacher_neg
            if denoised is not None:
                gone = [(d, s) for d, s in zip(denoised[i].tolist(), selection.denoised_scores[i].tolist()) if d != EMPTY]
                row["denoised_ids"] = [doc_ids[d] for d, _ in gone]
                row["denoised_scores"] = [_score(s) for _, s in gone]
            rows.append(row)
    return rows


def file_kind(path: str | Path) -> str:
    """``parquet``, ``jsonl`` or ``jsonl.gz``, from the file name; anything else is refused."""
    name = Path(path).name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl.gz", ".json.gz")):
        return "jsonl.gz"
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    raise HardnegError(f"Cannot tell the file type of {path}: end it with .jsonl, .jsonl.gz or .parquet.")


def check_format(path: str | Path, fmt: str, *, if_short: str = "drop") -> None:
    """Refuse, before any work, an output that :func:`export` would refuse after mining."""
    file_kind(path)
    if fmt not in FORMATS:
        raise HardnegError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if fmt == "n-tuple" and if_short == "keep":
        raise HardnegError("n-tuple rows need the same number of negatives each, but --if-short keep leaves some "
                           "queries short; use --if-short drop or pad, or a list format (flag, labeled-list, ids).")


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL(.gz) or Parquet, chosen by the file name, atomically."""
    from hardneg.store import atomic_path

    path = Path(path)
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            raise HardnegError(f"No rows to write to {path}: every query was dropped. Loosen the filters or use --if-short pad.")
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
    else:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as raw:
                # no file name and mtime 0 in the gzip header: byte-identical output across runs
                fh = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if kind == "jsonl.gz" else raw
                with fh:
                    for row in rows:
                        fh.write((json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))
    logger.info("wrote %d rows to %s", len(rows), path)
    return path


def export(data, selection, path: str | Path, fmt: str = "triplet", *, with_scores: bool = False) -> Path:
    """Build and write a training file; returns its path."""
    return write_rows(build_rows(data, selection, fmt, with_scores=with_scores), path)
