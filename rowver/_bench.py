"""`rowver bench`: what versioning costs, measured on the database it is pointed at (DESIGN §10).

Every figure but figure 10 is a ratio: a versioned table against a plain table of the same
shape and the same data, in the same run, timed interleaved (plain, versioned, plain, versioned, ...),
the median of several repetitions, with the absolute figures beside it. Every bench
session runs with parallel query and JIT off (``max_parallel_workers_per_gather = 0``,
``jit = off``), so that the ratios compare work rather than worker start-up or code
generation, and each side's read is run once untimed first, so caches are warm. Timed
writes start after a CHECKPOINT (where the role may ask for one), so that neither side
pays for the other's dirty pages.

The run lives in a scratch database it creates, with rowver installed, and drops afterwards
(``rowver_bench_<random>``), so the database it is pointed at is left as it was; whatever
happens, including an error or Ctrl-C, the database is dropped. In place (``in_place``), it
lives in a scratch schema of that database: versioning is disabled on its tables and the
schema dropped, but the changesets its writes made stay in that database's log (history is
append-only). The model-store figure writes through ``rowver._models_bench`` (see there).

The figures (targets from the benchmark issue; "ratio" is versioned / plain):

1. bulk UPDATE of 10% of the rows through the triggers, 10 rounds (each a different
   tenth, so every row changes once): median time ratio <= 2.5; the same on a wider row,
   ``(id int primary key, a int, b text, c float8, d timestamptz)`` with 300,000 rows and
   ``SET a = a + 1``: <= 2.5;
2. single-row UPDATEs by primary key from 4 concurrent clients (threads, one connection
   each, prepared) for a fixed time: throughput ratio >= 0.70; beside it, the server's CPU
   time per single-row UPDATE from one client, where the server runs on this machine;
3. full scan of the current rows after those 10 rounds: <= 1.10;
4. as-of full read (``T__as_of``) at the oldest version, where every row must be read from
   history: <= 2.5 against a plain full scan;
5. as-of point lookup by key at that version, both sides prepared: <= 1.2 against a plain
   primary-key lookup (unprepared and server-side figures are reported beside it);
6. ``sync`` of a DataFrame with 1% of its rows changed: <= 2.0 against COPY of the same
   DataFrame (the same column-wise conversion, psycopg's COPY) into a plain table;
7. history heap bytes per changed row: <= 1.3 times the row's size in a freshly loaded
   plain table (index bytes reported apart); bytes per unchanged row (a no-op UPDATE):
   0;
8. model save and load against raw binary COPY of the same bytes into and out of a plain
   bytea table: each >= 0.8 of its throughput; an unchanged re-save <= 0.2 of the first;
9. PostgreSQL's pgbench, TPC-B (scale 2, 4 clients, 2 threads, no retries) on its four
   tables, plain in one scratch schema and versioned in another: tps ratio >= 0.60, with
   failed transactions reported for both (none expected);
10. reads whose cost follows the answer, in milliseconds (absolute targets, no plain side):
    a diff of two adjacent versions that changed 10 rows, and the change feed between them,
    each <= 20 ms; one key's history of 5,000 versions as a DataFrame <= 20 ms; and figure 4
    again (oldest and head) after 50 rounds of 10% updates (200 with ``--deep``): <= 1.5,
    within 10% of the figure after 10 rounds;
11. each page of ``rowver ui`` (home; the bench table at head, at its oldest version, a page
    further by key, filtered; an adjacent diff; the long-history key; a changeset; the
    models, a model of 100 versions with 1,000-step series, one version, a comparison of
    three), server side and warm, in milliseconds: <= 300 ms each;
12. ``db.training_set`` of 1,000,000 events against a 100,000-key feature table with 20
    versions per key, against a plain hash join of the same events with its current rows (the
    same COPY in, fetch and assembly): <= 3.0; the process's peak memory beside it;
13. ``db.export`` of the versioned table at head to Parquet and to Delta Lake, in MB/s of the
    rows' COPY text, against COPY of the same rows (the same as-of read, in key order) to the
    client: >= 0.25 (a target of ours; the export issue names none); then, after a changeset
    updating 1% of the rows (every hundredth key), the export of that version to the Delta and
    the Iceberg table exported whole before: <= 0.1 of the whole export's time. A figure whose
    package (pyarrow, deltalake, pyiceberg) is not installed says so.

A full read is ``count()`` of every column, so that every column of every row is read
and nothing is sent to the client; point lookups go through the client, one round trip
each, as an application makes them.
"""

from __future__ import annotations

import contextlib
import math
import random
import secrets
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.conninfo
from psycopg import sql

from . import _frames, _pgbench, _query
from ._database import Database
from ._server import server_url_for
from .errors import InvalidInputError, RowverError

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[str], None]

# The bench table: a narrow row (~125 bytes on disk) with fixed-width and text columns,
# NULLs in one of them; plain and versioned tables get the very same rows.
_COLUMNS = ("id", "grp", "qty", "price", "name", "note", "updated_at")
_CREATE = """create table {} (
  id         bigint primary key,
  grp        integer not null,
  qty        integer not null,
  price      double precision not null,
  name       text not null,
  note       text,
  updated_at timestamptz not null
)"""
_FILL = """insert into {} (id, grp, qty, price, name, note, updated_at)
select i, i %% 100, (i * 7) %% 1000, (i %% 10000) / 100.0, 'item ' || md5(i::text),
       case when i %% 3 = 0 then null else left(md5((i * 31)::text), 16) end,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
  from generate_series(1, %s) i"""
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
# a round of figure 1: a tenth of the rows, by the remainder given
_ROUND_UPDATE = "update {} set qty = qty + 1, updated_at = updated_at + interval '1 hour' where id %% 10 = %s"
# every column of every row is read; nothing goes to the client
_FULL_READ = ("select count(*), count(id), count(grp), count(qty), count(price), count(name),"
              " count(note), count(updated_at) from {}")


