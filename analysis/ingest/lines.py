"""Stream a (possibly compressed) text file as Arrow tables of numbered raw lines.

The splitting is vectorised (``pyarrow.compute.split_pattern`` over megabyte
chunks), never a Python loop per line, and memory stays bounded: a group of
lines is handed to DuckDB and dropped before the next one is read. Nothing is
decoded here: bytes go to DuckDB as BLOBs, and the SQL rejects what is not
UTF-8. What cannot become a normal line carries a reason (``pre``):

* a line longer than ``max_line`` bytes: its first 500 bytes, the rest skipped;
* a compressed stream that ends early or is corrupt: one extra line holding the
  partial tail (possibly empty), so that the damage is counted and visible.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import io
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

SCHEMA = pa.schema([("line", pa.int64()), ("raw", pa.binary()), ("pre", pa.string())])
CHUNK = 8 << 20
MAX_LINE = 1 << 20
RAW_KEEP = 500


#: name suffixes of compressed files
COMPRESSED = (".gz", ".zst", ".zstd")


def strip_compression(name: str) -> str:
    """A file name without its compression suffix (case kept)."""
    for c in COMPRESSED:
        if name.lower().endswith(c):
            return name[: -len(c)]
    return name


def compression_of(path: Path) -> str | None:
    """``gzip``, ``zstd`` or None, from the file name and its magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


def open_decompressed(path: Path) -> BinaryIO:
    """A binary stream of the file's content, decompressed when it is gzip or zstd."""
    kind = compression_of(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "zstd":
        raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return open(path, "rb")


def head(path: Path, n_bytes: int = 65536) -> bytes:
    """The first ``n_bytes`` of the file's decompressed content (less if damaged)."""
    try:
        with open_decompressed(path) as f:
            return f.read(n_bytes)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError):
        return b""


_BROKEN = (EOFError, OSError, zlib.error, zstandard.ZstdError, gzip.BadGzipFile)


