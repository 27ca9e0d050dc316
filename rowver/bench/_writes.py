"""The write figures: 1 (bulk UPDATE), 2 (concurrent single-row UPDATEs), 6 (sync against
COPY), 7 (history bytes) and 9 (pgbench TPC-B)."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
import psycopg.conninfo
from psycopg import sql

from .. import _frames
from . import _pgbench
from ._core import _CREATE, _OPTIONS, _ROUND_UPDATE, Figure, _Core, _expect, _median, _ratio, _round

if TYPE_CHECKING:
    import pandas as pd


# figure 1's wider row (from the writers issue): an int, an md5 text, a float and a time
_WIDE_CREATE = """create table {} (
  id integer primary key,
  a  integer not null,
  b  text not null,
  c  double precision not null,
  d  timestamptz not null
)"""
_WIDE_FILL = """insert into {} (id, a, b, c, d)
select i, i, md5(i::text), i / 7.0, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
  from generate_series(1, %s) i"""


class _Writes(_Core):
    """Figures 1, 2, 6, 7 and 9."""

    # -- 1: bulk update ---------------------------------------------------------------

    def _bulk_update(self) -> Figure:
        times = self._bulk_rounds("figure 1", _ROUND_UPDATE, self.plain, self.ver, self.hist)
        p, v = _median(times["plain"]), _median(times["versioned"])
        return Figure(1, "bulk_update", "bulk UPDATE of 10% of rows, through triggers", "s", p, v,
                      _ratio(v, p), "<=", 2.5,
                      detail={"rows_per_update": self.s.rows // 10, "rounds": self.s.rounds,
                              "plain_s": _round(times["plain"]), "versioned_s": _round(times["versioned"])})

    def _bulk_update_wide(self) -> Figure:
        s = self.s
        self.say(f"figure 1: loading {s.wide_rows:,} wider rows into a plain and a versioned table")
        plain, ver = self._q("wide_plain"), self._q("wide_versioned")
        for t in (plain, ver):
            self.conn.execute(sql.SQL(_WIDE_CREATE).format(t))
            self.conn.execute(sql.SQL(_WIDE_FILL).format(t), (s.wide_rows,))
            self.conn.execute(sql.SQL("vacuum (freeze, analyze) {}").format(t))
        name = self._text("wide_versioned")
        self.conn.execute("select rowver.enable(%s::regclass, rewrite => %s::boolean)", (name, s.rewrite))
        hist = self.conn.execute("select history_name from rowver.versioned where relid = %s::regclass",
                                 (name,)).fetchone()[0]  # type: ignore[index]
        times = self._bulk_rounds("figure 1, wider row", "update {} set a = a + 1 where id %% 10 = %s",
                                  plain, ver, self._q(hist))
        p, v = _median(times["plain"]), _median(times["versioned"])
        return Figure(1, "bulk_update_wide", "bulk UPDATE of 10% of wider rows (int, md5 text, float, time)", "s",
                      p, v, _ratio(v, p), "<=", 2.5,
                      detail={"rows_per_update": s.wide_rows // 10, "rounds": s.rounds,
                              "plain_s": _round(times["plain"]), "versioned_s": _round(times["versioned"])})

    def _bulk_rounds(self, what: str, update: str, plain: sql.Composable, ver: sql.Composable,
                     hist: sql.Composable) -> dict[str, list[float]]:
        """Time `update` (taking the round's remainder) on each side, round by round."""
        times: dict[str, list[float]] = {"plain": [], "versioned": []}
        for r in range(self.s.rounds):
            self.say(f"{what}: bulk update, round {r + 1} of {self.s.rounds}")
            for side, t in (("plain", plain), ("versioned", ver)):
                self._checkpoint()
                times[side].append(self._timed(sql.SQL(update).format(t), (r % 10,)))
            self._after_write()
            self._vacuum(plain, ver, hist)
        return times

    # -- 7: history bytes ----------------------------------------------------------------

    def _history_bytes(self, plain_row_bytes: float) -> Figure:
        self.say("figure 7: history bytes per changed row")
        rows, heap, index = (a - b for a, b in zip(self._history_size(), self._hist0))
        per_row = heap / rows if rows else None
        return Figure(7, "history_bytes_per_changed_row",
                      "history heap bytes per changed row (index apart)", "bytes/row",
                      plain_row_bytes, per_row, _ratio(per_row, plain_row_bytes), "<=", 1.3,
                      detail={"history_rows": rows, "history_heap_bytes": heap, "history_index_bytes": index,
                              "history_index_bytes_per_row": index / rows if rows else None,
                              "plain_row_bytes": "heap bytes per row of the freshly loaded plain table"})

    def _unchanged_bytes(self) -> Figure:
        self.say("figure 7: history bytes per unchanged row")
        conn = self.conn
        size = sql.SQL("select pg_total_relation_size({}::regclass), (select count(*) from {}),"
                       " (select count(*) from rowver.changeset)").format(
            sql.Literal(self.hist.as_string(conn)), self.hist)
        bytes0, rows0, sets0 = conn.execute(size).fetchone()  # type: ignore[misc]
        n = conn.execute(sql.SQL("update {} set qty = qty, updated_at = updated_at where id % 10 = 0").format(
            self.ver)).rowcount
        self._after_write()
        bytes1, rows1, sets1 = conn.execute(size).fetchone()  # type: ignore[misc]
        per_row = (bytes1 - bytes0) / n if n else None
        return Figure(7, "history_bytes_per_unchanged_row",
                      "history bytes per unchanged row (a no-op UPDATE of 10%)", "bytes/row",
                      0.0, per_row, per_row, "<=", 0.0,
                      detail={"rows_updated": n, "history_rows_added": rows1 - rows0,
                              "changesets_added": sets1 - sets0,
                              "ratio": "the versioned side's bytes per row itself (the plain side writes no history)"})

    # -- 2: concurrent single-row updates ------------------------------------------------------

    def _throughput(self) -> Figure:
        s = self.s
        rates: dict[str, list[float]] = {"plain": [], "versioned": []}
        conflicts = {"plain": 0, "versioned": 0}
        conns = [self._connect(prepared=True) for _ in range(s.clients)]
        for i in range(s.throughput_reps):
            for side, t in (("plain", self.plain), ("versioned", self.ver)):
                self.say(f"figure 2: {s.clients} clients updating single rows ({side}), "
                         f"run {i + 1} of {s.throughput_reps}")
                self._checkpoint()
                rate, retried = self._clients(self._updaters(conns, t), seed=i)
                rates[side].append(rate)
                conflicts[side] += retried
                if side == "versioned":
                    self._after_write()
        p, v = _median(rates["plain"]), _median(rates["versioned"])
        cpu = self._backend_cpu()
        return Figure(2, "concurrent_updates", f"single-row UPDATE throughput, {s.clients} clients, through triggers",
                      "updates/s", p, v, _ratio(v, p), ">=", 0.70,
                      detail={"clients": s.clients, "seconds_per_run": s.seconds, "runs": s.throughput_reps,
                              "plain_per_s": _round(rates["plain"], 1), "versioned_per_s": _round(rates["versioned"], 1),
                              "serialization_failures": conflicts, **cpu})

    def _backend_cpu(self) -> dict[str, float]:
        """The server's CPU time per single-row UPDATE, one client, each side in turn: read
        from /proc for the serving backend, where the server runs on this machine (else
        nothing)."""
        conn = self._connect(prepared=True)
        pid = conn.info.backend_pid
        if not _is_local_backend(conn, pid):
            return {}
        spent: dict[str, list[float]] = {"plain": [], "versioned": []}
        rng = random.Random(7)
        for i in range(3):
            for side, t in (("plain", self.plain), ("versioned", self.ver)):
                self.say(f"figure 2: server CPU per single-row update ({side}), run {i + 1} of 3")
                update = self._updaters([conn], t)[0]
                for _ in range(20):
                    update(rng.randint(1, self.s.rows))
                before = _cpu_seconds(pid)
                for _ in range(self.s.cpu_updates):
                    update(rng.randint(1, self.s.rows))
                spent[side].append((_cpu_seconds(pid) - before) / self.s.cpu_updates * 1e6)
        self._after_write()
        return {"server_cpu_us_per_update_plain": _median(spent["plain"]),
                "server_cpu_us_per_update_versioned": _median(spent["versioned"])}

    def _updaters(self, conns: list[psycopg.Connection], table: sql.Composable) -> list[Callable[[int], None]]:
        """One function per client: update the row with this key, in one prepared statement."""
        statement = sql.SQL("update {} set qty = qty + 1 where id = %s").format(table)

        def updater(conn: psycopg.Connection) -> Callable[[int], None]:
            cur = conn.cursor()

            def update(key: int) -> None:
                cur.execute(statement, (key,), prepare=True)
            return update
        return [updater(c) for c in conns]

    @staticmethod
    def _retryable(exc: psycopg.Error) -> bool:
        """A serialization failure (40001): counted, not fatal. None is expected: single-row
        updates in READ COMMITTED raise none on plain tables, and so none on versioned ones."""
        return exc.sqlstate == "40001"

    def _clients(self, updaters: list[Callable[[int], None]], seed: int) -> tuple[float, int]:
        """Updates per second from one thread per updater, running for settings.seconds."""
        n = len(updaters)
        rows = self.s.rows
        done = [0] * n
        retried = [0] * n
        ended = [0.0] * n
        errors: list[BaseException] = []
        start = threading.Barrier(n + 1)
        stop = threading.Event()
        self._stop = stop

        def client(i: int) -> None:
            rng = random.Random(seed * 1000 + i)

            def update() -> bool:
                """One update of a random row; False when another client's write came first."""
                try:
                    updaters[i](rng.randint(1, rows))
                    return True
                except psycopg.Error as exc:
                    if not self._retryable(exc):
                        raise
                    return False

            try:
                for _ in range(20):  # warm: prepare, and touch the path once
                    update()
                start.wait()
                count = 0
                while not stop.is_set():
                    if update():
                        count += 1
                    else:
                        retried[i] += 1
                done[i] = count
                ended[i] = time.perf_counter()
            except threading.BrokenBarrierError:
                pass
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                start.abort()

        self._threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()
        try:
            start.wait()
            t0 = time.perf_counter()
            stop.wait(self.s.seconds)
        except threading.BrokenBarrierError:
            t0 = time.perf_counter()
        finally:
            stop.set()
            for t in self._threads:
                t.join()
            self._threads = []
        if errors:
            raise errors[0]
        return sum(done) / (max(ended) - t0), sum(retried)

    # -- 6: sync against COPY --------------------------------------------------------------------

    def _sync(self) -> Figure:
        import rowver

        s = self.s
        conn = self.conn
        self.say(f"figure 6: building a DataFrame of {s.rows:,} rows")
        frame = _frame(s.rows)
        plain, ver = self._q("sync_plain"), self._q("sync_versioned")
        ver_name = self._text("sync_versioned")
        for table in (plain, ver):
            conn.execute(sql.SQL(_CREATE).format(table))
        _copy_frame(conn, ver, frame)
        conn.execute(sql.SQL("vacuum (freeze, analyze) {}").format(ver))
        conn.execute("select rowver.enable(%s::regclass)", (ver_name,))
        conn.execute("select rowver.publish_head()")
        # the write layer, on a bench session of its own
        db = rowver.Database(psycopg.conninfo.make_conninfo(self.url, options=_OPTIONS))
        with contextlib.closing(db):
            self._conns.append(db.conn)
            times: dict[str, list[float]] = {"plain": [], "versioned": []}
            ids = frame["id"].to_numpy()
            for r in range(s.sync_reps):
                self.say(f"figure 6: sync against COPY, repetition {r + 1} of {s.sync_reps}")
                frame.loc[ids % 100 == r, "qty"] += 1  # another 1% changes
                conn.execute(sql.SQL("truncate {}").format(plain))
                self._checkpoint()
                t = time.perf_counter()
                _copy_frame(conn, plain, frame)
                times["plain"].append(time.perf_counter() - t)
                self._checkpoint()
                t = time.perf_counter()
                with db.changeset(message="rowver bench") as cs:
                    result = cs.sync(ver_name, frame)
                times["versioned"].append(time.perf_counter() - t)
                changed = int((ids % 100 == r).sum())
                _expect((result.updated, result.inserted, result.deleted) == (changed, 0, 0),
                        f"sync changed {result}, not {changed} rows")
                self._vacuum(ver)
        p, v = _median(times["plain"]), _median(times["versioned"])
        return Figure(6, "sync_vs_copy", "sync of a DataFrame with 1% changed rows, against COPY of it", "s",
                      p, v, _ratio(v, p), "<=", 2.0,
                      detail={"rows": s.rows, "changed_rows": s.rows // 100,
                              "plain_s": _round(times["plain"]), "versioned_s": _round(times["versioned"])})

    # -- 9: TPC-B ------------------------------------------------------------------------------------

    def _tpcb(self) -> Figure:
        s = self.s
        title = f"pgbench TPC-B, scale {s.tpcb_scale}, {s.clients} clients, no retries"
        if _pgbench.binary() is None:
            return Figure(9, "tpcb", title, "tps", None, None, None, ">=", 0.60, status="not available")
        urls = {}
        for side in ("plain", "versioned"):
            schema = f"{self.schema}_tpcb_{side}"
            self.conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
            self.schemas.append(schema)
            urls[side] = psycopg.conninfo.make_conninfo(self.url, options=f"{_OPTIONS} -c search_path={schema}")
            self.say(f"figure 9: pgbench -i -s {s.tpcb_scale} ({side})")
            _pgbench.init(urls[side], scale=s.tpcb_scale)
        for t in _pgbench.TABLES:
            self.conn.execute("select rowver.enable(%s::regclass)",
                              (sql.Identifier(f"{self.schema}_tpcb_versioned", t).as_string(self.conn),))
        tps: dict[str, list[float]] = {"plain": [], "versioned": []}
        failed = {"plain": 0, "versioned": 0}
        for i in range(s.throughput_reps):
            for side in ("plain", "versioned"):
                self.say(f"figure 9: pgbench TPC-B ({side}), run {i + 1} of {s.throughput_reps}")
                self._checkpoint()
                run = _pgbench.run(urls[side], clients=s.clients, jobs=2, seconds=max(1.0, s.seconds))
                tps[side].append(run.tps)
                failed[side] += run.failed
        self._after_write()
        p, v = _median(tps["plain"]), _median(tps["versioned"])
        return Figure(9, "tpcb", title, "tps", p, v, _ratio(v, p), ">=", 0.60,
                      detail={"scale": s.tpcb_scale, "clients": s.clients, "seconds_per_run": max(1.0, s.seconds),
                              "runs": s.throughput_reps, "plain_tps": _round(tps["plain"], 1),
                              "versioned_tps": _round(tps["versioned"], 1), "failed_transactions": failed})


def _is_local_backend(conn: psycopg.Connection, pid: int) -> bool:
    """Whether the session's server process is one on this machine (its /proc entry is a
    postgres process, and the connection came over a local socket or loopback)."""
    row = conn.execute("select coalesce(host(inet_server_addr()), 'local')").fetchone()
    if row is None or row[0] not in ("local", "127.0.0.1", "::1"):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(" ", 2)[1] in ("(postgres)", "(postmaster)")
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc/PID/stat."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _frame(n: int) -> pd.DataFrame:
    """The bench rows as a DataFrame (the same shape as the bench table)."""
    import numpy as np
    import pandas as pd

    ids = np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({
        "id": ids,
        "grp": (ids % 100).astype(np.int32),
        "qty": ((ids * 7) % 1000).astype(np.int32),
        "price": (ids % 10000) / 100.0,
        "name": [f"item {i * 2654435761 % (1 << 64):032x}" for i in ids.tolist()],
        "note": [None if i % 3 == 0 else f"{i * 31:016x}" for i in ids.tolist()],
        "updated_at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(ids, unit="s"),
    })


def _copy_frame(conn: psycopg.Connection, table: sql.Composable, frame: pd.DataFrame) -> None:
    """COPY a DataFrame into a table the way the write layer stages one: the same
    column-wise conversion, psycopg's COPY, one transaction."""
    columns, records = _frames.to_records(frame)
    copy = sql.SQL("copy {} ({}) from stdin").format(table, sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.transaction(), conn.cursor().copy(copy) as cp:
        for row in records:
            cp.write_row(row)
