"""Retrieval data: a corpus, queries and their positives, and the loaders that read them.

Three input shapes are understood, all converted at the boundary into one immutable
:class:`RetrievalData`:

* a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``, each
  optionally gzipped) — :func:`load_beir` (``beir.py``);
* a pairs file (query text, positive text or texts) as JSON Lines, CSV, TSV or
  Parquet, optionally with a separate corpus — :func:`load_pairs` (``pairs.py``);
* a Hugging Face ``datasets.Dataset`` with the same two columns —
  :func:`from_hf_dataset` (``hf.py``).

Values live in ``values.py``, file reading in ``readers.py``. A corpus's ids, titles and texts are
:class:`TextColumn` s (``text_column.py``): one UTF-8 buffer and one offset per row each, not one
Python string per document; a well-formed ``corpus.jsonl`` is parsed column-wise by Arrow. A big
corpus can live on disk, memory-mapped (``on_disk.py``; the CLI does this from 256 MiB). Every problem with the
input raises :class:`~hardneg.errors.HardnegError` naming the file, the line and the id,
what was expected and how to fix it. Documents with no text at all and empty positive
cells are skipped, counted and reported in one warning; nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from hardneg.data.beir import load_beir, shared_corpus_reads
from hardneg.data.hf import from_hf_dataset
from hardneg.data.pairs import load_pairs
from hardneg.data.text_column import TextColumn
from hardneg.data.values import Corpus, DataSource, Queries, RetrievalData
from hardneg.errors import HardnegError

__all__ = ["Corpus", "DataSource", "Queries", "RetrievalData", "TextColumn", "from_hf_dataset", "load", "load_beir",
           "load_pairs", "reload", "shared_corpus_reads"]


def load(
    path: str | Path,
    *,
    split: str = "train",
    query_column: str = "query",
    positive_column: str = "positive",
    corpus: str | Path | None = None,
) -> RetrievalData:
    """Load a BEIR folder (a directory) or a pairs file (a file).

    Args:
        path: a BEIR folder or a pairs file.
        split: the qrels split of a BEIR folder; not used for pairs files.
        query_column: query column of a pairs file.
        positive_column: positive column of a pairs file.
        corpus: separate corpus for a pairs file; a BEIR folder has its own.

    Returns:
        The loaded data.

    Raises:
        HardnegError: the path does not exist, or a corpus was given with a BEIR folder,
            or the loader found a problem.
    """
    target = Path(path)
    if target.is_dir():
        if corpus is not None:
            raise HardnegError(
                f"{target}: a BEIR folder brings its own corpus.jsonl; got corpus={str(corpus)!r} as well. "
                "Drop the corpus argument, or pass a pairs file instead of the folder."
            )
        return load_beir(target, split=split)
    if target.is_file():
        return load_pairs(target, query_column=query_column, positive_column=positive_column, corpus=corpus)
    raise HardnegError(
        f"{target}: no such file or directory; expected a BEIR folder or a pairs file. "
        "For a Hugging Face Hub dataset use from_hf_dataset(datasets.load_dataset(...)[split])."
    )


def reload(source: DataSource) -> RetrievalData:
    """Read again the data a :class:`DataSource` record describes (a BEIR folder or a pairs file), whole.

    Raises:
        HardnegError: the record is not of data on disk, or the path is gone.
    """
    if not source.reloadable:
        raise HardnegError(f"Cannot reload {source.describe()}: only a BEIR folder or a pairs file can be read again.")
    if source.kind == "beir":
        return load_beir(source.path, split=source.split)
    return load_pairs(source.path, query_column=source.query_column, positive_column=source.positive_column,
                      corpus=source.corpus or None)
