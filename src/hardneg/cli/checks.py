"""Refusals before any work: outputs that would destroy an input or a cache, folders that cannot be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hardneg.errors import HardnegError


def input_files(args) -> list[Path]:
    """Every file the command reads: the data (or a BEIR folder's files), --corpus, --negatives."""
    files = []
    data = Path(args.data) if getattr(args, "data", None) else None
    if data is not None and data.is_dir():
        files += [p for p in data.glob("*") if p.is_file()]
        files += [p for p in (data / "qrels").glob("*") if p.is_file()]
    elif data is not None:
        files.append(data)
    for extra in ("corpus", "negatives"):
        value = getattr(args, extra, None)
        if isinstance(value, str) and value:
            files.append(Path(value))
    return files


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable(path: Path, what: str, *, folder: bool = False) -> None:
    """Refuse a path whose nearest existing folder cannot be written (read-only, no permission, a pseudo
    file system such as /proc), by creating and removing a probe file there: permission bits alone say
    yes to root and to /proc."""
    start = path if folder else path.parent
    while not start.exists() and start != start.parent:
        start = start.parent
    if not start.is_dir():
        raise HardnegError(f"{what} {path}: {start} is a file, not a folder; choose another path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hardneg-probe-", dir=start)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise HardnegError(f"{what} {path}: cannot write in {start} ({e.strerror or e}); choose another "
                           "path.") from None


def check_output(path: str | Path, args, *, run_dir: str | Path | None = None, folder: bool = False,
                 what: str = "--output") -> Path:
    """Refuse an output before any work: a directory (or file) in the way, an input, a run-dir artefact.

    Args:
        path: where the command will write.
        args: the parsed flags (for the input files).
        run_dir: the run directory, whose caches and reports the output must not replace.
        folder: the output is a folder (train), not a file.
    """
    from hardneg.store import RunDir

    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise HardnegError(f"{what} {path} is a file; expected a folder (it is created if missing).")
    if not folder and path.is_dir():
        raise HardnegError(f"{what} {path} is a directory; expected a file name such as {path / 'train.jsonl'}.")
    sources = input_files(args) + ([Path(args.data)] if folder and getattr(args, "data", None) else [])
    for source in sources:
        if _same_file(path, source):
            raise HardnegError(f"{what} {path} is an input of this command ({source}); writing there would "
                               "destroy it. Choose another path.")
    if run_dir is not None and RunDir.would_own(run_dir, path):
        raise HardnegError(f"{what} {path} is one of the run directory's own files ({run_dir}); choose a path "
                           "outside its caches and reports.")
    check_writable(path, what, folder=folder)
    return path


def check_run_dir(run_dir: str | Path) -> Path:
    """Refuse a --run-dir that is a file or cannot be written (before any work)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise HardnegError(f"--run-dir {run_dir} is a file; expected a directory for the run's cached artefacts "
                           "(it is created if missing).")
    check_writable(run_dir, "--run-dir", folder=True)
    return run_dir


MODEL_FLAGS = {"model": "--model", "cross_encoder": "--cross-encoder", "base": "--base", "guide": "--guide"}


def check_models(args) -> None:
    """Refuse, before any work, a model flag that names a local folder that is not there.

    A Hugging Face name is ``name`` or ``org/name``; anything else (``./m``, ``/abs/m``,
    ``~/m``, ``a/b/c``) can only be a path, so when it does not exist it is a typo, not a
    name to look up.
    """
    from hardneg.errors import HardnegError

    for dest, flag in MODEL_FLAGS.items():
        value = getattr(args, dest, None)
        if not value or Path(value).expanduser().exists():
            continue
        if value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value:
            raise HardnegError(f"{flag} {value}: no such folder. Pass the folder of a saved sentence-transformers "
                               "model (with config.json and its weights), or a Hugging Face model name "
                               "such as org/name.")
    teacher = getattr(args, "cross_encoder", None)
    if teacher:
        from hardneg.teacher.scorer import lacks_scoring_head, no_scoring_head_error

        if lacks_scoring_head(teacher):
            raise no_scoring_head_error(teacher)
