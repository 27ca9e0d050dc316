"""The core of a bench run: its settings, figures and report, the bench tables' shape, and the
connections, names and helpers every figure uses (``_Core``). What is versioned, and how, is
rowver's here (``_enable``, ``_after_write``, ``_head``, ``_history_size``); a peer comparison
(tests/peers) overrides those."""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

from ..errors import RowverError

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


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _ratio(versioned: float | None, plain: float | None) -> float | None:
    if versioned is None or plain is None or plain == 0:
        return None
    return versioned / plain


def _expect(ok: bool, message: str) -> None:
    """The bench measures the right thing, or says it did not."""
    if not ok:
        raise RowverError(f"bench: {message}")


def _round(values: Sequence[float], digits: int = 4) -> list[float]:
    return [round(v, digits) for v in values]


class _Core:
    """One bench run's connections, its scratch schema, and the helpers its figures share."""

    # set by the run as it loads and versions the bench tables
    plain: sql.Composable  # bench_plain
    ver: sql.Composable  # bench_versioned
    hist: sql.Composable  # its history
    as_of: sql.Composable  # the function reading it as of a version
    _hist0: tuple[int, int, int]  # the history's size before figure 1

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

    def _maintain(self) -> None:
        """Before the read figures, what a user runs after large writes (as VACUUM ANALYZE on the
        plain side): rowver analyze, whose floor lets reads of versions older than every current
        row skip the table."""
        self.conn.execute("select rowver.analyze(%s::regclass)", (self._text("bench_versioned"),))

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

    def _heap_bytes(self, table: sql.Composable) -> int:
        return int(self.conn.execute(sql.SQL("select pg_relation_size({}::regclass)").format(
            sql.Literal(table.as_string(self.conn)))).fetchone()[0])  # type: ignore[index]