# Settings of every bench session, given at connection start (not SET, which a pooler
# would carry over to other clients): parallel query and JIT off, so that ratios compare
# work rather than worker start-up or code generation; the changesets of plain SQL writes
# say where they come from.
_OPTIONS = "-c max_parallel_workers_per_gather=0 -c jit=off -c rowver.message=rowver-bench"


# -- what a run measures and reports ------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How much a run does. ``quick`` is a smoke test of the command, not a measurement."""

    rows: int = 1_000_000
    rounds: int = 10            # rounds of 10% updates (figure 1); 10 changes every row once
    reps: int = 9               # repetitions of each read (figures 3 to 5)
    lookups: int = 5000         # point lookups per repetition (figure 5)
    clients: int = 4            # concurrent writers (figure 2)
    seconds: float = 5.0        # length of one throughput run (figure 2)
    throughput_reps: int = 3
    sync_reps: int = 3          # figure 6
    wide_rows: int = 300_000    # figure 1's wider table
    cpu_updates: int = 3000     # single-row updates timed in the server's CPU (figure 2)
    tpcb_scale: int = 2         # figure 9
    model_mb: int = 1024        # figure 8
    model_rounds: int = 6       # even: load and the raw read into memory each go first half the time
    key_versions: int = 5000    # versions of one key (figure 10's row history)
    deep_rounds: int = 50       # rounds of 10% updates before figure 4 is measured again
    ui_model_versions: int = 100  # figure 11's model: versions, each with a metric series of
    ui_steps: int = 1000          # this many steps
    train_events: int = 1_000_000  # figure 12: events, against a feature table of
    train_keys: int = 100_000      # this many keys,
    train_versions: int = 20       # each in this many versions
    rewrite: bool | None = None  # enable's rewrite: None lets enable decide by size
    quick: bool = False

    @classmethod
    def for_run(cls, *, rows: int | None = None, quick: bool = False, rewrite: bool | None = None,
                deep: bool = False) -> Settings:
        if quick:
            base = cls(rows=20_000, reps=3, lookups=300, seconds=0.5, throughput_reps=1, sync_reps=2,
                       wide_rows=5_000, cpu_updates=200, tpcb_scale=1, model_mb=4, model_rounds=1,
                       key_versions=200, deep_rounds=20, ui_model_versions=5, ui_steps=50,
                       train_events=5_000, train_keys=1_000, train_versions=3, quick=True)
        else:
            base = cls()
        return replace(base, rows=base.rows if rows is None else rows, rewrite=rewrite,
                       deep_rounds=200 if deep else base.deep_rounds)


@dataclass
class Figure:
    """One line of the report: plain and versioned measured alike, their ratio and target."""

    figure: int
    name: str
    title: str
    unit: str                   # of plain and versioned: s, us, updates/s, tps, bytes/row, MB/s, bytes
    plain: float | None
    versioned: float | None
    ratio: float | None         # versioned / plain (for throughputs: higher is better)
    op: str                     # "<=" or ">=": how ratio (versioned, if absolute) must compare to target
    target: float
    status: str = "measured"    # measured | not available | error: ...
    detail: dict[str, Any] = field(default_factory=dict)
    absolute: bool = False      # the target is in the unit, for the versioned side alone

    @property
    def passed(self) -> bool | None:
        value = self.versioned if self.absolute else self.ratio
        if value is None or self.status != "measured":
            return None
        return value <= self.target if self.op == "<=" else value >= self.target


@dataclass
class Report:
    server: str
    settings: Settings
    schema: str
    seconds: float
    figures: list[Figure]
    database: str  # "scratch, dropped", or "given" (in place)


# -- running it ---------------------------------------------------------------------------


def bench(db: Database, *, rows: int | None = None, quick: bool = False, models: bool = True,
          rewrite: bool | None = None, deep: bool = False, in_place: bool = False,
          progress: Progress | None = None) -> Report:
    """Measure what versioning costs on ``db``'s server, in a scratch database dropped
    afterwards (``in_place``: in a scratch schema of ``db``'s own database)."""
    settings = Settings.for_run(rows=rows, quick=quick, rewrite=rewrite, deep=deep)
    if settings.rows < 1000:
        raise InvalidInputError("rowver bench needs at least 1000 rows")
    if in_place:
        db.require_catalog()
        return _measured(db.url, settings, models, progress, database="given")
    with _scratch_database(db.url) as url:
        return _measured(url, settings, models, progress, database="scratch, dropped")


def _measured(url: str, settings: Settings, models: bool, progress: Progress | None, *, database: str) -> Report:
    run = _Run(url, settings, progress or (lambda _: None))
    started = time.perf_counter()
    try:
        figures = run.measure(models=models)
    finally:
        run.cleanup()
    return Report(server=run.server, settings=settings, schema=run.schema,
                  seconds=time.perf_counter() - started, figures=figures, database=database)


@contextlib.contextmanager
def _scratch_database(url: str) -> Iterator[str]:
    """The URL of a new database on ``url``'s server, with rowver installed; dropped after."""
    name = f"rowver_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            raise InvalidInputError(
                "rowver bench works in a scratch database, which this role may not create (it needs CREATEDB); "
                "--in-place runs it in this database, whose log then keeps the bench's changesets") from None
        try:
            scratch = server_url_for(url, name)
            with Database(scratch) as db:
                db.init()
            yield scratch
        finally:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _ratio(versioned: float | None, plain: float | None) -> float | None:
    if versioned is None or plain is None or plain == 0:
        return None
    return versioned / plain


