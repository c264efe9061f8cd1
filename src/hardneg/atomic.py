"""Atomic file writes: a file appears under its final name complete, or not at all.

The lowest layer that writes files (the corpus's memory-mapped columns, run-directory
artefacts, reports, exports) writes through :func:`atomic_path`, so two writers of one
file never interleave and a killed writer never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A killed or failing writer never leaves a partial file under the final name. The
    temporary name carries its writer (host and process id), so the next write of the
    same file removes what a killed writer on this host left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp", dir=path.parent)
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


def writer_tag() -> str:
    """``<host>-<pid>`` of this process: marks the temporary files and folders it owns."""
    return f"{socket.gethostname()}-{os.getpid()}"


def writer_gone(tag: str) -> bool:
    """Whether ``tag`` (a :func:`writer_tag`) names a process of this host that no longer runs; a tag of
    another host, or not a tag at all, is never taken for gone."""
    owner, _, pid = tag.rpartition("-")
    return owner == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _remove_stale_temp_files(path: Path) -> None:
    """Remove temporary files of ``path`` whose writer (a process on this host) is gone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if writer_gone(tmp.name[len(path.name) + 2 : -len(".tmp")].rsplit(".", 1)[0]):  # "<host>-<pid>"
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
