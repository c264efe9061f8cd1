"""Run directory: fingerprints, cached artefacts, atomic writes and their integrity.

Everything expensive (embeddings, candidates, teacher scores) is saved under a key
made from what produced it, so a rerun with other selection settings reuses it and
a changed model, prompt or corpus never does.

Every cached artefact is written with :func:`artifact_path` and read back with
:func:`read_artifact`: beside ``X`` an integrity record ``X.sum`` holds its size and
BLAKE2b checksum, written before ``X`` appears under its final name. A truncated or
altered artefact (a full disk, a copy cut short, a stray edit) fails the check on
load, is removed with one warning, and is computed again, so the run's output is
the same as a clean run's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from hardneg.atomic import atomic_path

if TYPE_CHECKING:
    from hardneg.execute import Executor, ShardWork

logger = logging.getLogger(__name__)

T = TypeVar("T")


INTEGRITY_SUFFIX = ".sum"
_CHUNK = 1 << 22


def integrity_record(path: str | Path) -> Path:
    """Where the integrity record of artefact ``path`` lives (``path`` + ``.sum``)."""
    path = Path(path)
    return path.with_name(path.name + INTEGRITY_SUFFIX)


def file_checksum(path: str | Path) -> str:
    """BLAKE2b of a file's bytes, streamed in 4 MiB chunks (hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def artifact_path(path: str | Path) -> Iterator[Path]:
    """:func:`atomic_path` for a cached artefact: also records its size and checksum.

    The record is written (atomically) before the artefact is renamed onto ``path``,
    so an artefact under its final name always has one.
    """
    with atomic_path(path) as tmp:
        yield tmp
        write_json(integrity_record(path), {"size": tmp.stat().st_size, "blake2b": file_checksum(tmp)})


