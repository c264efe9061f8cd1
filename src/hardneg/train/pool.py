"""The training examples and the hard negatives currently in use (swapped by refreshes).

Each example is ``(query, positive, negatives...)``. Examples are fixed for a run;
their negatives can be replaced (ANCE refresh) without rebuilding the dataset the
trainer holds: the collator looks the current negatives up here by example index.
Everything here is numpy and plain Python (no torch).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.store import write_json
from hardneg.text import text_keys

logger = logging.getLogger(__name__)

POOL_STATE_VERSION = 1


@dataclass
class NegativePool:
    """Training examples with swappable negatives.

    Attributes:
        anchors: query text of each example.
        positives: positive text of each example.
        negatives: current negative texts of each example (all the same length ``k``).
        groups: ``int64[n]`` query group of each example; examples of one query share
            a group (and its positives).
        group_positive_keys: per group, ``int64`` text keys of every positive of that query.
        query_rows: ``int64[n]`` row of each example's query in the mining data, -1 if unknown.
        scores: optional ``float32[n, k + 1]`` teacher scores ``[positive, negatives...]``
            (the labels of margin-mse and listwise-distill); no NaN.
        version: bumped by every :meth:`swap`.
    """

    anchors: list[str]
    positives: list[str]
    negatives: list[list[str]]
    groups: np.ndarray
    group_positive_keys: list[np.ndarray]
    query_rows: np.ndarray
    scores: np.ndarray | None = None
    version: int = 0

    def __post_init__(self) -> None:
        n = len(self.anchors)
        if not (len(self.positives) == len(self.negatives) == len(self.groups) == len(self.query_rows) == n):
            raise HardnegError("NegativePool: anchors, positives, negatives, groups and query_rows must align.")
        if n == 0:
            raise HardnegError("No training examples: every query was dropped. Loosen the selection or use --if-short pad.")
        widths = {len(row) for row in self.negatives}
        if len(widths) != 1:
            raise HardnegError(
                f"Training examples have different numbers of negatives {sorted(widths)}; every example needs the "
                "same number. Mine with --if-short drop or pad, or pass --num-negatives to use the first N."
            )
        if self.scores is not None:
            self._check_scores()
        self.anchor_keys = text_keys(self.anchors)
        self.positive_keys = text_keys(self.positives)
        self._refresh_negative_keys()
        self._check_own_positives()

    @property
    def num_negatives(self) -> int:
        return len(self.negatives[0])

    def __len__(self) -> int:
        return len(self.anchors)

    def _refresh_negative_keys(self) -> None:
        flat = [t for row in self.negatives for t in row]
        self.negative_keys = text_keys(flat).reshape(len(self.negatives), self.num_negatives)

    def _check_scores(self) -> None:
        want = (len(self), self.num_negatives + 1)
        if self.scores.shape != want:
            raise HardnegError(f"Teacher scores have shape {self.scores.shape}; expected {want}: "
                               "[positive, negatives...] per example.")
        if np.isnan(self.scores).any():
            raise HardnegError("Some negatives have no teacher score (padding with random documents, "
                               "if_short='pad'); mine with if_short='drop' to train on teacher scores.")

    def _check_own_positives(self) -> None:
        for i in range(len(self)):
            own = self.group_positive_keys[int(self.groups[i])]
            if np.isin(self.negative_keys[i], own).any():
                raise HardnegError(
                    f"Example {i} (query {self.anchors[i][:60]!r}) has a negative whose text equals one of its "
                    "positives; mine with text de-duplication on (the default) or clean the file."
                )

    def example_keys(self, i: int) -> np.ndarray:
        """``int64`` text keys of every text example ``i`` puts into a batch."""
        return np.concatenate(([self.anchor_keys[i], self.positive_keys[i]], self.negative_keys[i]))

    def forbidden_keys(self, i: int) -> np.ndarray:
        """Text keys no *other* example in ``i``'s batch may carry: the positives of ``i``'s query."""
        return self.group_positive_keys[int(self.groups[i])]

    def row(self, i: int) -> dict[str, Any]:
        """Example ``i`` as the trainer's columns: ``anchor, positive, negative_1..k[, scores]``."""
        out: dict[str, Any] = {"anchor": self.anchors[i], "positive": self.positives[i]}
        out.update({f"negative_{j + 1}": t for j, t in enumerate(self.negatives[i])})
        if self.scores is not None:
            out["scores"] = self.scores[i].tolist()
        return out

    def swap(self, new: dict[int, Sequence[str]]) -> float:
        """Replace the negatives of the examples whose query row is a key of ``new``.

        New negatives that copy one of the query's own positives (possible when mining
        with text de-duplication off) are not taken: that example keeps its old ones.

        Args:
            new: query row → exactly ``num_negatives`` negative texts.

        Returns:
            Fraction of all negative slots whose text changed.
        """
        if self.scores is not None:
            raise HardnegError("Negatives with teacher scores (MarginMSE) cannot be swapped: the new ones have no scores.")
        changed = 0
        for i, q in enumerate(self.query_rows.tolist()):
            if q in new:
                texts = list(new[q])
                if len(texts) != self.num_negatives:
                    raise HardnegError(f"swap: query row {q} got {len(texts)} negatives, expected {self.num_negatives}.")
                if np.isin(text_keys(texts), self.group_positive_keys[int(self.groups[i])]).any():
                    logger.warning("swap: new negatives of query row %d copy one of its positives; kept the old ones", q)
                    continue
                changed += sum(a != b for a, b in zip(self.negatives[i], texts))
                self.negatives[i] = texts
        self._refresh_negative_keys()
        self.version += 1
        return changed / max(1, len(self) * self.num_negatives)

    # ------------------------------------------------------------------ persistence

    def save_negatives(self, path: str | Path) -> None:
        """Write the negatives in use (and the pool version) atomically as JSON."""
        write_json(path, {"version": POOL_STATE_VERSION, "pool_version": self.version, "negatives": self.negatives,
                          "anchors_fingerprint": _fingerprint(self.anchors, self.positives)})

    def load_negatives(self, path: str | Path) -> None:
        """Restore negatives saved by :meth:`save_negatives` (same examples required)."""
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if state.get("anchors_fingerprint") != _fingerprint(self.anchors, self.positives):
            raise HardnegError(
                f"{path} holds negatives for other training examples; resume with the same data and options "
                "the checkpoint was trained with."
            )
        self.negatives = [list(row) for row in state["negatives"]]
        self.version = int(state["pool_version"])
        self._refresh_negative_keys()


