"""A big corpus kept on disk: saved once under a run directory and memory-mapped from there.

Loading builds the corpus in memory (one UTF-8 buffer per column, see
:mod:`hardneg.data.text_column`). For a corpus of hundreds of MB and more, :func:`corpus_on_disk`
writes it into the run directory, keyed by its content, and gives back the same data reading it
through a memory map: the texts become file cache that the operating system pages in as they are
read and drops under memory pressure, instead of the process's own memory for the whole run.
Two loads of the same corpus (a training split and its dev split) map the same files.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from hardneg.data.values import Corpus, RetrievalData
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

#: Corpora whose ids, titles and texts take at least this many bytes are kept on disk by the CLI.
ON_DISK_FROM_BYTES = 256 * 2**20


def corpus_bytes(corpus: Corpus) -> int:
    """Bytes the corpus's three columns hold (UTF-8 bytes plus 8 per row and column)."""
    return corpus.ids.nbytes + corpus.titles.nbytes + corpus.texts.nbytes


def corpus_on_disk(data: RetrievalData, folder: str | Path) -> RetrievalData:
    """``data`` with its corpus saved under ``folder/<content digest>`` and memory-mapped from there.

    A folder that already holds this corpus is reused, not written again. The result has the same
    content, hence the same :meth:`~RetrievalData.fingerprint`, and carries it over uncomputed.

    Raises:
        HardnegError: ``folder`` cannot be written.
    """
    corpus = data.corpus
    target = Path(folder) / corpus.digest[:24]
    opened = _open_saved(target, corpus)
    if opened is None:
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            corpus.save(temporary)
            try:
                temporary.rename(target)
            except OSError:  # another process saved the same corpus first: use theirs
                shutil.rmtree(temporary, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(temporary, ignore_errors=True)
            raise HardnegError(f"Cannot keep the corpus on disk in {target.parent} ({exc}); free some space there "
                               "or pass another --run-dir.") from None
        opened = Corpus.open(target)
        logger.info("corpus of %d documents saved to %s and memory-mapped from there", len(corpus), target)
    mapped = replace(data, corpus=opened)
    known = data.__dict__.get("_fingerprint")
    if known is not None:
        mapped.__dict__["_fingerprint"] = known
    return mapped


def _open_saved(target: Path, corpus: Corpus) -> Corpus | None:
    """The corpus saved at ``target``, or None when there is none (a damaged one is removed)."""
    if not target.is_dir():
        return None
    try:
        opened = Corpus.open(target)
    except HardnegError as exc:
        logger.warning("%s; saving the corpus there again", exc)
        shutil.rmtree(target, ignore_errors=True)
        return None
    if corpus_bytes(opened) != corpus_bytes(corpus) or len(opened) != len(corpus):
        logger.warning("%s holds another corpus than its name says; saving the corpus there again", target)
        shutil.rmtree(target, ignore_errors=True)
        return None
    return opened
