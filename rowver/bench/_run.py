"""A bench run from start to end: the scratch database, the tables loaded and versioned, every
figure in turn (``_Run`` = the core plus the write, read and feature figures), and the cleanup."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from .._database import Database
from .._server import server_url_for
from ..errors import InvalidInputError
from ._core import _CREATE, _FILL, Figure, Progress, Report, Settings
from ._features import _Features, _models_skipped
from ._reads import _Reads
from ._writes import _Writes

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


class _Run(_Writes, _Reads, _Features):
    """One bench run: its connections, its scratch schema, and the figures in order."""

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
        self._maintain()
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