class _Run:
    """One bench run: its connections, its scratch schema, and the figures in order."""

    def __init__(self, url: str, settings: Settings, progress: Progress):
        self.url = url
        self.s = settings
        self.say = progress
        self.schema = f"rowver_bench_{secrets.token_hex(4)}"
        self.schemas = [self.schema]  # and figure 9's two, once made
        self._conns: list[psycopg.Connection] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._can_checkpoint = True
        self.conn = self._connect()  # setup, and statements run once
        self.pconn = self._connect(prepared=True)  # timed reads and lookups
        self.server = str(self.conn.execute("show server_version").fetchone()[0])  # type: ignore[index]
        self._v0 = 0

    # -- connections and names ------------------------------------------------------

    def _connect(self, *, prepared: bool = False) -> psycopg.Connection:
        """A bench session. ``prepared``: one where execute(prepare=True) prepares (psycopg
        ignores it where prepared statements are off) and prepare=False does not."""
        conn = psycopg.connect(self.url, autocommit=True, prepare_threshold=0 if prepared else None,
                               options=_OPTIONS)
        self._conns.append(conn)
        conn.add_notice_handler(lambda _: None)  # vacuum's "skipping" warnings and the like
        return conn

    def _q(self, *names: str) -> sql.Composable:
        return sql.Identifier(self.schema, *names)

    def _text(self, *names: str) -> str:
        """A relation name as regclass text."""
        return self._q(*names).as_string(self.conn)

    def _checkpoint(self) -> None:
        if self._can_checkpoint:
            try:
                self.conn.execute("checkpoint")
            except psycopg.errors.InsufficientPrivilege:
                self._can_checkpoint = False  # not ours to ask for: the figures are noisier

    def _timed(self, query: sql.Composed, params: Sequence[Any] | None = None, *,
               conn: psycopg.Connection | None = None, prepare: bool | None = None) -> float:
        conn = conn or self.conn
        t = time.perf_counter()
        cur = conn.execute(query, params, prepare=prepare)
        if cur.description is not None:
            cur.fetchall()
        return time.perf_counter() - t

    def _vacuum(self, *tables: sql.Composable) -> None:
        # autovacuum may be off or behind: keep both sides as a healthy server would
        for t in tables:
            self.conn.execute(sql.SQL("vacuum (analyze) {}").format(t))

    # -- the run --------------------------------------------------------------------

    def measure(self, *, models: bool) -> list[Figure]:
        s = self.s
        conn = self.conn
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(self.schema)))
        figures: list[Figure] = []

        self.say(f"loading {s.rows:,} rows into a plain and a versioned table")
        self.plain, self.ver = self._q("bench_plain"), self._q("bench_versioned")
        for t in (self.plain, self.ver):
            conn.execute(sql.SQL(_CREATE).format(t))
            conn.execute(sql.SQL(_FILL).format(t), (s.rows,))
            conn.execute(sql.SQL("vacuum (freeze, analyze) {}").format(t))
        plain_row_bytes = self._heap_bytes(self.plain) / s.rows
        self._enable()
        self._hist0 = self._history_size()

        figures.append(self._bulk_update())
        figures.append(self._bulk_update_wide())
        figures.append(self._history_bytes(plain_row_bytes))
        figures.append(self._current_scan())
        figures.append(self._as_of_scan("oldest"))
        figures.append(self._as_of_scan("head"))
        figures.append(self._point_lookup())
        figures.append(self._unchanged_bytes())
        figures.append(self._throughput())
        figures.append(self._sync())
        figures.extend(self._reads_at_depth())
        figures.extend(self._ui_pages())
        figures.append(self._training_set())
        figures.extend(self._exports())
        figures.append(self._tpcb())
        figures.extend(self._models() if models else _models_skipped("not run (--no-models)"))
        return sorted(figures, key=lambda f: f.figure)

    # -- what is being measured: rowver (a peer comparison overrides these) -------------------

    version_type = "bigint"  # of the as-of function's argument
    copied: bool | None = None  # whether enable copied the table (rowver's rewrite)

    def _enable(self) -> None:
        """Version bench_versioned; set self.hist (its history), self.as_of (the function
        reading it as of a version) and self._v0 (the oldest version, its current rows)."""
        conn = self.conn
        name = self._text("bench_versioned")
        self._v0 = int(conn.execute("select rowver.enable(%s::regclass, rewrite => %s::boolean)",  # type: ignore[index]
                                    (name, self.s.rewrite)).fetchone()[0])
        self.copied = conn.execute("select rowver.stores_version(%s::regclass)", (name,)).fetchone()[0]  # type: ignore[index]
        self._after_write()
        hist, as_of = conn.execute("select history_name, as_of_name from rowver.versioned"
                                   " where relid = %s::regclass", (name,)).fetchone()  # type: ignore[misc]
        self.hist, self.as_of = self._q(hist), self._q(as_of)

    def _after_write(self) -> None:
        """After versioned writes: publish head, as the write layer does after each changeset."""
        self.conn.execute("select rowver.publish_head()")

    def _head(self) -> Any:
        """The newest version, for an as-of read at head."""
        return self.conn.execute("select rowver.publish_head()").fetchone()[0]  # type: ignore[index]

    def _history_size(self) -> tuple[int, int, int]:
        """(rows, heap bytes, index bytes) of the history."""
        row = self.conn.execute(sql.SQL(
            "select count(*), pg_relation_size({0}::regclass), pg_indexes_size({0}::regclass) from {1}").format(
            sql.Literal(self.hist.as_string(self.conn)), self.hist)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

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

    def _heap_bytes(self, table: sql.Composable) -> int:
        return int(self.conn.execute(sql.SQL("select pg_relation_size({}::regclass)").format(
            sql.Literal(table.as_string(self.conn)))).fetchone()[0])  # type: ignore[index]

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

    # -- 3, 4: full reads ----------------------------------------------------------------

    def _reads(self, what: str, plain: sql.Composed, versioned: sql.Composed,
               params: Sequence[Any] | None = None) -> tuple[list[float], list[float], Any, Any]:
        conn = self.pconn
        out_p = conn.execute(plain, prepare=True).fetchall()  # warm, and what they return
        out_v = conn.execute(versioned, params, prepare=True).fetchall()
        tp: list[float] = []
        tv: list[float] = []
        for i in range(self.s.reps):
            self.say(f"{what}, repetition {i + 1} of {self.s.reps}")
            tp.append(self._timed(plain, conn=conn, prepare=True))
            tv.append(self._timed(versioned, params, conn=conn, prepare=True))
        return tp, tv, out_p, out_v

    def _current_scan(self) -> Figure:
        tp, tv, out_p, out_v = self._reads("figure 3: current scan", sql.SQL(_FULL_READ).format(self.plain),
                                           sql.SQL(_FULL_READ).format(self.ver))
        _expect(out_p == out_v, f"the current scans disagree: {out_p} <> {out_v}")
        p, v = _median(tp), _median(tv)
        return Figure(3, "current_scan", f"full scan of current rows after {self.s.rounds} rounds of 10% updates",
                      "s", p, v, _ratio(v, p), "<=", 1.10,
                      detail={"plain_s": _round(tp), "versioned_s": _round(tv), "rewrite": self.copied,
                              "plain_heap_bytes": self._heap_bytes(self.plain),
                              "versioned_heap_bytes": self._heap_bytes(self.ver)})

    def _as_of_scan(self, at: str, rounds: int | None = None) -> Figure:
        """As-of full read at the oldest version (every row changed since) or at head, after
        the first rounds or (given) after that many."""
        version = self._v0 if at == "oldest" else self._head()
        rounds = rounds or self.s.rounds
        as_of = sql.SQL(_FULL_READ).format(sql.SQL("{}(%s)").format(self.as_of))
        tp, tv, out_p, out_v = self._reads(f"figure 4: as-of full read at {at}", sql.SQL(_FULL_READ).format(self.plain),
                                           as_of, (version,))
        _expect(out_v[0][0] == self.s.rows, f"as of version {version}, {out_v[0][0]} rows, not {self.s.rows}")
        if at == "head":  # (the plain side has the same rows as the versioned one now)
            _expect(out_p == out_v, f"as of head, the versioned table reads {out_v}, the plain one {out_p}")
        p, v = _median(tp), _median(tv)
        name = ("as_of_scan" if at == "oldest" else "as_of_scan_head") + ("" if rounds == self.s.rounds else
                                                                        f"_{rounds}_rounds")
        return Figure(4, name, f"as-of full read (T__as_of) at {'the oldest version' if at == 'oldest' else 'head'}"
                      f" after {rounds} rounds of 10% updates", "s", p, v, _ratio(v, p), "<=", 1.5,
                      detail={"version": version, "plain_s": _round(tp), "versioned_s": _round(tv)})


    # -- 5: point lookups ----------------------------------------------------------------

    def _lookups(self, query: sql.Composed, args: list[tuple[Any, ...]], prepare: bool) -> float:
        """Seconds per lookup, one round trip each, every row fetched."""
        cur = self.pconn.cursor()
        t = time.perf_counter()
        for a in args:
            cur.execute(query, a, prepare=prepare)
            if cur.fetchone() is None:
                raise RowverError(f"bench: no row for key {a[-1]}")
        return (time.perf_counter() - t) / len(args)

    def _point_lookup(self) -> Figure:
        s = self.s
        rng = random.Random(7)
        keys = [rng.randint(1, s.rows) for _ in range(s.lookups)]
        plain = sql.SQL("select * from {} where id = %s").format(self.plain)
        versioned = sql.SQL("select * from {}(%s) where id = %s").format(self.as_of)
        p_args = [(k,) for k in keys]
        v_args = [(self._v0, k) for k in keys]
        results: dict[str, dict[str, list[float]]] = {m: {"plain": [], "versioned": []}
                                                      for m in ("prepared", "unprepared")}
        for prepare in (True, False):  # warm up, and let prepared plans settle (generic after 5)
            self._lookups(plain, p_args[:50], prepare)
            self._lookups(versioned, v_args[:50], prepare)
        for i in range(s.reps):
            self.say(f"figure 5: point lookups, repetition {i + 1} of {s.reps}")
            for mode, prepare in (("prepared", True), ("unprepared", False)):
                results[mode]["plain"].append(self._lookups(plain, p_args, prepare))
                results[mode]["versioned"].append(self._lookups(versioned, v_args, prepare))
        us = {m: {side: _median(v) * 1e6 for side, v in r.items()} for m, r in results.items()}
        server = self._server_lookups(keys)
        p, v = us["prepared"]["plain"], us["prepared"]["versioned"]
        return Figure(5, "as_of_point_lookup", "as-of point lookup by key at the oldest version, prepared",
                      "us", p, v, _ratio(v, p), "<=", 1.2,
                      detail={"version": self._v0, "lookups": s.lookups,
                              "unprepared_plain_us": us["unprepared"]["plain"],
                              "unprepared_versioned_us": us["unprepared"]["versioned"],
                              "unprepared_ratio": _ratio(us["unprepared"]["versioned"], us["unprepared"]["plain"]),
                              **server})

    def _server_lookups(self, keys: list[int]) -> dict[str, Any]:
        """The same lookups without the client: a PL/pgSQL loop (its statements are prepared,
        as a client's are). Shows the executor's own cost, which round trips dilute."""
        conn = self.conn
        body = """create function {}(keys bigint[], v {}) returns double precision
language plpgsql as $$
declare
  t0 timestamptz := clock_timestamp();
  k bigint;
  r record;
begin
  foreach k in array keys loop
    select * into r from {} where id = k;
  end loop;
  return extract(epoch from clock_timestamp() - t0);
end $$"""
        fn_p, fn_v = self._q("lookup_plain"), self._q("lookup_versioned")
        vtype = sql.SQL(self.version_type)
        conn.execute(sql.SQL(body).format(fn_p, vtype, self.plain))
        conn.execute(sql.SQL(body).format(fn_v, vtype, sql.SQL("{}(v)").format(self.as_of)))
        tp: list[float] = []
        tv: list[float] = []
        for i in range(self.s.reps + 1):
            a = conn.execute(sql.SQL("select {}(%s, %s)").format(fn_p), (keys, self._v0)).fetchone()[0]  # type: ignore[index]
            b = conn.execute(sql.SQL("select {}(%s, %s)").format(fn_v), (keys, self._v0)).fetchone()[0]  # type: ignore[index]
            if i:  # the first is warm-up
                tp.append(a / len(keys) * 1e6)
                tv.append(b / len(keys) * 1e6)
        p, v = _median(tp), _median(tv)
        return {"server_side_plain_us": p, "server_side_versioned_us": v, "server_side_ratio": _ratio(v, p)}

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

    # -- 10: reads whose cost follows the answer -------------------------------------------------

    def _reads_at_depth(self) -> list[Figure]:
        """A diff and the change feed of one small version, one key's long history, then
        figure 4 again after many more rounds."""
        s, conn = self.s, self.conn
        name = self._text("bench_versioned")
        before = self._head()
        conn.execute(sql.SQL("update {} set qty = qty + 1 where id between 101 and 110").format(self.ver))
        after = self._head()

        def diff() -> int:
            query = self.pconn.execute("select rowver.diff_sql(%s::regclass, %s, %s)", (name, before, after))
            return len(self.pconn.execute(query.fetchone()[0]).fetchall())  # type: ignore[index]

        def changes() -> int:
            return len(self.pconn.execute("select * from rowver.changes(%s::regclass, %s, %s)",
                                          (name, str(before), str(after))).fetchall())
        figures = [self._absolute("diff_adjacent", f"diff of two adjacent versions (10 rows changed), "
                                  f"{s.rows:,} rows after {s.rounds} rounds", diff, 10),
                   self._absolute("changes_adjacent", "change feed between the same two versions", changes, 10)]

        key = 101
        self.say(f"figure 10: {s.key_versions:,} versions of one key")
        with self._connect() as writer:
            writer.execute("set synchronous_commit = off")  # (setting up, not measuring)
            for _ in range(s.key_versions):
                writer.execute(sql.SQL("update {} set qty = qty + 1 where id = %s").format(self.ver), (key,))
        self._after_write()
        with Database(self.url) as db:
            figures.append(self._absolute("row_history", f"one key's history, {s.key_versions:,} versions, as a "
                                          "DataFrame (db.history)", lambda: len(db.history(name, key)),
                                          s.key_versions + 1, at_least=True))

        for r in range(s.rounds, s.deep_rounds):
            self.say(f"figure 4: bulk update, round {r + 1} of {s.deep_rounds}")
            for t in (self.plain, self.ver):
                conn.execute(sql.SQL(_ROUND_UPDATE).format(t), (r % 10,))
        self._after_write()
        self._vacuum(self.plain, self.ver, self.hist)
        return figures + [self._as_of_scan("oldest", s.deep_rounds), self._as_of_scan("head", s.deep_rounds)]

    # -- 11: the web UI --------------------------------------------------------------------------

    def _ui_pages(self) -> list[Figure]:
        """Each page of rowver ui in milliseconds, server side and warm (the app called in this
        process), on the bench table after every figure before it has written (10,000s of
        changesets, a key with figure 10's long history) and a model whose versions each carry a
        long metric series; target 300 ms."""
        import numpy as np

        from .ui import _timing

        s, name = self.s, self._text("bench_versioned")
        model = f"{self.schema}-ui"
        with Database(self.url) as db:
            for v in range(s.ui_model_versions):
                self.say(f"figure 11: model version {v + 1} of {s.ui_model_versions}")
                db.models.save(model, params={"lr": 0.01 * (v % 7), "depth": v % 5},
                               metrics={"auc": 0.5 + v / 1000, "loss": [1 / (i + 1 + v) for i in range(s.ui_steps)]},
                               weights={"w": np.full(16, v, dtype=np.float32)}, data_version="head")
            before = db.head()
            self.conn.execute(sql.SQL("update {} set qty = qty + 1 where id between 201 and 210").format(self.ver))
            self._after_write()
            after, first = db.head(), self._v0
        t = urllib.parse.quote(name)
        middle = s.ui_model_versions // 2
        pages = {"home": "/", "table_head": f"/table?t={t}", "table_oldest": f"/table?t={t}&at={first}",
                 "table_next_page": f"/table?t={t}&after=" + urllib.parse.quote(f"[{s.rows // 2}]"),
                 "table_filter": f"/table?t={t}&fcol=qty&fop=%3E&fval=5",
                 "diff_adjacent": f"/diff?t={t}&a={before}&b={after}", "row_history": f"/history?t={t}&key=101",
                 "changeset": f"/changeset/{after}", "models": "/models", "model": f"/models/{model}",
                 "model_version": f"/models/{model}/{middle}",
                 "compare": f"/models/{model}/compare?v=1&v={middle}&v={s.ui_model_versions}"}
        times = _timing.page_times(self.url, pages, reps=s.reps, say=lambda p: self.say(f"figure 11: {p}"))
        return [Figure(11, f"ui_{page}", f"rowver ui {pages[page]}", "ms", None, _median(ms), None, "<=", 300.0,
                       absolute=True, detail={"versioned_ms": _round(ms)}) for page, ms in times.items()]

    # -- 12: point-in-time training sets -----------------------------------------------------------

    def _training_set(self) -> Figure:
        """db.training_set: events joined with a feature table as of each event's time, against a
        plain hash join of the same events with the table's current rows, with the same COPY of
        the events in, fetch and assembly; the process's peak memory after each."""
        import resource

        import numpy as np
        import pandas as pd

        s, conn = self.s, self.conn
        feat, name = self._q("bench_features"), self._text("bench_features")
        self.say(f"figure 12: {s.train_keys:,} keys in {s.train_versions} versions each")
        conn.execute(sql.SQL("create table {} (id int primary key, plan text, mrr numeric, calls int)").format(feat))
        conn.execute(sql.SQL("insert into {} select g, 'free', 0, 0 from generate_series(1, %s) g").format(feat),
                     (s.train_keys,))
        conn.execute("select rowver.enable(%s::regclass)", (name,))
        self._after_write()
        for _ in range(s.train_versions - 1):
            conn.execute(sql.SQL("update {} set calls = calls + 1, mrr = mrr + 1,"
                                 " plan = case plan when 'free' then 'pro' else 'free' end").format(feat))
            self._after_write()
        self._vacuum(feat, self._q("bench_features__history"))
        lo, hi = conn.execute("select min(at), max(at) from rowver.head_log where head > 0").fetchone()  # type: ignore[misc]
        rng = np.random.default_rng(7)
        start, span = pd.Timestamp(lo).value, pd.Timestamp(hi).value - pd.Timestamp(lo).value + 10**9
        events = pd.DataFrame({"customer_id": rng.integers(1, s.train_keys + 1, s.train_events),
                               "event_time": pd.to_datetime(start + rng.integers(0, span, s.train_events), utc=True),
                               "label": rng.integers(0, 2, s.train_events)})
        memory = {}
        with Database(self.url) as db:
            self.say(f"figure 12: a training set of {s.train_events:,} events")
            started = time.perf_counter()
            got = db.training_set(events, {name: ["plan", "mrr", "calls"]}, on={name: "customer_id"}, at="event_time")
            versioned = time.perf_counter() - started
            memory["versioned"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            self.say("figure 12: the same events joined with the current rows")
            started = time.perf_counter()
            plain_rows = self._plain_join(db, events, feat)
            plain = time.perf_counter() - started
            memory["plain"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        _expect(len(got) == len(plain_rows) == s.train_events, "figure 12: a row per event on both sides")
        return Figure(12, "training_set", f"db.training_set, {s.train_events:,} events against {s.train_keys:,} keys "
                      f"in {s.train_versions} versions each, against a hash join with the current rows", "s",
                      plain, versioned, _ratio(versioned, plain), "<=", 3.0,
                      detail={"peak_rss_mb_after": memory,
                              "versions_read": len(next(iter(got.attrs["rowver_lineage"].values())))})

    def _plain_join(self, db: Database, events: pd.DataFrame, feat: sql.Composable) -> pd.DataFrame:
        """The events joined with the current rows: COPY'd in, one hash join, fetched and put
        beside the events in their order."""
        import numpy as np
        import pandas as pd

        with db.conn.transaction():
            db.conn.execute("create temp table rv_events (rv_row bigint, rv_time timestamptz, k int) on commit drop")
            with db.conn.cursor().copy("copy rv_events (rv_row, rv_time, k) from stdin") as cp:
                for row in zip(range(len(events)), events["event_time"], _frames._column_values(events["customer_id"])):
                    cp.write_row(row)
            found = _query.frame(db, sql.SQL("select e.rv_row, f.plan, f.mrr, f.calls from rv_events e"
                                             " left join {} f on f.id = e.k").format(feat))
        found = found.take(np.argsort(found["rv_row"].to_numpy(), kind="stable")).reset_index(drop=True)
        joined: pd.DataFrame = pd.concat([events.reset_index(drop=True), found[["plan", "mrr", "calls"]]], axis=1)
        return joined

    def _absolute(self, name: str, title: str, read: Callable[[], int], rows: int, *,
                  at_least: bool = False) -> Figure:
        """Milliseconds a read takes (the median of the repetitions, after one to warm up),
        with figure 10's target of 20 ms; the read returns how many rows it got."""
        got = read()
        _expect(got >= rows if at_least else got == rows, f"{name}: {got} rows, not {rows}")
        times = []
        for i in range(self.s.reps):
            self.say(f"figure 10: {name}, repetition {i + 1} of {self.s.reps}")
            t = time.perf_counter()
            read()
            times.append((time.perf_counter() - t) * 1000)
        return Figure(10, name, title, "ms", None, _median(times), None, "<=", 20.0, absolute=True,
                      detail={"rows_read": got, "versioned_ms": _round(times)})

    # -- 8: models ----------------------------------------------------------------------------------

    def _models(self) -> list[Figure]:
        try:
            from ._models_bench import bench_models
        except ImportError:
            return _models_skipped("not available (rowver._models_bench is not installed)")
        self.say(f"figure 8: model save and load, {self.s.model_mb} MB of float32 weights")
        try:
            m = bench_models(self.url, self.s.model_mb, rounds=self.s.model_rounds)
        except Exception as exc:
            return _models_skipped(f"error: {' '.join(str(exc).split())}")
        size = {"size_mb": m.get("size_mb"), "rounds": m.get("rounds"), "database": m.get("database"),
                "model": m.get("model")}
        measured = {  # name: plain, versioned, ratio, detail
            "model_save": (m["raw_copy_in_mb_s"], m["save_mb_s"], m["save_vs_raw_copy_in"], size),
            "model_load": (m["raw_copy_out_mb_s"], m["load_mb_s"], m["load_vs_raw_copy_out"],
                           {**size, "raw_copy_out_to_memory_mb_s": m.get("raw_copy_out_to_memory_mb_s"),
                            "load_vs_raw_copy_out_to_memory": m.get("load_vs_raw_copy_out_to_memory")}),
            "model_resave_unchanged": (m["first_save_s"], m["resave_unchanged_s"], m["resave_unchanged_vs_first_save"],
                                       {**size, "resave_unchanged_written_bytes": m.get("resave_unchanged_written_bytes")}),
            "model_resave_10pct": (m["model_bytes"], m["resave_10pct_written_bytes"], m["resave_10pct_written_fraction"],
                                   {**size, "relation_growth_bytes": m.get("resave_10pct_relation_growth_bytes")}),
        }
        figures = []
        for name, (title, unit, op, target) in _MODEL_FIGURES.items():
            plain, versioned, ratio, detail = measured[name]
            figures.append(Figure(8, name, title, unit, plain, versioned, ratio, op, target, detail=detail))
        return figures

    # -- 13: exports to Parquet, Delta Lake and Iceberg -------------------------------------------

    def _exports(self) -> list[Figure]:
        """db.export of the versioned table at head to Parquet and to Delta Lake, in MB/s of the
        rows' COPY text, against COPY of the same rows (the same as-of read, in key order) to the
        client; then, after a changeset updating 1% of the rows (every hundredth key, so every
        data file holds some), the export of that version to the Delta and the Iceberg table
        exported whole before, against the whole export's time. A figure whose package is not
        installed says so."""
        import tempfile

        s, name = self.s, self._text("bench_versioned")
        missing = _export_packages_missing()
        head = self._head()
        self.say(f"figure 13: COPY of {s.rows:,} rows as of version {head} to the client")
        copied = [self._copy_out(head) for _ in range(3)]
        size = copied[0][1]
        copy_mb_s = _median([size / t / 1e6 for t, _ in copied])
        timed: dict[str, list[float]] = {}
        results: dict[str, Any] = {}
        url = psycopg.conninfo.make_conninfo(self.url, options=_OPTIONS)
        with tempfile.TemporaryDirectory(prefix="rowver-bench-") as tmp, Database(url) as db:
            def export(fmt: str, to: str, label: str) -> float:
                self.say(f"figure 13: export to {fmt}, {label}")
                started = time.perf_counter()
                results[label] = db.export(name, f"{tmp}/{to}", head if "whole" in label else "head", format=fmt)
                return time.perf_counter() - started

            for fmt in ("parquet", "delta"):
                if fmt not in missing:
                    timed[fmt] = [export(fmt, f"{fmt}{r}", f"whole, {r + 1} of 2") for r in range(2)]
            if "iceberg" not in missing:
                timed["iceberg"] = [export("iceberg", "iceberg", "whole")]
            self.conn.execute(sql.SQL("update {} set qty = qty + 1 where id % 100 = 7").format(self.ver))
            self._after_write()
            changed = sum(1 for i in range(1, s.rows + 1) if i % 100 == 7)
            for fmt, to in (("delta", "delta1"), ("iceberg", "iceberg")):
                if fmt in timed:
                    timed[f"{fmt}_changes"] = [export(fmt, to, "1% changed")]
                    _expect(results["1% changed"].changed == changed, f"figure 13: {fmt} wrote only the change")
        return self._export_figures(missing, timed, copy_mb_s, size, changed)

    def _copy_out(self, version: Any) -> tuple[float, int]:
        """COPY of the versioned table as of ``version``, in key order, to the client: seconds, bytes."""
        query = sql.SQL("copy (select * from {}(%s) order by id) to stdout").format(self.as_of)
        size = 0
        started = time.perf_counter()
        with self.conn.cursor().copy(query, (version,)) as cp:
            for block in cp:
                size += len(block)
        return time.perf_counter() - started, size

    def _export_figures(self, missing: dict[str, str], timed: dict[str, list[float]], copy_mb_s: float,
                        size: int, changed: int) -> list[Figure]:
        rows, figures = self.s.rows, []
        for fmt, title in (("parquet", "Parquet"), ("delta", "Delta Lake")):
            figure = Figure(13, f"export_{fmt}", f"db.export of {rows:,} rows to {title}, MB/s of their COPY text, "
                            "against COPY of the same rows to the client", "MB/s", copy_mb_s, None, None, ">=",
                            EXPORT_RATE_TARGET, detail={"copy_text_bytes": size})
            if fmt in missing:
                figure.status = missing[fmt]
            else:
                figure.versioned = _median([size / t / 1e6 for t in timed[fmt]])
                figure.ratio = _ratio(figure.versioned, copy_mb_s)
                figure.detail["seconds"] = _round(timed[fmt])
            figures.append(figure)
        for fmt, title in (("delta", "Delta Lake"), ("iceberg", "Iceberg")):
            figure = Figure(13, f"export_{fmt}_changes", f"export to {title} after 1% of {rows:,} rows changed, "
                            "against the whole export", "s", None, None, None, "<=", 0.1,
                            detail={"rows_changed": changed})
            if fmt in missing:
                figure.status = missing[fmt]
            else:
                figure.plain, figure.versioned = _median(timed[fmt]), timed[f"{fmt}_changes"][0]
                figure.ratio = _ratio(figure.versioned, figure.plain)
            figures.append(figure)
        return figures

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

    # -- afterwards ---------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the clients, cancel what our sessions still run, disable versioning on the
        scratch tables and drop the schema: on success, error and Ctrl-C alike."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        for c in self._conns:
            with contextlib.suppress(Exception):
                if not c.closed and c.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
                    c.cancel_safe()
            with contextlib.suppress(Exception):
                c.close()
        failed: list[Exception] = []

        def attempt(step: Callable[..., Any], *args: Any) -> None:
            try:
                step(*args)
            except Exception as exc:  # every step is tried; the first failure is raised at the end
                failed.append(exc)

        with psycopg.connect(self.url, autocommit=True) as conn:
            attempt(self._before_drop, conn)
            tables = conn.execute(
                "select v.relid::text from rowver.versioned v join pg_catalog.pg_class c on c.oid = v.relid"
                " join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = any(%s)",
                (self.schemas,)).fetchall()
            for (table,) in tables:
                attempt(conn.execute, "select rowver.disable(%s::regclass)", (table,))
            for schema in self.schemas:
                attempt(conn.execute, sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            attempt(conn.execute, "select rowver.publish_head()")
            attempt(self._after_drop, conn)
        if failed:
            raise failed[0]

    def _before_drop(self, conn: psycopg.Connection) -> None:
        """Undo, before the schema goes, what a peer comparison set up outside it."""

    def _after_drop(self, conn: psycopg.Connection) -> None:
        """Undo what a peer comparison set up outside the schema."""


EXPORT_RATE_TARGET = 0.25  # figure 13: an export's MB/s against COPY's (ours: the issue names none)


def _export_packages_missing() -> dict[str, str]:
    """{format: why its figures are not measured}, for the formats whose package is not installed."""
    from . import _export, _iceberg

    missing = {}
    for fmt, require in (("parquet", _export.require_pyarrow), ("delta", _export.require_deltalake),
                         ("iceberg", _iceberg.require_pyiceberg)):
        try:
            require()
        except RowverError as exc:
            missing[fmt] = f"not available ({exc})"
    if "parquet" in missing:  # (Delta and Iceberg need pyarrow too)
        missing = {fmt: missing.get(fmt, missing["parquet"]) for fmt in ("parquet", "delta", "iceberg")}
    return missing

_MODEL_FIGURES = {  # name: title, unit, op, target
    "model_save": ("model save against raw binary COPY into bytea", "MB/s", ">=", 0.8),
    "model_load": ("model load against raw binary COPY out of bytea", "MB/s", ">=", 0.8),
    "model_resave_unchanged": ("unchanged re-save against the first save", "s", "<=", 0.2),
    "model_resave_10pct": ("re-save with 10% of tensors changed: bytes written, against the model", "bytes",
                           "<=", 0.12),
}


def _models_skipped(status: str) -> list[Figure]:
    return [Figure(8, name, title, unit, None, None, None, op, target, status=status)
            for name, (title, unit, op, target) in _MODEL_FIGURES.items()]


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


def _expect(ok: bool, message: str) -> None:
    """The bench measures the right thing, or says it did not."""
    if not ok:
        raise RowverError(f"bench: {message}")


def _round(values: Sequence[float], digits: int = 4) -> list[float]:
    return [round(v, digits) for v in values]


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


# -- rendering ------------------------------------------------------------------------------------

_UNITS = {"s": ("s", 3), "ms": ("ms", 1), "us": ("µs", 1), "updates/s": ("/s", 0), "tps": ("tps", 0), "bytes/row": ("B/row", 1),
          "MB/s": ("MB/s", 0), "bytes": ("B", 0)}
COLUMNS = ["figure", "name", "title", "unit", "plain", "versioned", "ratio", "op", "target", "pass", "status",
           "detail"]


def rows(report: Report) -> list[tuple[Any, ...]]:
    """One row per figure, in COLUMNS order (for JSON and CSV)."""
    out = []
    for f in report.figures:
        out.append((f.figure, f.name, f.title, f.unit, _num(f.plain), _num(f.versioned), _num(f.ratio), f.op,
                    f.target, f.passed, f.status,
                    {"rows": report.settings.rows, "quick": report.settings.quick, "server": report.server,
                     "database": report.database,
                     **{k: _num(v) if isinstance(v, float) else v for k, v in f.detail.items()}}))
    return out


def _num(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def table_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per figure, as text for people."""
    out: list[tuple[str, ...]] = []
    for f in report.figures:
        unit, digits = _UNITS.get(f.unit, (f.unit, 3))

        def amount(x: float | None, digits: int = digits, unit: str = unit) -> str:
            return "" if x is None else f"{x:,.{digits}f} {unit}"

        verdict = {True: "pass", False: "MISS", None: f.status}[f.passed]
        out.append((str(f.figure), f.title, amount(f.plain), amount(f.versioned),
                    "" if f.ratio is None else f"{f.ratio:.2f}x",
                    f"{f.op} {f.target:g} {unit}" if f.absolute else f"{f.op} {f.target:g}x", verdict))
    return out


def notes(report: Report) -> list[str]:
    """Lines under the table: what else each figure measured."""
    lines = []
    for f in report.figures:
        d = f.detail
        if f.name == "as_of_point_lookup" and f.status == "measured":
            lines.append(f"5: unprepared {d['unprepared_versioned_us']:.1f} µs vs {d['unprepared_plain_us']:.1f} µs "
                         f"({d['unprepared_ratio']:.2f}x); server-side, without round trips, "
                         f"{d['server_side_versioned_us']:.1f} µs vs {d['server_side_plain_us']:.1f} µs "
                         f"({d['server_side_ratio']:.2f}x)")
        elif f.name == "history_bytes_per_changed_row" and f.versioned is not None:
            lines.append(f"7: history index {d['history_index_bytes_per_row']:.1f} bytes per changed row, "
                         f"apart from the heap; {d['history_rows']:,} history rows")
        elif f.name == "history_bytes_per_unchanged_row" and f.status == "measured":
            lines.append(f"7: a no-op UPDATE of {d['rows_updated']:,} rows added {d['history_rows_added']} history rows "
                         f"and {d['changesets_added']} changesets")
        elif f.name == "concurrent_updates" and f.status == "measured":
            failures = d["serialization_failures"]
            if any(failures.values()):
                lines.append(f"2: serialization failures (retried by nobody, not counted): {failures}")
            if "server_cpu_us_per_update_versioned" in d:
                lines.append(f"2: server CPU per single-row UPDATE, one client: "
                             f"{d['server_cpu_us_per_update_versioned']:.0f} µs versioned, "
                             f"{d['server_cpu_us_per_update_plain']:.0f} µs plain")
        elif f.name == "tpcb" and f.status == "measured":
            lines.append(f"9: failed transactions (none expected): {d['failed_transactions']}")
        elif f.name == "current_scan" and f.status == "measured" and d["rewrite"] is not None:
            lines.append("3: enable copied the versioned table, so every row stores rv_version" if d["rewrite"] else
                         "3: enable added rv_version without copying the table (a fast default), so PostgreSQL "
                         "projects every row of a full scan; --rewrite copies it")
        elif f.name == "model_save" and f.status != "measured":
            lines.append(f"8: model store {f.status}")
    return lines


def emit(report: Report, fmt: Any) -> None:
    """Print the report: a table with notes for people, or one JSON (CSV) row per figure."""
    from . import _output

    if fmt is not _output.Format.table:
        _output.emit(COLUMNS, rows(report), fmt)
        return
    s = report.settings
    out = _output.console()
    out.print(f"rowver bench on PostgreSQL {report.server}: {s.rows:,} rows"
              f"{' (--quick: a smoke test, not a measurement)' if s.quick else ''}"
              f"{', enable --rewrite' if s.rewrite else ', enable --no-rewrite' if s.rewrite is False else ''}, "
              f"{report.seconds:.0f} s; ratio = versioned / plain, median of interleaved runs")
    out.print(_output.to_table(["#", "figure", "plain", "versioned", "ratio", "target", "result"],
                               table_rows(report), width=out.width))
    for line in notes(report):
        out.print(line)


@contextlib.contextmanager
def status_line() -> Iterator[Progress]:
    """A spinner on stderr that shows what the bench is doing, when stderr is a terminal."""
    import sys

    if not sys.stderr.isatty():
        yield lambda _: None
        return
    from rich.console import Console

    with Console(stderr=True).status("rowver bench") as status:
        yield lambda message: status.update(f"rowver bench: {message}")


__all__ = ["COLUMNS", "Figure", "Report", "Settings", "bench", "emit", "notes", "rows", "status_line", "table_rows"]