def _fingerprint(anchors: Sequence[str], positives: Sequence[str]) -> str:
    from hardneg.store import texts_fingerprint

    return texts_fingerprint([*anchors, "\0", *positives])


def pool_from_selection(data, selection, num_negatives: int | None = None, *,
                        teacher_scores: bool = False) -> NegativePool:
    """One example per (kept query, positive) with the selection's negatives.

    Queries whose row is short (``if_short="keep"``) are left out: every example needs
    the same number of negatives.

    Args:
        data: the data the selection was mined for.
        selection: a :class:`~hardneg.select.Selection`.
        num_negatives: use the first N negatives of each row (default: all).
        teacher_scores: attach the teacher's logits ``[positive, negatives...]`` as the
            pool's ``scores`` (the labels of ``margin-mse`` and ``listwise-distill``);
            the selection must come from a miner with a cross-encoder teacher.
    """
    if teacher_scores and selection.teacher_scores is None:
        raise HardnegError("These negatives carry no teacher scores: mine with a cross-encoder teacher "
                           "(Miner(..., teacher=CrossEncoderScorer(...)), or `hardneg mine --cross-encoder`).")
    passages = data.corpus.passages
    width = selection.negatives.shape[1] if num_negatives is None else num_negatives
    anchors, pos, negs, groups, qrows, scores = [], [], [], [], [], []
    for i, q in enumerate(selection.query_rows.tolist()):
        row = [d for d in selection.negatives[i].tolist() if d >= 0][:width]
        if len(row) < width:
            continue
        for j, p in enumerate(data.positives[q].tolist()):
            anchors.append(data.queries.texts[q])
            pos.append(passages[p])
            negs.append([passages[d] for d in row])
            groups.append(q)
            qrows.append(q)
            if teacher_scores:
                scores.append([selection.teacher_positive_scores[i, j], *selection.teacher_scores[i, :width]])
    return _with_group_keys(data, anchors, pos, negs, groups, qrows,
                            np.asarray(scores, np.float32) if teacher_scores else None)


def full_rows_as_texts(selection, passages, k: int) -> dict[int, list[str]]:
    """Query row → texts of its first ``k`` selected negatives, for queries that have ``k`` (what a refresh swaps in)."""
    from hardneg.candidates import EMPTY

    out: dict[int, list[str]] = {}
    for i, q in enumerate(selection.query_rows.tolist()):
        rows = [d for d in selection.negatives[i].tolist() if d != EMPTY][:k]
        if len(rows) == k:
            out[int(q)] = [passages[d] for d in rows]
    return out


def pool_in_batch_only(data) -> NegativePool:
    """One example per (query, positive), no hard negatives."""
    passages = data.corpus.passages
    anchors, pos, negs, groups, qrows = [], [], [], [], []
    for q, rows in enumerate(data.positives):
        for p in rows.tolist():
            anchors.append(data.queries.texts[q])
            pos.append(passages[p])
            negs.append([])
            groups.append(q)
            qrows.append(q)
    return _with_group_keys(data, anchors, pos, negs, groups, qrows)


def _with_group_keys(data, anchors, pos, negs, groups, qrows, scores=None) -> NegativePool:
    passages = data.corpus.passages  # only the positives are hashed, not every passage
    group_positive_keys = [text_keys([passages[p] for p in rows.tolist()]) for rows in data.positives]
    return NegativePool(anchors, pos, negs, np.asarray(groups, np.int64), group_positive_keys,
                        np.asarray(qrows, np.int64), scores=scores)
