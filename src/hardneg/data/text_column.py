"""A column of texts held as one UTF-8 buffer plus row offsets, in memory or memory-mapped from an Arrow file.

A tuple of Python strings costs each text an object header (about 50 bytes) and, as soon as one
character needs it, 2 or 4 bytes per character; 8.8 M passages held that way take several GB
that never leave the process. A :class:`TextColumn` holds the same texts as their UTF-8 bytes in
one buffer, with one ``int64`` offset per row, and decodes a text only when it is read. Saved with
:meth:`TextColumn.save` (an Arrow IPC file with one ``large_binary`` column) and opened again with
:meth:`TextColumn.open`, the buffer is memory-mapped: its pages are the operating system's file
cache, read in when touched and dropped under memory pressure, not the process's own memory.
Pickled (for a worker process on the same machine), a whole memory-mapped column travels as its
path; any other column as its bytes.

Texts are encoded with ``surrogatepass``, so any Python string comes back unchanged, lone
surrogates from a JSON ``\\ud800`` escape included (hence binary, not Arrow's ``string`` type,
which promises valid UTF-8).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from hardneg.atomic import atomic_path
from hardneg.errors import HardnegError

_ENCODING, _ERRORS = "utf-8", "surrogatepass"
_COLUMN = "text"
_ITER_ROWS = 4096  # rows decoded per slice of the buffer while iterating
_DIGEST_BLOCK = 1 << 26  # bytes hashed per call


class TextColumn(Sequence[str]):
    """An immutable sequence of ``str`` stored as UTF-8 bytes with row offsets.

    Build one with :meth:`from_texts` (or :class:`TextColumnBuilder`, one text at a time), or
    :meth:`open` a saved one memory-mapped. Indexing gives a ``str``; slicing gives a
    ``TextColumn`` sharing the buffer; equality is element-wise with any sequence of strings.
    """

    __slots__ = ("_bytes", "_data", "_offsets", "_path", "_starts", "_whole_file")

    def __init__(self, offsets: np.ndarray, data: np.ndarray, *, path: Path | None = None,
                 whole_file: bool = False) -> None:
        """``offsets``: ``len + 1`` non-decreasing ``int64`` byte positions into ``data`` (``uint8``); ``path``: the
        file ``data`` is mapped from, all of which the column is when ``whole_file``."""
        self._offsets = offsets
        self._data = data
        self._path = path
        self._whole_file = whole_file and path is not None
        # memoryviews index to Python ints and slice without copying: a single text reads several times faster
        self._starts = memoryview(np.ascontiguousarray(offsets, dtype=np.int64)).cast("B").cast("q")
        self._bytes = memoryview(data).cast("B") if data.size else memoryview(b"")

    # ----------------------------------------------------------------- building
    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TextColumn:
        """The column of ``texts`` (any iterable of ``str``); a ``TextColumn`` is returned as is."""
        return as_text_column(texts, "TextColumn.from_texts")

    @classmethod
    def from_arrow(cls, column) -> TextColumn:
        """The column of a ``pyarrow`` string or binary array (chunked or not, nulls not allowed), copied
        chunk by chunk into one buffer: no Python string is made.

        Raises:
            HardnegError: the array holds a null.
        """
        import pyarrow as pa

        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        if any(chunk.null_count for chunk in chunks):
            raise HardnegError("TextColumn.from_arrow: the array holds nulls; fill them (e.g. with '') first.")
        bounds = [_chunk_offsets(chunk) for chunk in chunks]
        sizes = [int(b[-1] - b[0]) for b in bounds]
        data = np.empty(sum(sizes), dtype=np.uint8)
        offsets = np.empty(sum(len(chunk) for chunk in chunks) + 1, dtype=np.int64)
        offsets[0] = row = byte = 0
        for chunk, chunk_bounds, size in zip(chunks, bounds, sizes):
            first = int(chunk_bounds[0])
            data[byte:byte + size] = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[first:first + size] \
                if size else 0
            offsets[row + 1:row + len(chunk) + 1] = chunk_bounds[1:] - first + byte
            row, byte = row + len(chunk), byte + size
        for array_ in (data, offsets):
            array_.flags.writeable = False
        return cls(offsets, data)

    # ----------------------------------------------------------------- files
    def to_arrow(self):
        """The column as a ``pyarrow`` ``large_binary`` array over the same buffer (no copy of the bytes)."""
        import pyarrow as pa

        start = int(self._offsets[0])
        offsets = pa.py_buffer(np.ascontiguousarray(self._offsets - start, dtype=np.int64))
        data = pa.py_buffer(np.ascontiguousarray(self._data[start:int(self._offsets[-1])]))
        return pa.Array.from_buffers(pa.large_binary(), len(self), [None, offsets, data])

    def save(self, path: str | Path) -> Path:
        """Write the column to ``path`` as an Arrow IPC file (one ``large_binary`` column named ``text``)."""
        import pyarrow as pa

        target = Path(path)
        table = pa.table({_COLUMN: self.to_arrow()})
        with atomic_path(target) as temporary:
            with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        return target

    @classmethod
    def open(cls, path: str | Path) -> TextColumn:
        """The column saved at ``path``, memory-mapped (nothing is read until a text is).

        Raises:
            HardnegError: the file is missing or is not a saved text column.
        """
        import pyarrow as pa

        source = Path(path)
        try:
            with pa.ipc.open_file(pa.memory_map(str(source), "r")) as reader:
                table = reader.read_all()
        except FileNotFoundError:
            raise HardnegError(f"{source}: no such text column file.") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise HardnegError(f"{source}: not a text column file ({exc}); write one with TextColumn.save.") from None
        if table.column_names != [_COLUMN] or table.schema.field(_COLUMN).type != pa.large_binary():
            raise HardnegError(f"{source}: expected one large_binary column {_COLUMN!r}, found {table.schema}.")
        column = table.column(_COLUMN)
        if column.num_chunks == 0:
            return cls(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8), path=source)
        if column.num_chunks != 1:
            raise HardnegError(f"{source}: expected one record batch, found {column.num_chunks}; "
                               "write the file with TextColumn.save.")
        chunk = column.chunk(0)  # a view of the mapped file (combining chunks would copy it into memory)
        _, offsets, data = chunk.buffers()
        first = chunk.offset
        offset_view = np.frombuffer(offsets, dtype=np.int64)[first:first + len(chunk) + 1] if offsets is not None \
            else np.zeros(1, dtype=np.int64)
        data_view = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
        return cls(offset_view, data_view, path=source, whole_file=True)

    def update_digest(self, digest) -> None:
        """Feed the column's content (row offsets from 0, then the bytes) to a ``hashlib`` digest, without copying
        the buffer: two columns of the same texts feed the same bytes."""
        digest.update(len(self).to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(self._offsets - self._offsets[0], dtype="<i8"))
        start, stop = int(self._offsets[0]), int(self._offsets[-1])
        for block in range(start, stop, _DIGEST_BLOCK):
            digest.update(self._data[block:min(stop, block + _DIGEST_BLOCK)])

    @property
    def path(self) -> Path | None:
        """The file this column is memory-mapped from, or None when it lives in memory."""
        return self._path

    def rows_of(self, texts: Sequence[str]) -> np.ndarray:
        """The first row holding each of ``texts`` (``int64``; -1 where none does), found by Arrow over the
        stored bytes: no Python dict of the column is built."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pa.array([text.encode("utf-8", "surrogatepass") for text in texts], pa.large_binary())
        found = pc.index_in(wanted, value_set=self.to_arrow()).fill_null(-1).to_numpy(zero_copy_only=False)
        pa.default_memory_pool().release_unused()  # Arrow's allocator would keep the hash table's pages
        return found.astype(np.int64)

    def all_empty(self) -> bool:
        """True when every text is ``""`` (the buffer holds no bytes), without decoding any."""
        return int(self._offsets[-1]) == int(self._offsets[0])

    @property
    def nbytes(self) -> int:
        """Bytes held: the texts' UTF-8 bytes plus 8 per row for the offsets."""
        return int(self._offsets[-1] - self._offsets[0]) + self._offsets.nbytes

    # ----------------------------------------------------------------- sequence
    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> TextColumn: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return TextColumn.from_texts(self[i] for i in range(start, stop, step))
            return TextColumn(self._offsets[start:max(start, stop) + 1], self._data, path=self._path)
        starts = self._starts
        try:
            row = index + len(starts) - 1 if index < 0 else index
            if row < 0:
                raise IndexError
            return self._bytes[starts[row]:starts[row + 1]].tobytes().decode(_ENCODING, _ERRORS)
        except IndexError:
            raise IndexError(f"TextColumn index {index} out of range for {len(self)} texts") from None
        except TypeError:
            raise TypeError(f"TextColumn indices must be integers or slices, not {type(index).__name__}") from None

    def __iter__(self) -> Iterator[str]:
        for text in self.iter_bytes():
            yield text.decode(_ENCODING, _ERRORS)

    def iter_bytes(self) -> Iterator[bytes]:
        """Each text's UTF-8 bytes (``text.encode("utf-8", "surrogatepass")``), in order, without decoding."""
        offsets = self._offsets
        for first in range(0, len(self), _ITER_ROWS):
            bounds = offsets[first:first + _ITER_ROWS + 1].tolist()
            blob = self._data[bounds[0]:bounds[-1]].tobytes()
            base = bounds[0]
            for start, stop in zip(bounds, bounds[1:]):
                yield blob[start - base:stop - base]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextColumn):
            if len(self) != len(other):
                return False
            mine, theirs = self._offsets - self._offsets[0], other._offsets - other._offsets[0]
            return bool(np.array_equal(mine, theirs)) and bool(np.array_equal(
                self._data[self._offsets[0]:self._offsets[-1]], other._data[other._offsets[0]:other._offsets[-1]]))
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking buffers; compare, don't hash

    def __repr__(self) -> str:
        where = f", memory-mapped from {str(self._path)!r}" if self._path is not None else ""
        head = ", ".join(repr(text[:40]) for text in self[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"TextColumn([{head}{more}], {len(self)} texts, {self.nbytes:,} bytes{where})"

    def __reduce__(self):
        if self._whole_file:  # another process on this machine (an asynchronous refresh) maps the same file
            return TextColumn.open, (str(self._path),)
        start, stop = int(self._offsets[0]), int(self._offsets[-1])
        return TextColumn, (self._offsets - start, self._data[start:stop].copy())


class TextColumnBuilder:
    """Appends texts one at a time into a growing UTF-8 buffer; :meth:`finish` gives the :class:`TextColumn`."""

    __slots__ = ("_data", "_offsets")

    def __init__(self) -> None:
        self._data = bytearray()
        self._offsets = array("q", [0])

    def append(self, text: str) -> None:
        self._data += text.encode(_ENCODING, _ERRORS)
        self._offsets.append(len(self._data))

    def extend(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.append(text)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def finish(self) -> TextColumn:
        """The column of everything appended; the builder is left empty."""
        data = np.frombuffer(self._data, dtype=np.uint8) if self._data else np.zeros(0, dtype=np.uint8)
        offsets = np.frombuffer(self._offsets, dtype=np.int64).copy() if len(self._offsets) > 1 \
            else np.zeros(1, dtype=np.int64)
        for array_ in (data, offsets):
            array_.flags.writeable = False
        self._data, self._offsets = bytearray(), array("q", [0])
        return TextColumn(offsets, data)


def _chunk_offsets(chunk) -> np.ndarray:
    """The ``len + 1`` byte offsets of one Arrow string/binary array (32- or 64-bit offsets, sliced or not)."""
    import pyarrow as pa

    wide = pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
    if not (wide or pa.types.is_string(chunk.type) or pa.types.is_binary(chunk.type)):
        raise HardnegError(f"TextColumn.from_arrow: expected a string or binary array, got {chunk.type}.")
    buffer = chunk.buffers()[1]
    if buffer is None or len(chunk) == 0:
        return np.zeros(1, dtype=np.int64)
    raw = np.frombuffer(buffer, dtype=np.int64 if wide else np.int32)
    return raw[chunk.offset:chunk.offset + len(chunk) + 1].astype(np.int64)


def as_text_column(texts: Iterable[str] | TextColumn, what: str) -> TextColumn:
    """``texts`` as a column; an element that is not a ``str`` raises naming ``what``."""
    if isinstance(texts, TextColumn):
        return texts
    builder = TextColumnBuilder()
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise HardnegError(f"{what}: row {row} is a {type(text).__name__} ({text!r:.60}); expected a str.")
        builder.append(text)
    return builder.finish()


__all__ = ["TextColumn", "TextColumnBuilder", "as_text_column"]
