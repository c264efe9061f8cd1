"""``--memory-budget``: from a byte budget to the block sizes of encoding and search.

The sizes change how work is split, never its result (exact search is layout-free:
:mod:`hardneg.retrieve.sharded_search`), so they are not part of any cache key.
Standard library only: the CLI parses budgets at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hardneg.errors import HardnegError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

# Shares of the budget (the rest is headroom for candidates, Python and the libraries)
DOC_SHARD_SHARE = 0.5  # one exact-search shard: float32 twice (the shard, its FAISS index), its mapped pages
QUERY_BLOCK_SHARE = 0.125  # one query block's rescoring: gathered float32 candidates and their products
ENCODE_SHARD_SHARE = 0.0625  # one encoding shard's float32 output
MIN_ROWS = 256
# Without a budget: exact search still cuts the corpus into shards of at most this many float32 bytes,
# so that its peak stays near 1 GiB whatever the corpus (shards change no result, only memory).
DEFAULT_SHARD_BYTES = 512 * 2**20


@dataclass(frozen=True)
class BlockPlan:
    """Block sizes for a corpus.

    Attributes:
        query_block: queries per FAISS search and rescoring block.
        doc_shard: documents per exact-search shard.
        encode_shard: texts per encoding shard (also the resume granularity).
    """

    query_block: int
    doc_shard: int
    encode_shard: int


def parse_bytes(text: str) -> int:
    """``"4GB"``, ``"512MiB"``, ``"2.5 gb"`` or a plain byte count, as bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise HardnegError(f"a memory budget looks like 4GB, 512MB or 16GiB; got {text!r}.")
    return int(float(match.group(1)) * _UNITS[unit])


def default_doc_shard(n_docs: int, dim: int) -> int:
    """Documents per exact-search shard without ``--memory-budget``: all of them up to
    :data:`DEFAULT_SHARD_BYTES` of float32 (349,525 at 384 wide), so small corpora search in one piece."""
    return max(1, min(n_docs, DEFAULT_SHARD_BYTES // (4 * dim)))


def block_plan(budget: int, n_docs: int, dim: int, dtype_bytes: int, depth: int = 100) -> BlockPlan:
    """The block sizes that keep search and encoding near ``budget`` bytes (beyond the model).

    Exact search holds one shard as float32 twice and its mapped pages as stored
    (``(8 + dtype_bytes) * dim`` bytes a document) and, per
    query block, ``2 * depth`` gathered float32 candidates and their products
    (``16 * depth * dim`` bytes a query); encoding, a shard's float32 output. Each size is
    at least 256 and at most what there is. Not budgeted here (see the README's table):
    the model itself, and the pages of memory-mapped files (embeddings written or searched),
    which are file cache the kernel reclaims.
    """
    def rows(share: float, per_row: int, most: int) -> int:
        return max(MIN_ROWS, min(most, int(budget * share) // per_row)) if most > MIN_ROWS else max(1, most)

    return BlockPlan(
        query_block=rows(QUERY_BLOCK_SHARE, 16 * depth * dim, 1 << 16),
        doc_shard=rows(DOC_SHARD_SHARE, (8 + dtype_bytes) * dim, n_docs),
        encode_shard=rows(ENCODE_SHARD_SHARE, 4 * dim, 1 << 16),
    )
