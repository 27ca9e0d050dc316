"""Weights as content-addressed chunks: slicing, hashing, and binary COPY in and out.

Each weight or artifact is cut into slices of ``chunk_size`` bytes counted from its own
start, so chunk boundaries follow tensor boundaries: a tensor that did not change hashes
to the same chunks in every version, and identical chunks anywhere are stored once.

Saving streams: threads hash slices ahead (hashlib releases the GIL) while the caller's
thread asks which chunks the server already has and COPYs the others, one autocommitted
COPY per batch, so chunks are written in their own short transactions and only a bounded
window of slices is in memory. Loading streams the other way: a binary COPY returns the
chunks in manifest order, the bytes go straight to their destination, and threads verify
each hash there while the next chunks arrive. Nothing is unpickled: an array is rebuilt
from raw bytes, a dtype and a shape.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .. import _retry
from ..errors import InvalidInputError, ModelIntegrityError

CHUNK_SIZE = 4 << 20     # a few MiB: large enough for COPY, small enough to dedupe tensors
BATCH_BYTES = 64 << 20   # one COPY (one transaction) per batch of chunks
AHEAD = 16               # slices hashed ahead of the writer (memory: AHEAD * chunk_size)
HASH_THREADS = 2         # sha-256 runs ~2 GB/s a core: hashing must keep up with COPY either way

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


@dataclass
class Blob:
    """One weight or artifact to store: what it is, and where its bytes come from."""

    kind: str                                   # 'weight' or 'artifact'
    name: str
    dtype: str                                  # see _blobs.dtype_text
    shape: tuple[int, ...]
    nbytes: int
    slices: Callable[[int], Iterator[Any]]      # chunk_size -> successive byte buffers
    expect: list[bytes] | None = None           # digests an export promises (import checks)


@dataclass
class Entry:
    """One manifest entry: a blob by its chunks."""

    kind: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    chunk_size: int
    chunks: list[bytes] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "nbytes": self.nbytes, "chunk_size": self.chunk_size, "chunks": [c.hex() for c in self.chunks]}

    def chunk_length(self, i: int) -> int:
        return min(self.chunk_size, self.nbytes - i * self.chunk_size)


@dataclass
class WriteStats:
    chunks: int = 0            # chunks named by the manifest
    written: int = 0           # chunks this save sent to the server
    written_bytes: int = 0
    total_bytes: int = 0


# -- saving ------------------------------------------------------------------------------


# told (bytes done, bytes in all) as a save or load goes: db.models' progress=
Progress = Callable[[int, int], Any]


def write(conn: psycopg.Connection, blobs: list[Blob], *, chunk_size: int = CHUNK_SIZE,
          batch_bytes: int = BATCH_BYTES, progress: Progress | None = None) -> tuple[list[Entry], WriteStats]:
    """Store every chunk of ``blobs`` that the server lacks; return the manifest entries."""
    entries = [Entry(b.kind, b.name, b.dtype, b.shape, b.nbytes, chunk_size) for b in blobs]
    total = sum(b.nbytes for b in blobs)
    stats = WriteStats()
    known: set[bytes] = set()   # stored, or sent by this save
    batch: dict[bytes, Any] = {}
    size = 0
    for i, digest, data in _hashed(blobs, chunk_size):
        entries[i].chunks.append(digest)
        stats.chunks += 1
        stats.total_bytes += len(data)
        if progress is not None:
            progress(stats.total_bytes, total)
        if digest in known or digest in batch:
            continue
        batch[digest] = data
        size += len(data)
        if size >= batch_bytes:
            _flush(conn, batch, known, stats)
            batch, size = {}, 0
    _flush(conn, batch, known, stats)
    return entries, stats


def _hashed(blobs: list[Blob], chunk_size: int) -> Iterator[tuple[int, bytes, Any]]:
    """(blob index, sha-256, slice) for every slice, in order, hashed by HASH_THREADS
    threads up to AHEAD slices ahead of the caller."""
    pending: deque[tuple[int, int, Any, Future[bytes]]] = deque()

    def settled() -> tuple[int, bytes, Any]:
        i, k, data, future = pending.popleft()
        digest, expect = future.result(), blobs[i].expect
        if expect is not None and (k >= len(expect) or expect[k] != digest):
            raise InvalidInputError(f"{blobs[i].kind} {blobs[i].name!r}: chunk {k + 1} does not match "
                                    "the manifest's hash")
        return i, digest, data

    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="rowver-hash") as pool:
        try:
            for i, blob in enumerate(blobs):
                seen = 0
                for k, data in enumerate(blob.slices(chunk_size)):
                    seen += len(data)
                    pending.append((i, k, data, pool.submit(_sha256, data)))
                    if len(pending) >= AHEAD:
                        yield settled()
                if seen != blob.nbytes:
                    raise InvalidInputError(f"{blob.kind} {blob.name!r} gave {seen} bytes, expected {blob.nbytes}")
            while pending:
                yield settled()
        finally:
            for *_, future in pending:
                future.cancel()  # the caller stopped or failed: hash nothing more


def _flush(conn: psycopg.Connection, batch: dict[bytes, Any], known: set[bytes], stats: WriteStats) -> None:
    """COPY the chunks of ``batch`` the server does not have, in one autocommitted COPY; when
    another save stored one of them meanwhile (a unique violation), ask again (rowver._retry)."""

    def attempt(replay: int) -> None:
        if not batch:
            return
        have = {bytes(r[0]) for r in conn.execute(
            "select sha256 from rowver.model_chunk where sha256 = any(%s)", (list(batch),))}
        missing = [(d, data) for d, data in batch.items() if d not in have]
        known.update(have)
        if not missing:
            return
        with conn.cursor() as cur, cur.copy("copy rowver.model_chunk (sha256, data) from stdin (format binary)") as cp:
            cp.write(_COPY_HEADER)
            for digest, data in missing:
                cp.write(struct.pack("!hi", 2, 32) + digest + struct.pack("!i", len(data)))
                cp.write(data)
            cp.write(_COPY_TRAILER)
        known.update(d for d, _ in missing)
        stats.written += len(missing)
        stats.written_bytes += sum(len(data) for _, data in missing)

    FLUSH_RETRY.run(attempt, lambda exc: _retry.sqlstate(exc) == _retry.UNIQUE_VIOLATION)


# A chunk COPY that met another save's copy of a chunk asks again which are missing: twice more.
FLUSH_RETRY = _retry.Policy(retries=2, base=0.01)


# -- loading -----------------------------------------------------------------------------


def read(conn: psycopg.Connection, entries: list[Entry], sink: Callable[[int, int, memoryview], Any], *,
         what: str, verify: bool = True, progress: Progress | None = None) -> None:
    """Stream every chunk of ``entries`` to ``sink(entry index, offset, data)`` in one
    binary COPY, verifying each hash in threads while the next chunks arrive. ``data`` is
    a view of libpq's own buffer: no intermediate copy is made.

    A sink that keeps the bytes (a load's arrays) returns the view it copied them into:
    the hash is taken there, as late as the hashing threads get to it, so the transfer
    never waits for them and libpq's buffer is freed at once. Otherwise (a file) ``data``
    itself is hashed, and at most AHEAD such views are held.

    One connection: a second one, splitting the chunks, measured slower on two cores (a
    load waits for its hashing, not for the server)."""
    where = [(i, k) for i, e in enumerate(entries) for k in range(len(e.chunks))]
    if not where:
        return
    digests = [entries[i].chunks[k] for i, k in where]
    query = "copy (select data from rowver.model_chunk_data(%s::bytea[])) to stdout (format binary)"
    pending: deque[tuple[Future[bytes], int, int]] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit or (pending and pending[0][0].done()):
            future, i, k = pending.popleft()
            if future.result() != entries[i].chunks[k]:
                raise ModelIntegrityError(_where(what, entries[i], k) + " does not match its sha-256: "
                                          "the stored chunk is corrupt")

    got = done = 0
    total = sum(e.nbytes for e in entries)
    pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="rowver-verify")
    try:
        with conn.cursor() as cur, cur.copy(query, (digests,)) as cp:
            for data in _fields(cp):
                if got >= len(where):
                    raise ModelIntegrityError(f"{what}: more chunks came back than were asked for")
                i, k = where[got]
                got += 1
                entry = entries[i]
                if data is None:
                    raise ModelIntegrityError(_where(what, entry, k) + " is missing from rowver.model_chunk")
                if len(data) != entry.chunk_length(k):
                    raise ModelIntegrityError(_where(what, entry, k) + f" has {len(data)} bytes, "
                                              f"expected {entry.chunk_length(k)}: the stored chunk is corrupt")
                kept = sink(i, k * entry.chunk_size, data)
                if progress is not None:
                    done += len(data)
                    progress(done, total)
                if verify:
                    pending.append((pool.submit(_sha256, data if kept is None else kept), i, k))
                settle(AHEAD if kept is None else len(where))
        settle(0)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, hash nothing more
    if got != len(where):
        raise ModelIntegrityError(f"{what}: {got} of {len(where)} chunks came back")


def _fields(cp: Any) -> Iterator[memoryview | None]:
    """The one field of each row of a binary COPY of one bytea column, as views of the
    messages libpq received (a message is one row; the first also carries the header)."""
    first = True
    while data := cp.read():
        view = memoryview(data)
        if first:
            if bytes(view[:11]) != _COPY_HEADER[:11]:
                raise ModelIntegrityError("unexpected COPY header from the server")
            view = view[19 + struct.unpack_from("!i", view, 15)[0]:]
            first = False
            if not len(view):
                continue
        count = struct.unpack_from("!h", view, 0)[0]
        if count == -1:
            continue  # the trailer; read() returns empty next
        if count != 1:
            raise ModelIntegrityError(f"unexpected COPY row with {count} fields")
        size = struct.unpack_from("!i", view, 2)[0]
        yield None if size < 0 else view[6:6 + size]


def _sha256(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


def _where(what: str, entry: Entry, k: int) -> str:
    return (f"{what}: chunk {k + 1} of {len(entry.chunks)} of {entry.kind} {entry.name!r} "
            f"(sha256 {entry.chunks[k].hex()[:16]}…)")
