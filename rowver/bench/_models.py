"""Model store throughput against the physical limit, measured in the same run.

The limit is binary COPY of the same bytes, in the same chunk-sized rows, into and out of
a plain bytea table. Rounds interleave raw COPY and the store, each on fresh random
weights; every timed step starts with no dirty pages left from the one before and with
its memory backed (``_settle``); figures are medians. Reported: MB/s each way and the ratios,
re-saving unchanged weights against the first save, and the bytes a save with 10% of
its tensors changed writes. Run it against a server, not in the test suite:

    python -c "from rowver.bench._models import bench_models; print(bench_models(URL, 1024))"
"""

from __future__ import annotations

import hashlib
import os
import statistics
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql

import rowver

from .._server import server_url_for
from ..models._chunks import CHUNK_SIZE

if TYPE_CHECKING:
    from ..models import Models

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)


def bench_models(url: str, size_mb: int = 1024, *, tensors: int = 20, rounds: int = 6,
                 chunk_size: int = CHUNK_SIZE) -> dict[str, Any]:
    """Save/load throughput of ``size_mb`` MiB of float32 weights in ``tensors`` tensors
    against raw binary COPY, in a scratch database on the same server, dropped afterwards:
    the rounds write ``rounds + 2`` times ``size_mb``, which the model store keeps (chunks
    named by history stay until retention). A role that may not create databases measures
    in ``url``'s database instead, and the models named rowver_bench_<random> stay there."""
    name = f"rowver_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            return {**_measure(url, name, size_mb, tensors, rounds, chunk_size), "database": "given", "model": name}
        try:
            scratch = server_url_for(url, name)
            with rowver.connect(scratch) as db:
                db.init()
            return {**_measure(scratch, name, size_mb, tensors, rounds, chunk_size), "database": "scratch, dropped"}
        finally:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _measure(url: str, name: str, size_mb: int, tensors: int, rounds: int, chunk_size: int) -> dict[str, Any]:
    db = rowver.connect(url)
    conn = db.conn
    models = db.models  # one handle: it remembers what the last save wrote
    rng = np.random.default_rng()
    per = size_mb * (1 << 20) // 4 // tensors
    times: dict[str, list[float]] = {k: [] for k in ("raw_in", "save", "raw_out", "raw_out_mem", "load")}
    conn.execute("drop table if exists rowver_bench_raw")
    conn.execute("create table rowver_bench_raw (id bigint primary key, data bytea not null)")
    try:
        for r in range(rounds):
            weights = {f"layer{i:02d}.weight": rng.random(per, dtype=np.float32) for i in range(tensors)}
            nbytes = sum(w.nbytes for w in weights.values())
            _settle(conn, nbytes)
            times["raw_in"].append(_timed(_raw_copy_in, conn, weights, chunk_size))
            _settle(conn, nbytes)
            times["save"].append(_timed(models.save, name, weights=weights, chunk_size=chunk_size))
            _settle(conn, nbytes)
            times["raw_out"].append(_timed(_raw_copy_out, conn, None))
            # both of these fill fresh memory; alternate who goes first
            for step in ("raw_out_mem", "load")[:: 1 if r % 2 == 0 else -1]:
                _settle(conn, nbytes)
                t = time.perf_counter()
                if step == "load":
                    loaded = models.load(name)
                    times["load"].append(time.perf_counter() - t)
                    assert all(np.array_equal(loaded.weights[k], w) for k, w in weights.items())
                    del loaded
                else:
                    _raw_copy_out(conn, [w.nbytes for w in weights.values()])
                    times["raw_out_mem"].append(time.perf_counter() - t)
            conn.execute("truncate rowver_bench_raw")

        _settle(conn, nbytes)
        resave = _timed(models.save, name, weights=weights, chunk_size=chunk_size)
        unchanged_written = _written(models)
        changed = dict(weights)
        for k in list(weights)[: max(1, tensors // 10)]:
            changed[k] = weights[k] + np.float32(1)
        before = _chunk_bytes(conn)
        models.save(name, weights=changed, chunk_size=chunk_size)
        written = _written(models)
        growth = _chunk_bytes(conn) - before
    finally:
        conn.execute("drop table if exists rowver_bench_raw")
        db.close()

    mb = nbytes / 1e6
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "server": _server(url), "size_mb": round(mb, 1), "tensors": tensors, "chunk_size": chunk_size,
        # a load hashes every byte on top of a raw COPY's work: on few cores this bounds it
        "cpus": os.cpu_count(), "sha256_mb_s": _sha256_mb_s(weights, chunk_size),
        "rounds": rounds,
        "raw_copy_in_mb_s": mb / med["raw_in"], "save_mb_s": mb / med["save"],
        "save_vs_raw_copy_in": med["raw_in"] / med["save"],
        "raw_copy_out_mb_s": mb / med["raw_out"], "raw_copy_out_to_memory_mb_s": mb / med["raw_out_mem"],
        "load_mb_s": mb / med["load"],
        "load_vs_raw_copy_out": med["raw_out"] / med["load"],
        "load_vs_raw_copy_out_to_memory": med["raw_out_mem"] / med["load"],
        "first_save_s": med["save"], "resave_unchanged_s": resave,
        "resave_unchanged_vs_first_save": resave / med["save"],
        "resave_unchanged_written_bytes": unchanged_written,
        "model_bytes": nbytes,
        "resave_10pct_written_bytes": written, "resave_10pct_written_fraction": written / nbytes,
        "resave_10pct_relation_growth_bytes": growth,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _written(models: Models) -> int:
    """The bytes the last save sent (save always records them)."""
    assert models.last_write is not None
    return models.last_write.written_bytes


def _timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def _settle(conn: psycopg.Connection, nbytes: int) -> None:
    """Before a timed step over ``nbytes``: no dirty pages left to write out while it runs
    (a read after a 1 GB write otherwise shares the cores with the write-back), and
    memory backed by the host (see ``_back_memory``)."""
    _checkpoint(conn)
    _back_memory(2 * nbytes)


def _back_memory(nbytes: int) -> None:
    """Touch ``nbytes`` of fresh memory and free it again, so that the step timed next
    finds its memory backed by the host. A VM that hands free memory back to its host
    (free page reporting: Firecracker's guests, where this was built, report memory free
    for ~2 s) makes the first touch of such memory cost up to ~2 s per GB, 0.05 s once
    backed; that is the VM's cost, not the step's, and it would land on whichever step
    happens to come first after a pause (a 1 GB load: 1.0 s or 2.1 s by its position)."""
    scratch = np.empty(nbytes, np.uint8)
    scratch[::4096] = 1


def _checkpoint(conn: psycopg.Connection) -> None:
    try:
        conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:
        pass  # not ours to ask for; the figures are noisier


def _raw_copy_in(conn: psycopg.Connection, weights: dict[str, np.ndarray], chunk_size: int) -> None:
    """The limit: the same bytes, in the same chunk-sized rows, by one binary COPY."""
    n = 0
    with conn.cursor() as cur, cur.copy("copy rowver_bench_raw (id, data) from stdin (format binary)") as cp:
        cp.write(_HEADER)
        for w in weights.values():
            view = w.reshape(-1).view(np.uint8).data
            for start in range(0, len(view), chunk_size):
                part = view[start:start + chunk_size]
                cp.write(struct.pack("!hiqi", 2, 8, n, len(part)))
                cp.write(part)
                n += 1
        cp.write(struct.pack("!h", -1))


def _raw_copy_out(conn: psycopg.Connection, sizes: list[int] | None) -> None:
    """The limit the other way: rows read and dropped, or (``sizes``) copied into arrays
    of those sizes, as a load must."""
    dest = [np.empty(n, np.uint8) for n in sizes] if sizes else []
    i = offset = 0
    with conn.cursor() as cur, cur.copy("copy (select data from rowver_bench_raw order by id) to stdout"
                                        " (format binary)") as cp:
        cp.set_types(["bytea"])
        while (row := cp.read_row()) is not None:
            if dest:
                data = row[0]
                dest[i][offset:offset + len(data)] = np.frombuffer(data, np.uint8)
                offset += len(data)
                if offset == dest[i].nbytes:
                    i, offset = i + 1, 0


def _sha256_mb_s(weights: dict[str, np.ndarray], chunk_size: int) -> float:
    """One core's sha-256 throughput over these weights, in the store's slices."""
    t = time.perf_counter()
    for w in weights.values():
        view = w.reshape(-1).view(np.uint8).data
        for start in range(0, len(view), chunk_size):
            hashlib.sha256(view[start:start + chunk_size])
    return sum(w.nbytes for w in weights.values()) / 1e6 / (time.perf_counter() - t)


def _chunk_bytes(conn: psycopg.Connection) -> int:
    return int(conn.execute("select pg_total_relation_size('rowver.model_chunk')").fetchone()[0])  # type: ignore[index]


def _server(url: str) -> str:
    with psycopg.connect(url) as c:
        return str(c.execute("show server_version").fetchone()[0])  # type: ignore[index]
