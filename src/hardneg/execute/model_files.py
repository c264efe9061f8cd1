"""A model directory as one blob, so that workers on other machines load it without shared storage.

A job whose model lives in a local directory (a local ``--model`` or ``--cross-encoder``, or
the snapshot of the model being trained) says so with ``model_dir()``; an engine whose
workers may not see the driver's disk packs that directory once (:func:`pack_directory`),
sends the blob, and each worker unpacks it into a folder of its own (:func:`unpack_directory`)
and loads the job from there (``job.loading_from(folder)``).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from hardneg.atomic import writer_gone, writer_tag
from hardneg.errors import HardnegError

PREFIX = "hardneg-model-"


def pack_directory(folder: str | Path) -> bytes:
    """Every file under ``folder`` in one uncompressed tar (links followed: a Hugging Face cache
    snapshot links its files to shared blobs; model weights barely compress)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HardnegError(f"{folder}: not a directory; a model shipped to workers must be a local folder.")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def unpack_directory(blob: bytes, parent: str | Path | None = None) -> Path:
    """A new folder (under ``parent``, default the system's temporary directory) holding the files of
    :func:`pack_directory`'s ``blob``; names that would leave the folder are refused. The folder's name
    carries this process (``hardneg-model-<host>-<pid>.XXXX``), for :func:`remove_orphaned`."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{writer_tag()}.", dir=parent))
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(folder, filter="data")
    return folder


def remove_orphaned(parent: str | Path | None = None) -> list[Path]:
    """Remove the unpacked model folders under ``parent`` (default: the temporary directory) whose process, on
    this host, is gone: what a killed worker left. Returns them."""
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if folder.is_dir() and writer_gone(folder.name[len(PREFIX):].rpartition(".")[0]):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
