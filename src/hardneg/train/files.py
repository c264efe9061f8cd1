"""Training examples from a file written by ``hardneg mine`` (the trainable formats of :mod:`hardneg.formats`)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.formats import detect_format, examples_of_row
from hardneg.text import text_keys
from hardneg.train.pool import NegativePool

logger = logging.getLogger(__name__)


def check_negatives_file(path: str | Path) -> Path:
    """Refuse a negatives file that is missing, not a file, or of a type hardneg does not write."""
    path = Path(path)
    if not path.exists():
        raise HardnegError(f"Negatives file {path} does not exist; write one with `hardneg mine ... --output {path}`.")
    if not path.is_file():
        raise HardnegError(f"Negatives file {path} is a directory; pass the file `hardneg mine --output` wrote.")
    if not path.name.lower().endswith((".parquet", ".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        raise HardnegError(f"Cannot tell the file type of {path}: end it with .jsonl, .jsonl.gz or .parquet.")
    return path


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file."""
    path = check_negatives_file(path)
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        opener = gzip.open if name.endswith(".gz") else open
        rows = []
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise HardnegError(f"{path}, line {lineno}: not valid JSON ({exc.msg}).") from exc
        return rows
    except HardnegError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # truncated gzip/Parquet, not UTF-8, ...
        raise HardnegError(f"Cannot read the negatives file {path}: {exc}. Is it complete? Write it again with "
                           "`hardneg mine ... --output`.") from exc


def pool_from_file(path: str | Path, data=None, *, num_negatives: int | None = None,
                   with_scores: bool = False) -> NegativePool:
    """Training examples from an exported file.

    Args:
        path: the file.
        data: the mining data; needed for the ``ids`` format, and used (when given) to
            know every positive of a query and each example's query row.
        num_negatives: use only the first N negatives of each row (default: all; rows
            must then have equal counts).
        with_scores: keep the ``scores`` (triplet, n-tuple) or ``pos_scores``/``neg_scores``
            (flag) columns as MarginMSE labels ``[positive, negatives...]``.
    """
    rows = read_rows(path)
    if not rows:
        raise HardnegError(f"{path} holds no rows.")
    fmt = detect_format(set(rows[0]))
    examples: list[tuple[str, str, list[str], list[float] | None]] = []
    for lineno, row in enumerate(rows, 1):
        try:
            examples.extend(examples_of_row(fmt, row, data))
        except KeyError as exc:
            raise HardnegError(f"{path}, row {lineno}: missing column or unknown id {exc} for format {fmt}.") from exc
    if num_negatives is not None:
        short = [i for i, e in enumerate(examples) if len(e[2]) < num_negatives]
        if short:
            raise HardnegError(f"{path}: row {short[0] + 1} has fewer than {num_negatives} negatives; lower --num-negatives.")
        examples = [(a, p, n[:num_negatives], None if s is None else s[: num_negatives + 1]) for a, p, n, s in examples]
    if with_scores and any(e[3] is None or any(v is None for v in e[3]) for e in examples):
        raise HardnegError(f"{path} has rows without scores; MarginMSE needs them (mine with --with-scores, or a teacher).")
    # A file may repeat an exact row (triplets of one query with equal texts): keep the first.
    seen, unique = set(), []
    for e in examples:
        key = (e[0], e[1], tuple(e[2]))
        if key not in seen:
            seen.add(key)
            unique.append(e)
    logger.info("%s: %d %s rows -> %d training examples", path, len(rows), fmt, len(unique))
    return _pool(unique, data, with_scores)


def _pool(examples, data, with_scores: bool) -> NegativePool:
    anchors = [e[0] for e in examples]
    group_of: dict[str, int] = {}
    groups = np.array([group_of.setdefault(a, len(group_of)) for a in anchors], np.int64)
    # every positive of a query: those in the file, plus the data's qrels when given
    positives_of: list[set[str]] = [set() for _ in group_of]
    for e, g in zip(examples, groups.tolist()):
        positives_of[g].add(e[1])
    query_rows = np.full(len(examples), -1, np.int64)
    if data is not None:
        row_of_text = {t: i for i, t in enumerate(data.queries.texts)}
        passages = data.corpus.passages
        for anchor, g in group_of.items():
            q = row_of_text.get(anchor)
            if q is None:
                raise HardnegError(
                    f"The negatives file's anchor {anchor[:200]!r} is not a query of {data.source}: the file was "
                    "mined from other data (or another split / --max-queries). Train with the data it was mined "
                    "from, or mine a file from this data."
                )
            positives_of[g].update(passages[p] for p in data.positives[q].tolist())
            query_rows[groups == g] = q
    group_keys = [text_keys(sorted(s)) for s in positives_of]
    scores = np.asarray([e[3] for e in examples], np.float32) if with_scores else None
    return NegativePool(anchors, [e[1] for e in examples], [list(e[2]) for e in examples], groups, group_keys,
                        query_rows, scores=scores)
