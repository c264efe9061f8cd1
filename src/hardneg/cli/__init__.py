"""The ``hardneg`` command: the parser, :func:`main`, and one module per command group.

``mine.py`` (mine, eval), ``teacher.py`` (train-reranker, rescore), ``train.py``
(train), ``report.py`` (report); the option groups they share and what the flags
build are in ``options.py``, the refusals before any work in ``checks.py``.

Imports stay light at the top of this package (the console script imports it before
``main`` runs); everything heavy is imported inside the commands, where Ctrl-C and
errors become one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hardneg.cli import mine, report, teacher, train
from hardneg.cli.checks import check_models
from hardneg.cli.options import check_numbers, resolve_retriever
from hardneg.errors import HardnegError

logger = logging.getLogger("hardneg")


class _Parser(argparse.ArgumentParser):
    """argparse with hardneg's one-line error format (``hardneg: error: ...``)."""

    def error(self, message: str):
        self.exit(2, f"hardneg: error: {message}{did_you_mean(message)} ({self.prog} --help lists the flags)\n")


def did_you_mean(message: str) -> str:
    """``"; did you mean 'triplet'?"`` for argparse's invalid-choice message when one choice is close, else ``""``."""
    import difflib
    import re

    found = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hardneg", description="Mine, clean and train with hard negatives for dense retrievers.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    parser.add_argument("--version", action="version", version=f"hardneg {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    mine.register(sub)
    teacher.register(sub)
    report.register(sub)
    train.register(sub)
    for command in sub.choices.values():  # -q also after the command (hardneg mine ... -q)
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="no progress bars or info messages")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hardneg")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "(not installed)"


def _configure_logging(quiet: bool) -> None:
    """hardneg's own messages on stderr (INFO, or WARNING with -q); other libraries' INFO/DEBUG stay silent."""
    log = logging.getLogger("hardneg")
    for handler in [h for h in log.handlers if getattr(h, "hardneg_cli", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.hardneg_cli = True
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _os_error(exc: OSError) -> str:
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    hint = {
        errno.ENOSPC: "free some disk space and run the same command again (finished shards are kept)",
        errno.EROFS: "the file system is read-only; choose a writable --output / --run-dir",
        errno.EACCES: "no permission; choose a writable --output / --run-dir",
        errno.EPERM: "no permission; choose a writable --output / --run-dir",
        errno.EDQUOT: "disk quota exceeded; free some space and run the same command again",
    }.get(exc.errno, "check the path and run the same command again")
    return f"{exc.strerror or exc}{where}: {hint}."


def main(argv: list[str] | None = None) -> int:
    try:
        from hardneg.runtime import limit_onednn_cache  # numpy: the first heavy import, so inside the Ctrl-C guard

        limit_onednn_cache()  # before any model runs: the cache size is read once per process
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error already printed as one line
            return exc.code if isinstance(exc.code, int) else 2
        _configure_logging(args.quiet or getattr(args, "json", False))
        try:
            check_numbers(args)
            check_models(args)
            if hasattr(args, "retriever"):
                resolve_retriever(args)
            return args.func(args)
        except HardnegError as exc:
            print(f"hardneg: error: {exc}", file=sys.stderr)
            return 2
        except MemoryError:
            print("hardneg: error: out of memory; lower --batch-size / --max-batch-tokens or the data size.",
                  file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"hardneg: error: {_os_error(exc)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("hardneg: interrupted; run the same command again to resume from the saved shards", file=sys.stderr)
        return 130
