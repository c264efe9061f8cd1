"""Writing training files: JSONL (``.jsonl``, ``.jsonl.gz``) or Parquet (``.parquet``), atomically.

The formats themselves (rows of each, and how each is read back) are in
:mod:`hardneg.formats`; a partial file never appears under the final name.

Imported by ``hardneg/__init__`` (``hardneg.export`` is this module's :func:`export`),
so it imports only the standard library at the top.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.formats import FORMATS, build_rows, check_name

__all__ = ["FORMATS", "build_rows", "check_format", "export", "file_kind", "write_rows"]

logger = logging.getLogger(__name__)

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
    check_name(fmt)
    if fmt == "n-tuple" and if_short == "keep":
        raise HardnegError("n-tuple rows need the same number of negatives each, but --if-short keep leaves some "
                           "queries short; use --if-short drop or pad, or a list format (flag, labeled-list, ids).")


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL(.gz) or Parquet, chosen by the file name, atomically."""
    from hardneg.atomic import atomic_path

    path = Path(path)
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            raise HardnegError(
                f"No rows to write to {path}: every query was dropped. Loosen the filters or use --if-short pad."
            )
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
