"""Run directory: fingerprints, cached artefacts and atomic writes.

Everything expensive (embeddings, candidates) is saved under a key made from what
produced it, so a rerun with other selection settings reuses it and a changed
model, prompt or corpus never does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed or failing writer never leaves a partial file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON atomically (sorted keys, so equal payloads give equal bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def sharded_compute(
    compute: Callable[[np.ndarray], np.ndarray],
    order: np.ndarray,
    *,
    shard_size: int,
    parts_dir: Path | None = None,
    final: Path | None = None,
    desc: str = "",
    unit: str = "it",
    show_progress: bool = True,
) -> np.ndarray:
    """Compute rows shard by shard in ``order``, resumable, and return them in input order.

    Args:
        compute: maps an ``int64`` array of row indices to an array with one row each.
        order: a permutation of the rows (e.g. longest text first, so batches pad little).
        shard_size: rows per shard (the resume granularity).
        parts_dir: where finished shards are saved atomically; a rerun loads them
            instead of computing again. None keeps nothing.
        final: where the whole result is saved atomically (then the shards are removed).

    Returns:
        ``out`` with ``out[i]`` the row computed for index ``i``.
    """
    from tqdm.auto import tqdm

    starts = range(0, len(order), shard_size)
    if parts_dir is not None:
        parts_dir.mkdir(parents=True, exist_ok=True)
        done = sum(1 for i, _ in enumerate(starts) if (parts_dir / f"{i:05d}.npy").exists())
        if done:
            logger.info("%s: resuming, %d of %d shards already done", desc, done, len(starts))
    out: np.ndarray | None = None
    with tqdm(total=len(order), desc=desc, unit=unit, disable=not show_progress) as bar:
        for i, start in enumerate(starts):
            idx = order[start : start + shard_size]
            shard_path = parts_dir / f"{i:05d}.npy" if parts_dir is not None else None
            if shard_path is not None and shard_path.exists():
                rows = np.load(shard_path)
            else:
                rows = compute(idx)
                if shard_path is not None:
                    save_npy(shard_path, rows)
            if out is None:
                out = np.empty((len(order), *rows.shape[1:]), dtype=rows.dtype)
            out[idx] = rows
            bar.update(len(idx))
    if out is None:
        out = np.empty(0, dtype=np.float32)
    if final is not None:
        save_npy(final, out)
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    return out


def fingerprint(*parts: Any) -> str:
    """A short, stable hex key for a tuple of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def texts_fingerprint(texts: Any) -> str:
    """Hash a sequence of strings (order matters)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:16]


class RunDir:
    """A folder holding one mining run's reusable artefacts.

    Layout::

        embeddings/<key>.npy          encoded texts (one file per encoder x text set)
        embeddings/<key>.parts/       shards of an unfinished encoding (resume point)
        candidates/<key>.parquet      retrieved candidates
        candidates/<key>.json         what produced them
        report.json                   the last mining report
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def embeddings(self, key: str) -> Path:
        return self.path / "embeddings" / f"{key}.npy"

    def embedding_parts(self, key: str) -> Path:
        return self.path / "embeddings" / f"{key}.parts"

    def candidates(self, key: str) -> Path:
        return self.path / "candidates" / f"{key}.parquet"

    def candidates_manifest(self, key: str) -> Path:
        return self.path / "candidates" / f"{key}.json"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    def latest_candidates(self) -> Path:
        """The candidates file written last (for commands that take only a run dir)."""
        files = sorted((self.path / "candidates").glob("*.parquet"), key=lambda p: p.stat().st_mtime)
        if not files:
            from hardneg.errors import HardnegError

            raise HardnegError(f"{self.path} holds no candidates; run `hardneg mine ... --run-dir {self.path}` first.")
        return files[-1]