def decompressed_chunks(path: Path, chunk: int = CHUNK, *,
                        on_read: Callable[[int], None] | None = None,
                        ) -> Iterator[tuple[bytes, str | None]]:
    """The file's content in chunks, decompressed; a damaged stream ends with one
    ``(b"", reason)``, after everything that could still be decompressed.

    ``on_read(n)`` is told each time ``n`` bytes are read from disk (compressed
    bytes for a compressed file: what a progress line over file sizes counts)."""
    kind = compression_of(path)
    on_read = on_read or (lambda n: None)
    with open(path, "rb") as raw:
        if kind is None:
            while buf := raw.read(chunk):
                on_read(len(buf))
                yield buf, None
            return
        new = (lambda: zlib.decompressobj(wbits=31)) if kind == "gzip" else (
            lambda: zstandard.ZstdDecompressor().decompressobj())
        dec, at_member_end = new(), False
        try:
            while data := raw.read(chunk // 4):
                on_read(len(data))
                while data:
                    out = dec.decompress(data)
                    if out:
                        yield out, None
                    data = dec.unused_data if dec.eof else b""
                    at_member_end = dec.eof
                    if at_member_end and data:  # another gzip member / zstd frame follows
                        dec, at_member_end = new(), False
        except (zlib.error, zstandard.ZstdError) as exc:
            yield b"", f"compressed stream corrupt ({kind}: {exc})"
            return
        if not at_member_end:
            yield b"", f"compressed stream truncated ({kind} ended before its end marker)"


# Arrays are built from buffers: ``pa.array`` imports pandas (1.7 s of CPU, once a process).


def int64_array(values: np.ndarray | list[int]) -> pa.Array:
    """A pyarrow int64 array without nulls."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def bytes_array(items: list[bytes], typ: pa.DataType | None = None) -> pa.Array:
    """A pyarrow binary (or ``typ``: string, for UTF-8 bytes) array without nulls."""
    offsets = np.zeros(len(items) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in items], out=offsets[1:])
    return pa.Array.from_buffers(typ or pa.binary(), len(items),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(items))])


def _batch(first: int, lines: pa.Array, pre: pa.Array | None = None) -> pa.RecordBatch:
    n = len(lines)
    if pre is None:
        pre = pa.nulls(n, pa.string())
    numbers = int64_array(np.arange(first, first + n, dtype=np.int64))
    return pa.record_batch([numbers, lines, pre], schema=SCHEMA)


class LineReader:
    """Iterate over Arrow tables of at most about ``group_bytes`` of numbered lines."""

    def __init__(self, path: Path, *, group_bytes: int = 64 << 20, max_line: int = MAX_LINE):
        self.path = path
        self.group_bytes = group_bytes
        self.max_line = max_line
        self.lines = 0  # lines produced so far
        self.bytes_in = 0  # decompressed bytes consumed so far
        self.disk_bytes = 0  # bytes of the file read from disk so far (compressed, if it is)

    def __iter__(self) -> Iterator[pa.Table]:
        batches: list[pa.RecordBatch] = []
        size = 0
        for batch in self._batches():
            batches.append(batch)
            size += batch.nbytes
            if size >= self.group_bytes:
                yield pa.Table.from_batches(batches, SCHEMA)
                batches, size = [], 0
        if batches:
            yield pa.Table.from_batches(batches, SCHEMA)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        rest = b""
        skipping = False  # inside an over-long line whose head was already emitted
        for buf, broken in decompressed_chunks(self.path, on_read=self._read):
            if broken is not None:
                yield self._one(rest[:RAW_KEEP], broken)
                return
            self.bytes_in += len(buf)
            if skipping:
                cut = buf.find(b"\n")
                if cut < 0:
                    continue
                buf, skipping = buf[cut + 1 :], False
            data = rest + buf if rest else buf
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
            else:
                body, rest = data[:cut], data[cut + 1 :]
                yield from self._split(body)
            if len(rest) > self.max_line:
                yield self._one(rest[:RAW_KEEP], self._too_long())
                rest, skipping = b"", True
        if rest and not skipping:
            yield from self._split(rest)

    def _read(self, n: int) -> None:
        self.disk_bytes += n

    def _too_long(self) -> str:
        return f"line longer than {self.max_line} bytes (kept its first {RAW_KEEP})"

    def _one(self, raw: bytes, reason: str) -> pa.RecordBatch:
        batch = _batch(self.lines + 1, bytes_array([raw]),
                       bytes_array([reason.encode()], pa.string()))
        self.lines += 1
        return batch

    def _split(self, body: bytes) -> Iterator[pa.RecordBatch]:
        lines = pc.split_pattern(bytes_array([body]), b"\n").flatten()
        lengths = pc.binary_length(lines)
        if pc.max(lengths).as_py() > self.max_line:
            long = pc.greater(lengths, self.max_line)
            pre = pc.if_else(long, bytes_array([self._too_long().encode()], pa.string())[0],
                             pa.nulls(1, pa.string())[0])
            lines = pc.if_else(long, pc.binary_slice(lines, 0, RAW_KEEP), lines)
            batch = _batch(self.lines + 1, lines, pre)
        else:
            batch = _batch(self.lines + 1, lines)
        self.lines += len(lines)
        yield batch


@dataclass(frozen=True)
class LineStats:
    """Physical lines of a file's content, its longest line, the 1-based numbers of
    its whitespace-only lines (which DuckDB's ``read_json`` skips) and of the lines
    over the bounds screen (``line_stats``' ``openers``, ``longer``); None if damaged."""

    lines: int
    longest: int
    blank: tuple[int, ...] = ()
    suspect: tuple[int, ...] = ()


#: the bytes DuckDB's JSON reader skips as whitespace on a line of its own
BLANK_BYTES = b" \t\r\x0b\x0c"
_IS_BLANK_START = np.zeros(256, dtype=bool)
_IS_BLANK_START[list(BLANK_BYTES + b"\n")] = True


def _is_blank(data: bytes) -> bool:
    return not data.translate(None, BLANK_BYTES)


def _screened(arr: np.ndarray, ends: np.ndarray, openers: int, longer: int, carry: int,
              run: int, first: int) -> tuple[list[int], int]:
    """Line numbers (the line ending at ``ends[k]`` is ``first + k``) with more than
    ``openers`` of ``{``/``[`` or more than ``longer`` bytes; the first line also counts
    the ``carry`` brackets and ``run`` bytes of the chunks before. Returns them and the
    brackets carried into the next chunk. (``x | 32 == 123`` is ``{`` or ``[``: one
    pass over the bytes.)"""
    step = 1 << 20  # in slices: two temporaries of the chunk's size would cost 16 MB
    hits = np.concatenate([np.flatnonzero((arr[i:i + step] | 32) == 123) + i
                           for i in range(0, len(arr), step)] or [np.zeros(0, np.int64)])
    upto = np.searchsorted(hits, ends)
    per_line = np.diff(upto, prepend=0)
    if not len(ends):
        return [], carry + len(hits)
    per_line[0] += carry
    size = np.diff(ends, prepend=-1) - 1
    size[0] += run
    found = np.flatnonzero((per_line > openers) | (size > longer))
    return [first + int(k) for k in found], len(hits) - int(upto[-1])


def line_stats(path: Path, openers: int = 0, longer: int = 0) -> LineStats | None:
    """Count lines (a last line without newline counts), find the longest and the
    whitespace-only ones, vectorised; None when the compressed stream is damaged.
    With ``openers`` (and ``longer``), also the lines with more ``{``/``[`` than that
    (or more bytes): the bounds screen of JSON lines.

    Only lines that start with a blank byte (or are empty) are looked at one by one.
    """
    n, last, run, longest = 0, b"\n", 0, 0
    blank: list[int] = []
    suspect: list[int] = []
    cur_blank = True  # the line being read so far is whitespace only
    carry = 0  # brackets of the line being read so far
    limit = longer or sys.maxsize
    for buf, broken in decompressed_chunks(path):
        if broken is not None:
            return None
        arr = np.frombuffer(buf, np.uint8)
        ends = np.flatnonzero(arr == 10)
        if openers:
            found, carry = _screened(arr, ends, openers, limit, carry, run, n + 1)
            suspect += found
        if len(ends):
            gaps = np.diff(ends)
            longest = max(longest, run + int(ends[0]), int(gaps.max()) - 1 if len(gaps) else 0)
            if cur_blank and _is_blank(buf[: int(ends[0])]):
                blank.append(n + 1)
            starts = ends[:-1] + 1
            for k in np.flatnonzero(_IS_BLANK_START[arr[starts]]):
                if _is_blank(buf[int(starts[k]) : int(ends[k + 1])]):
                    blank.append(n + int(k) + 2)
            run = len(buf) - int(ends[-1]) - 1
            cur_blank = _is_blank(buf[int(ends[-1]) + 1 :])
        else:
            run += len(buf)
            cur_blank = cur_blank and _is_blank(buf)
        n += len(ends)
        last = buf[-1:]
    if last != b"\n" and last and cur_blank:
        blank.append(n + 1)
    if last != b"\n" and last and openers and (carry > openers or run > limit):
        suspect.append(n + 1)
    return LineStats(n + (last != b"\n"), max(longest, run), tuple(blank), tuple(suspect))


def pick_lines(path: Path, wanted: list[int]) -> pa.Table:
    """The lines numbered ``wanted`` (sorted, 1-based) of the file's content, as numbered
    raw lines (``SCHEMA``); the file is read up to the last of them only. For a few lines
    of a big file: newlines are found vectorised and only the wanted lines are cut out."""
    numbers: list[int] = []
    raws: list[bytes] = []
    n, i, partial = 0, 0, b""  # lines ended before this chunk; next wanted; its start
    for buf, broken in decompressed_chunks(path):
        if broken is not None or i >= len(wanted):
            break
        ends = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
        j = bisect.bisect_right(wanted, n + len(ends), lo=i)
        for w in wanted[i:j]:
            k = w - n - 1  # index in ``ends`` of the wanted line's end
            start = int(ends[k - 1]) + 1 if k else 0
            numbers.append(w)
            raws.append((partial if k == 0 else b"") + buf[start : int(ends[k])])
        i = j
        wanted_now = i < len(wanted) and wanted[i] == n + len(ends) + 1
        if not wanted_now:
            partial = b""
        elif len(ends):
            partial = buf[int(ends[-1]) + 1 :]
        else:
            partial += buf
        n += len(ends)
    if i < len(wanted) and wanted[i] == n + 1 and partial:
        numbers.append(n + 1)
        raws.append(partial)
    return pa.Table.from_batches(
        [_batch(0, bytes_array(raws)).set_column(0, "line", int64_array(numbers))], SCHEMA)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file's bytes as stored (compressed or not)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(1 << 20):
            h.update(buf)
    return h.hexdigest()


def text_head(path: Path, n_lines: int = 5, n_bytes: int = 65536) -> list[str]:
    """The first non-blank lines of the file, decoded leniently (for format detection)."""
    data = head(path, n_bytes)
    text = data.decode("utf-8", errors="replace")
    lines = [ln for ln in io.StringIO(text).read().splitlines() if ln.strip()]
    return lines[:n_lines]
