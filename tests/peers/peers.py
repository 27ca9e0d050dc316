"""rowver beside its peers: the same workloads, measured by the same code, on the same server.

Peers:
- periods (the PostgreSQL extension, SYSTEM VERSIONING after SQL:2016): row-level
  triggers write a history row per changed row; ``T__as_of(timestamptz)`` reads the
  current table and the history, like rowver's ``T__as_of(version)``. Its history has no
  index until you make one ("be sure to index it properly"); we give it (id,
  system_time_start), the counterpart of rowver's (key, rv_version).
- sqlalchemy-continuum: versioning by the ORM at flush (validity strategy: a version
  table holding every version, current ones included, with transaction_id and
  end_transaction_id). It sees only ORM writes, so its write figures (1, 2) compare the
  ORM with continuum against the same ORM without it; its reads are SQL over the version
  table (an inlinable function with the query its validity strategy implies). The rows
  loaded before the run get the versions continuum would have written had the ORM
  inserted them (one transaction, one version each), so "the oldest version" exists.

Each peer subclasses rowver bench's run (rowver.bench._run._Run) and replaces only how a table is versioned (and,
for continuum, how writes are made): the loading, interleaving, repetitions, medians,
checkpoints, vacuums and queries are rowver bench's own. rowver's column is `rowver
bench` itself. Where a workload has no counterpart (sync, models; continuum and SQL
writers), the cell says n/a.

    .venv/bin/python tests/peers/peers.py --url postgresql://postgres@127.0.0.1:5432/postgres --rows 300000

The periods extension must be available on the server (Debian: postgresql-15-periods);
creating it needs a superuser, and it is dropped again when this script created it.
sqlalchemy-continuum comes from PyPI (pip install sqlalchemy-continuum).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.types.datetime
from psycopg import sql

import rowver
from rowver.bench import Figure, Settings, bench
from rowver.bench._core import _COLUMNS, _median, _ratio
from rowver.bench._features import _models_skipped
from rowver.bench._run import _Run

PEERS = ("rowver", "periods", "continuum")


def _na(figure: int, name: str, title: str, op: str, target: float, why: str) -> Figure:
    return Figure(figure, name, title, "", None, None, None, op, target, status=f"n/a: {why}")


def _models_na(why: str) -> list[Figure]:
    return _models_skipped(f"n/a: {why}")


def _reads_at_depth_na(why: str) -> list[Figure]:
    return [_na(10, "diff_adjacent", "diff of two adjacent versions", "<=", 20.0, why)]


def periods_available(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("select exists (select from pg_available_extensions where name = 'periods')").fetchone()[0]  # type: ignore[index]


def continuum_available() -> bool:
    try:
        import sqlalchemy_continuum  # noqa: F401
    except ImportError:
        return False
    return True


class _InfinityLoader(psycopg.types.datetime.TimestamptzLoader):
    def load(self, data: Any) -> Any:
        if bytes(data) == b"infinity":
            return dt.datetime.max.replace(tzinfo=dt.timezone.utc)
        if bytes(data) == b"-infinity":
            return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return super().load(data)


# -- periods --------------------------------------------------------------------------------------


class PeriodsRun(_Run):
    """The bench with periods' SYSTEM VERSIONING in place of rowver's."""

    version_type = "timestamptz"

    def _connect(self, *, prepared: bool = False) -> psycopg.Connection:
        conn = super()._connect(prepared=prepared)
        conn.adapters.register_loader("timestamptz", _InfinityLoader)  # periods' rows start at -infinity
        return conn

    def _enable(self) -> None:
        conn = self.conn
        installed = {r[0] for r in conn.execute("select extname from pg_extension")}
        self._created = [e for e in ("periods", "btree_gist") if e not in installed]
        conn.execute("create extension if not exists periods cascade")
        name = self._text("bench_versioned")
        conn.execute("select periods.add_system_time_period(%s::regclass)", (name,))
        conn.execute("select periods.add_system_versioning(%s::regclass)", (name,))
        self.hist, self.as_of = self._q("bench_versioned_history"), self._q("bench_versioned__as_of")
        conn.execute(sql.SQL("create index on {} (id, system_time_start)").format(self.hist))
        # the existing rows start at -infinity: any time from now on is after "the oldest version"
        self._v0 = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
        time.sleep(0.01)

    def _after_write(self) -> None:
        pass

    def _maintain(self) -> None:
        pass

    def _head(self) -> Any:
        return self.conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]

    @staticmethod
    def _retryable(exc: psycopg.Error) -> bool:
        # periods refuses to update a row created after the transaction started: 2201H
        return exc.sqlstate in ("40001", "2201H")

    def _sync(self) -> Figure:
        return _na(6, "sync_vs_copy", "sync against COPY", "<=", 2.0, "periods has no snapshot sync")

    def _models(self) -> list[Figure]:
        return _models_na("no model store")

    def _reads_at_depth(self) -> list[Figure]:
        return _reads_at_depth_na("not compared (rowver's diff and change feed)")

    def _before_drop(self, conn: psycopg.Connection) -> None:
        name = self._q("bench_versioned").as_string(conn)
        registered = conn.execute(
            "select to_regclass('periods.system_versioning') is not null"
            " and exists (select from periods.system_versioning where table_name = to_regclass(%s))",
            (name,)).fetchone()[0]  # type: ignore[index]
        if registered:
            conn.execute("select periods.drop_system_versioning(%s::regclass, 'CASCADE', true)", (name,))
            conn.execute("select periods.drop_system_time_period(%s::regclass, 'CASCADE', true)", (name,))

    def _after_drop(self, conn: psycopg.Connection) -> None:
        for ext in getattr(self, "_created", []):  # periods first: it needs btree_gist
            conn.execute(sql.SQL("drop extension if exists {}").format(sql.Identifier(ext)))


# -- sqlalchemy-continuum --------------------------------------------------------------------------


class ContinuumRun(_Run):
    """The bench with sqlalchemy-continuum: ORM writes on both sides, SQL reads."""

    def _enable(self) -> None:
        import sqlalchemy as sa
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
        from sqlalchemy_continuum import make_versioned, version_class, versioning_manager

        make_versioned(user_cls=None)  # continuum's global setup: why this runs in a process of its own

        class Base(DeclarativeBase):
            pass

        def columns(name: str, versioned: bool) -> type:
            body: dict[str, Any] = {
                "__tablename__": name,
                "id": mapped_column(sa.BigInteger, primary_key=True, autoincrement=False),
                "grp": mapped_column(sa.Integer), "qty": mapped_column(sa.Integer),
                "price": mapped_column(sa.Double), "name": mapped_column(sa.Text),
                "note": mapped_column(sa.Text, nullable=True),
                "updated_at": mapped_column(sa.DateTime(timezone=True)),
                "__annotations__": {"id": Mapped[int], "grp": Mapped[int], "qty": Mapped[int],
                                    "price": Mapped[float], "name": Mapped[str], "note": Mapped[Any],
                                    "updated_at": Mapped[dt.datetime]},
            }
            if versioned:
                body["__versioned__"] = {}
            return type(name, (Base,), body)

        self.Plain = columns("bench_plain", False)
        self.Versioned = columns("bench_versioned", True)
        sa.orm.configure_mappers()
        url = sa.engine.make_url(self.url).set(drivername="postgresql+psycopg")
        self.engine = sa.create_engine(url, pool_size=self.s.clients + 2, connect_args={
            "options": f"-c search_path={self.schema} -c max_parallel_workers_per_gather=0 -c jit=off"})
        vt = version_class(self.Versioned).__table__
        tt = versioning_manager.transaction_cls.__table__
        Base.metadata.create_all(self.engine, tables=[tt, vt])
        conn = self.conn
        # the versions continuum would have written had the ORM inserted the loaded rows
        conn.execute(sql.SQL("insert into {} (id, issued_at) values (1, now())").format(self._q(tt.name)))
        seq = conn.execute("select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                           " where n.nspname = %s and c.relkind = 'S' and c.relname like 'transaction%%'",
                           (self.schema,)).fetchone()
        if seq:
            conn.execute("select setval(%s::regclass, 1)", (self._text(seq[0]),))
        cols = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        self.hist = self._q(vt.name)
        conn.execute(sql.SQL("insert into {} ({}, transaction_id, end_transaction_id, operation_type)"
                             " select {}, 1, null, 0 from {}").format(self.hist, cols, cols, self.ver))
        conn.execute(sql.SQL("vacuum (analyze) {}").format(self.hist))
        # as of transaction v, as continuum's validity strategy defines it
        self.as_of = self._q("bench_versioned__continuum_as_of")
        conn.execute(sql.SQL("""create function {}(v bigint) returns setof {} language sql stable as $$
  select * from {} where transaction_id <= v and (end_transaction_id > v or end_transaction_id is null)
     and operation_type <> 2 $$""").format(self.as_of, self.hist, self.hist))
        self._v0 = 1
        self._transactions = self._q(tt.name)
        self._sessions: list[Any] = []

    def _after_write(self) -> None:
        pass

    def _maintain(self) -> None:
        pass

    def _head(self) -> Any:
        return self.conn.execute(sql.SQL("select max(id) from {}").format(self._transactions)).fetchone()[0]  # type: ignore[index]

    def _bulk_update(self) -> Figure:
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        s = self.s
        times: dict[str, list[float]] = {"plain": [], "versioned": []}
        for r in range(s.rounds):
            self.say(f"figure 1 (continuum): ORM update, round {r + 1} of {s.rounds}")
            for side, cls in (("plain", self.Plain), ("versioned", self.Versioned)):
                self._checkpoint()
                t = time.perf_counter()
                with Session(self.engine) as session:
                    for o in session.scalars(select(cls).where(cls.id % 10 == r)):  # type: ignore[attr-defined]
                        o.qty += 1
                        o.updated_at += dt.timedelta(hours=1)
                    session.commit()
                times[side].append(time.perf_counter() - t)
            self._vacuum(self.plain, self.ver, self.hist)
        p, v = _median(times["plain"]), _median(times["versioned"])
        return Figure(1, "bulk_update", "ORM update of 10% of rows (continuum against the plain ORM)", "s",
                      p, v, _ratio(v, p), "<=", 3.0, detail={"plain_s": times["plain"],
                                                               "versioned_s": times["versioned"]})

    def _updaters(self, conns: list[psycopg.Connection], table: sql.Composable) -> list[Callable[[int], None]]:
        from sqlalchemy.orm import Session

        cls = self.Plain if table is self.plain else self.Versioned

        def updater() -> Callable[[int], None]:
            session = Session(self.engine)
            self._sessions.append(session)

            def update(key: int) -> None:
                o = session.get(cls, key)
                o.qty += 1  # type: ignore[union-attr]
                session.commit()
            return update
        return [updater() for _ in conns]

    def _unchanged_bytes(self) -> Figure:
        return _na(7, "history_bytes_per_unchanged_row", "history bytes per unchanged row", "<=", 0.0,
                   "the ORM sends no UPDATE for an unchanged object, and continuum does not see SQL writers")

    def _sync(self) -> Figure:
        return _na(6, "sync_vs_copy", "sync against COPY", "<=", 2.0, "continuum has no snapshot sync")

    def _models(self) -> list[Figure]:
        return _models_na("no model store")

    def _reads_at_depth(self) -> list[Figure]:
        return _reads_at_depth_na("not compared (rowver's diff and change feed)")

    def _before_drop(self, conn: psycopg.Connection) -> None:
        for session in getattr(self, "_sessions", []):
            session.close()
        if hasattr(self, "engine"):
            self.engine.dispose()


# -- running and printing --------------------------------------------------------------------------


def run_peer(peer: str, url: str, settings: Settings, say: Callable[[str], None]) -> list[Figure]:
    if peer == "rowver":
        db = rowver.connect(url)
        try:
            return bench(db, rows=settings.rows, quick=settings.quick, models=False, progress=say).figures
        finally:
            db.close()
    run = {"periods": PeriodsRun, "continuum": ContinuumRun}[peer](url, settings, say)
    try:
        return run.measure(models=True)
    finally:
        run.cleanup()


def compare(url: str, *, rows: int, quick: bool = False, peers: tuple[str, ...] = PEERS,
            say: Callable[[str], None] = lambda _: None, continuum_rows: int | None = None) -> dict[str, Any]:
    """{peer: [figure, ...] or a reason it was not run}, as JSON-ready dicts."""
    settings = Settings.for_run(rows=rows, quick=quick)
    sizes = {peer: settings.rows for peer in peers}
    out: dict[str, Any] = {}
    for peer in peers:
        if peer == "periods" and not periods_available(url):
            out[peer] = "not run: the periods extension is not available on this server " \
                        "(Debian: apt-get install postgresql-15-periods)"
            continue
        if peer == "continuum" and not continuum_available():
            out[peer] = "not run: sqlalchemy-continuum is not installed (pip install sqlalchemy-continuum)"
            continue
        size = settings.rows
        if peer == "continuum" and continuum_rows:
            size = min(size, continuum_rows)
        sizes[peer] = size
        say(f"{peer}: starting, {size:,} rows")
        figures = run_peer(peer, url, Settings.for_run(rows=size, quick=quick), lambda m, p=peer: say(f"{p}: {m}"))
        out[peer] = [{"figure": f.figure, "name": f.name, "title": f.title, "unit": f.unit, "plain": f.plain,
                      "versioned": f.versioned, "ratio": f.ratio, "op": f.op, "target": f.target,
                      "pass": f.passed, "status": f.status, "detail": f.detail} for f in figures]
    return {"rows": sizes, "quick": quick, "peers": out}


def table(result: dict[str, Any]) -> str:
    peers = [p for p in result["peers"]]
    rows: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for peer in peers:
        if isinstance(result["peers"][peer], str):
            continue
        for f in result["peers"][peer]:
            if f["name"] not in rows:
                rows[f["name"]] = {"figure": f["figure"], "target": f"{f['op']} {f['target']:g}x"}
                order.append(f["name"])
            rows[f["name"]][peer] = f
    width = 14
    lines = [f"{'#':<3}{'figure':<34}{'target':<10}" + "".join(f"{p:>{width}}" for p in peers)]
    for name in sorted(order, key=lambda n: rows[n]["figure"]):
        r = rows[name]
        cells = []
        for peer in peers:
            f = r.get(peer)
            if f is None:
                cells.append("-")
            elif f["ratio"] is None:
                cells.append("n/a" if f["status"].startswith(("n/a", "not run")) else f["status"][:width - 1])
            else:
                cells.append(f"{f['ratio']:.2f}x {'ok' if f['pass'] else 'MISS'}")
        lines.append(f"{r['figure']:<3}{name:<34}{r['target']:<10}" + "".join(f"{c:>{width}}" for c in cells))
    for peer in peers:
        if isinstance(result["peers"][peer], str):
            lines.append(f"{peer}: {result['peers'][peer]}")
    lines.append("ratio = versioned / plain in the same run, median of interleaved repetitions; rows: "
                 + ", ".join(f"{p} {n:,}" for p, n in result["rows"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--continuum-rows", type=int, default=20_000,
                        help="rows for continuum, whose ORM flush takes milliseconds per changed row")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (not a measurement)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)}")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r}")

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    result = compare(args.url, rows=args.rows, quick=args.quick, peers=peers, say=say,
                     continuum_rows=args.continuum_rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