def integrity_problem(path: str | Path) -> str | None:
    """Why the artefact at ``path`` cannot be trusted, or None when it matches its record."""
    path, record_path = Path(path), integrity_record(path)
    if not record_path.is_file():
        return f"no integrity record {record_path.name}"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        size, checksum = int(record["size"]), str(record["blake2b"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable integrity record {record_path.name}"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, {size} expected"
    if file_checksum(path) != checksum:
        return "checksum mismatch"
    return None


def discard_artifact(path: str | Path) -> None:
    """Remove an artefact and its integrity record."""
    Path(path).unlink(missing_ok=True)
    integrity_record(path).unlink(missing_ok=True)


def read_artifact(path: str | Path, load: Callable[[Path], T], *, what: str) -> T | None:
    """``load(path)`` when ``path`` holds an intact artefact; None when it is absent or damaged.

    A damaged artefact (size or checksum off its record, no record, or unreadable) is
    removed with one warning, so the caller computes it again.
    """
    path = Path(path)
    if not path.exists():
        return None
    problem = integrity_problem(path)
    if problem is None:
        try:
            return load(path)
        except Exception as exc:  # a file that matches its record but cannot be read is damaged all the same
            problem = f"unreadable: {exc}"
    logger.warning("cached %s %s is damaged (%s); computing it again", what, path, problem)
    discard_artifact(path)
    return None


def write_json(path: str | Path, payload: Any) -> None:
    """Write JSON atomically (sorted keys, so equal payloads give equal bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(_json_text(payload), encoding="utf-8")


def save_json_artifact(path: str | Path, payload: Any) -> None:
    """:func:`write_json` with an integrity record (for cached metadata)."""
    with artifact_path(path) as tmp:
        tmp.write_text(_json_text(payload), encoding="utf-8")


def _json_text(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` atomically, with an integrity record (:func:`artifact_path`)."""
    with artifact_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def load_npy(path: str | Path, *, what: str, mmap: bool = False) -> np.ndarray | None:
    """An array saved by :func:`save_npy`, or None when absent or damaged (see :func:`read_artifact`)."""
    return read_artifact(path, lambda p: np.load(p, mmap_mode="r" if mmap else None), what=what)


def sharded_compute(
    work: ShardWork,
    order: np.ndarray,
    *,
    shard_size: int,
    parts_dir: Path | None = None,
    final: Path | None = None,
    desc: str = "",
    unit: str = "it",
    show_progress: bool = True,
    executor: Executor | None = None,
) -> np.ndarray:
    """Compute rows shard by shard in ``order``, resumable, and return them in input order.

    The shard plan (``order`` cut every ``shard_size`` rows) and the shard files are the
    same whichever ``executor`` computes the shards, so a run directory started with one
    engine is finished by another: saved shards are loaded, only missing ones computed.

    Args:
        work: the job and how a shard's row indices become its inputs
            (:class:`~hardneg.execute.ShardWork`); the job must return one row per index.
        order: a permutation of the rows (e.g. longest text first, so batches pad little).
        shard_size: rows per shard (the resume granularity).
        parts_dir: where finished shards are saved atomically; a rerun loads them
            instead of computing again. None keeps nothing.
        final: where the whole result is saved atomically (then the shards are removed).
        executor: who computes the missing shards; default: this process
            (:class:`~hardneg.execute.EmbeddedExecutor`).

    Returns:
        ``out`` with ``out[i]`` the row computed for index ``i``; with ``final``, ``final``
        memory-mapped read-only: the rows are written into it as they come, so memory
        holds a shard at a time, never the whole result.
    """
    from tqdm.auto import tqdm

    from hardneg.errors import HardnegError
    from hardneg.execute import EmbeddedExecutor

    executor = executor if executor is not None else EmbeddedExecutor()
    shards = [order[start : start + shard_size] for start in range(0, len(order), shard_size)]
    if parts_dir is not None:
        parts_dir.mkdir(parents=True, exist_ok=True)
    missing = []
    with contextlib.ExitStack() as stack:
        # with a final file the rows go straight into it, memory-mapped: RAM holds a shard, not the whole result
        out = _Assembly(len(order), stack.enter_context(artifact_path(final)) if final is not None else None)
        bar = stack.enter_context(tqdm(total=len(order), desc=desc, unit=unit, disable=not show_progress))
        for number, idx in enumerate(shards):
            rows = _saved_shard(parts_dir, number, len(idx), desc)
            if rows is None:
                missing.append(number)
                continue
            out.place(idx, rows)
            bar.update(len(idx))
        if missing and len(missing) < len(shards):
            logger.info("%s: resuming, %d of %d shards already done", desc, len(shards) - len(missing), len(shards))
        inputs = ((number, work.inputs(shards[number])) for number in missing)
        for number, rows in executor.run(work.job, inputs):
            idx = shards[number]
            if len(rows) != len(idx):
                raise HardnegError(f"{desc}: shard {number} came back with {len(rows)} rows for {len(idx)} inputs.")
            if parts_dir is not None:
                save_npy(_shard_path(parts_dir, number), rows)
            out.place(idx, rows)
            bar.update(len(idx))
        result = out.finish()
    if final is None:
        return result
    if parts_dir is not None:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return np.load(final, mmap_mode="r")


class _Assembly:
    """The rows of :func:`sharded_compute` put in input order, in memory or, given ``path``, in a
    ``.npy`` file written through a memory map (its pages are file cache the kernel writes back)."""

    def __init__(self, n: int, path: Path | None) -> None:
        self.n, self.path = n, path
        self.array: np.ndarray | None = None

    def place(self, idx: np.ndarray, rows: np.ndarray) -> None:
        """``array[idx] = rows``; the first rows fix the dtype and the row shape."""
        if self.array is None:
            shape = (self.n, *rows.shape[1:])
            self.array = (np.empty(shape, dtype=rows.dtype) if self.path is None
                          else np.lib.format.open_memmap(self.path, mode="w+", dtype=rows.dtype, shape=shape))
        self.array[idx] = rows

    def finish(self) -> np.ndarray:
        """The whole array: in memory, or the flushed memory map of ``path``."""
        array, self.array = self.array, None
        if array is None:  # nothing to compute
            array = np.empty(0, dtype=np.float32)
            if self.path is not None:
                with open(self.path, "wb") as fh:
                    np.save(fh, array)
        elif isinstance(array, np.memmap):
            array.flush()
        return array


def _shard_path(parts_dir: Path, number: int) -> Path:
    return parts_dir / f"{number:05d}.npy"


def _saved_shard(parts_dir: Path | None, number: int, n_rows: int, desc: str) -> np.ndarray | None:
    """Shard ``number`` as a finished run saved it, or None (absent, damaged, or of another plan)."""
    if parts_dir is None:
        return None
    path = _shard_path(parts_dir, number)
    rows = load_npy(path, what=f"{desc} shard")
    if rows is not None and len(rows) != n_rows:
        logger.warning("cached %s shard %s holds %d rows, %d expected; computing it again", desc, path, len(rows), n_rows)
        return None
    return rows


def fingerprint(*parts: Any) -> str:
    """A short, stable hex key for a tuple of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def texts_fingerprint(texts: Any) -> str:
    """Hash a sequence of strings (order matters); a text column's bytes are hashed as they are stored."""
    digest = hashlib.sha256()
    for encoded in texts.iter_bytes() if hasattr(texts, "iter_bytes") else (text.encode("utf-8") for text in texts):
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()[:16]


class RunDir:
    """A folder holding one mining run's reusable artefacts.

    Layout (each cached artefact ``X`` has its integrity record ``X.sum`` beside it)::

        embeddings/<key>.npy          encoded texts (one file per encoder x text set)
        embeddings/<key>.parts/       shards of an unfinished encoding (resume point)
        candidates/<key>.parquet      retrieved candidates
        candidates/<key>.json         what produced them
        teacher/<key>.npy             cross-encoder scores of candidate pairs (and .parts/)
        snapshots/<key>/              weights of an in-memory model, saved for Ray workers to load
        bm25/<key>/                   a BM25 index (memory-mapped arrays, vocabulary, index.json last)
        corpus/<digest>/              a big corpus's ids, titles and texts as Arrow files, memory-mapped
        report.json                   the last successful mining run's report
        report_scores.npz, report_examples.json, report.html   what `hardneg report` draws
        report_map.json               telling queries' neighbourhoods for the report (dense runs)
    """

    CACHE_FOLDERS = ("embeddings", "candidates", "teacher", "snapshots", "bm25", "corpus")
    REPORT, SNAPSHOT, EXAMPLES, PAGE = "report.json", "report_scores.npz", "report_examples.json", "report.html"
    MAP = "report_map.json"
    REPORT_FILES = (REPORT, SNAPSHOT, EXAMPLES, PAGE, MAP)

    def __init__(self, path: str | Path) -> None:
        from hardneg.errors import HardnegError

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise HardnegError(f"--run-dir {self.path} is a file; expected a directory for the run's cached "
                               "artefacts. Pass another path (it is created if missing).")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise HardnegError(f"Cannot create the run directory {self.path}: {exc.filename} is a file. "
                               "Pass another --run-dir.") from exc

    @classmethod
    def would_own(cls, run_dir: str | Path, path: str | Path) -> bool:
        """True when ``path`` is (or would be) one of run directory ``run_dir``'s own files: a cache or a report."""
        here, target = Path(run_dir).resolve(), Path(path).resolve()
        if target.parent == here and target.name in cls.REPORT_FILES:
            return True
        return any(target.is_relative_to(here / folder) for folder in cls.CACHE_FOLDERS)

    def embeddings(self, key: str) -> Path:
        return self.path / "embeddings" / f"{key}.npy"

    def embedding_parts(self, key: str) -> Path:
        return self.path / "embeddings" / f"{key}.parts"

    def candidates(self, key: str) -> Path:
        return self.path / "candidates" / f"{key}.parquet"

    def candidates_manifest(self, key: str) -> Path:
        return self.path / "candidates" / f"{key}.json"

    def bm25_index(self, key: str) -> Path:
        return self.path / "bm25" / key

    @property
    def corpus(self) -> Path:
        """Where a big corpus is kept on disk (:func:`hardneg.data.on_disk.corpus_on_disk`)."""
        return self.path / "corpus"

    def teacher_scores(self, key: str) -> Path:
        return self.path / "teacher" / f"{key}.npy"

    def teacher_parts(self, key: str) -> Path:
        return self.path / "teacher" / f"{key}.parts"

    @property
    def model_snapshots(self) -> Path:
        """Where a model that exists only in memory (one being trained) is saved for workers to load."""
        return self.path / "snapshots"

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def snapshot(self) -> Path:
        """Score samples the HTML report draws."""
        return self.path / self.SNAPSHOT

    @property
    def examples(self) -> Path:
        """Example queries with their negatives, for the HTML report."""
        return self.path / self.EXAMPLES

    @property
    def neighbourhood_map(self) -> Path:
        """Telling queries' neighbourhoods in 2-D, for the HTML report (:mod:`hardneg.neighbourhood`)."""
        return self.path / self.MAP

    @property
    def page(self) -> Path:
        """The HTML report."""
        return self.path / self.PAGE

    def latest_candidates(self) -> Path:
        """The candidates file written last (for commands that take only a run dir)."""
        files = sorted((self.path / "candidates").glob("*.parquet"), key=lambda p: p.stat().st_mtime)
        if not files:
            from hardneg.errors import HardnegError

            raise HardnegError(f"{self.path} holds no candidates; run `hardneg mine ... --run-dir {self.path}` first.")
        return files[-1]
