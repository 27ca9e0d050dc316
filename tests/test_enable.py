"""Enabling and disabling versioning: keys, odd identifiers, long names, refused table
kinds, and the exact SQL shown before anything changes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

import rowver
from rowver.cli import app


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as handle:
        yield handle


ODD = [
    ("public", "Order Items"),
    ("Sales Dept", 'we"ird'),
    ("public", "größe"),
    ("public", "select"),
    ("public", "t" * 60),
    ("public", "é" * 31),  # 62 bytes: the suffixes must be cut on a character boundary
]


@pytest.mark.parametrize("schema,name", ODD, ids=[f"{s}.{n[:12]}" for s, n in ODD])
def test_odd_identifiers_work_end_to_end(db: rowver.Database, schema: str, name: str) -> None:
    table = sql.Identifier(schema, name)
    ref = table.as_string(db.conn)  # the name as PostgreSQL reads it, e.g. "Sales Dept"."we""ird"
    db.conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    db.conn.execute(sql.SQL('create table {} ("Key Col" int primary key, "from" text, "ü" int)').format(table))
    db.conn.execute(sql.SQL("insert into {} values (1, 'a', 1)").format(table))
    db.enable(ref)
    with db.changeset() as cs:
        cs.upsert(ref, [{"Key Col": 1, "from": "b", "ü": 2}, {"Key Col": 2, "from": "c", "ü": 3}])
    assert list(db.as_of(ref, 1)["from"]) == ["a"]
    assert list(db.as_of(ref, "head")["from"]) == ["b", "c"]
    assert list(db.history(ref, 1)["from"]) == ["a", "b"]
    names = db.conn.execute(
        "select history_name, versions_name, as_of_name, stamp_name, capture_name from rowver.versioned").fetchone()
    assert all(len(n.encode()) <= 63 for n in names)
    assert len(set(names)) == 5
    assert db.check(ref).empty
    db.disable(ref)
    assert db.conn.execute(sql.SQL("select * from {}").format(table)).fetchall() == [(1, "b", 2), (2, "c", 3)]


def test_long_names_that_share_a_prefix_stay_distinct(db: rowver.Database) -> None:
    for suffix in ("a", "b"):
        db.conn.execute(sql.SQL("create table {} (id int primary key)").format(sql.Identifier("x" * 62 + suffix)))
        db.enable(sql.Identifier("x" * 62 + suffix).as_string(db.conn))
    names = [r[0] for r in db.conn.execute("select history_name from rowver.versioned order by id")]
    assert len(set(names)) == 2 and all(len(n) <= 63 for n in names)


def test_table_without_primary_key_needs_a_key(db: rowver.Database) -> None:
    db.conn.execute("create table events (code text not null, at date not null, payload text)")
    with pytest.raises(rowver.InvalidInputError, match="no primary key"):
        db.enable("events")
    with pytest.raises(rowver.InvalidInputError, match="not backed by a unique index"):
        db.enable("events", key=["code", "at"])
    db.conn.execute("create table nullable (code text, x int)")
    db.conn.execute("create unique index on nullable (code)")
    with pytest.raises(rowver.InvalidInputError, match="must be NOT NULL"):
        db.enable("nullable", key=["code"])
    with pytest.raises(rowver.UnknownTableError, match="no column"):
        db.enable("events", key=["nope"])
    db.conn.execute("create unique index on events (at, code)")
    db.enable("events", key=["code", "at"])
    db.conn.execute("insert into events values ('a', '2026-01-01', 'x')")
    db.conn.execute("update events set payload = 'y'")
    assert list(db.history("events", {"code": "a", "at": "2026-01-01"})["payload"]) == ["x", "y"]
    # nothing half-done after the failed attempts: one changeset for the enable, one per write
    assert len(db.log()) == 3


@pytest.mark.parametrize("ddl,message", [
    ("create view v as select 1 as id", "is a view"),
    ("create temp table tmp (id int primary key)", "temporary"),
    ("create unlogged table u (id int primary key)", "unlogged"),
    ("create table parent (id int primary key); create table kid () inherits (parent)", "inheritance"),
    ("create table p (id int primary key) partition by range (id); "
     "create table p1 partition of p for values from (0) to (10)", "partition of"),
])
def test_refused_table_kinds(db: rowver.Database, ddl: str, message: str) -> None:
    db.conn.execute(ddl)
    name = ddl.split()[2] if "temp" not in ddl and "unlogged" not in ddl else ddl.split()[3]
    name = "p1" if "partition of" in ddl else name
    with pytest.raises(rowver.RowverError, match=message):
        db.enable(name)
    assert db.conn.execute("select count(*) from rowver.versioned").fetchone()[0] == 0


def test_a_versioned_table_does_not_become_a_partition_or_a_child_and_check_names_what_got_in(
        db: rowver.Database) -> None:
    """Statements naming a parent fire its statement triggers, not T's: rows written through it
    would get no history. PostgreSQL refuses the attach; what it cannot refuse, check names."""
    conn = db.conn
    conn.execute("create table t (id int primary key, v int)")
    db.enable("t")
    conn.execute("insert into t values (1, 0)")
    conn.execute("create table parted (id int primary key, v int, rv_version bigint) partition by range (id)")
    conn.execute("create table parent (id int, v int, rv_version bigint)")
    for ddl in ("alter table parted attach partition t for values from (0) to (10)", "alter table t inherit parent"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="rowver_not_a_partition"), conn.transaction():
            conn.execute(ddl)
    assert conn.execute("select count(*) from pg_inherits").fetchone()[0] == 0
    assert conn.execute("select * from rowver.check('t')").fetchall() == []
    # a partitioned versioned table can carry no such trigger, and a child may still inherit from t
    conn.execute("create table pt (id int primary key, v int) partition by range (id)")
    conn.execute("create table pt_1 partition of pt for values from (0) to (10)")
    db.enable("pt")
    conn.execute("create table outer_parted (id int primary key, v int, rv_version bigint) partition by range (id)")
    conn.execute("alter table outer_parted attach partition pt for values from (0) to (100)")
    conn.execute("create table kid () inherits (t)")
    assert conn.execute("select * from rowver.check() order by 1").fetchall() == [
        ("public.pt", "hierarchy", "public.pt is a partition of public.outer_parted: rows written through "
                                   "public.outer_parted get no history; detach public.pt from it, or version "
                                   "public.outer_parted instead"),
        ("public.t", "hierarchy", "public.kid inherits from public.t: statements on public.t write its rows too, "
                                  "which are not versioned; remove the inheritance "
                                  "(ALTER TABLE public.kid NO INHERIT public.t)")]
    conn.execute("alter table outer_parted detach partition pt")  # the remedies check names
    conn.execute("alter table kid no inherit t")
    assert conn.execute("select * from rowver.check()").fetchall() == []


def test_check_names_a_versioned_table_or_history_made_unlogged(db: rowver.Database) -> None:
    """Enable refuses unlogged tables; one made unlogged since loses its rows (or its past) in a crash."""
    conn = db.conn
    conn.execute("create table t (id int primary key, v int)")
    db.enable("t")
    conn.execute("insert into t values (1, 0)")
    conn.execute("alter table t set unlogged")
    conn.execute("alter table t__history set unlogged")
    assert conn.execute("select * from rowver.check('t') order by detail").fetchall() == [
        ("public.t", "unlogged", "public.t is unlogged: a crash empties it, and its rows leave without history; "
                                 "ALTER TABLE public.t SET LOGGED"),
        ("public.t", "unlogged", "public.t__history is unlogged: a crash empties it, and the history is lost; "
                                 "ALTER TABLE public.t__history SET LOGGED")]
    conn.execute("alter table t set logged")
    conn.execute("alter table t__history set logged")
    assert conn.execute("select * from rowver.check('t')").fetchall() == []


def test_enable_twice_and_history_table_refused(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key)")
    db.enable("t")
    with pytest.raises(rowver.RowverError, match="already versioned"):
        db.enable("t")
    with pytest.raises(rowver.RowverError, match="own history table"):
        db.enable("t__history")


def test_ddl_is_exactly_what_enable_runs_and_changes_nothing(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key, x int)")
    script = db.ddl("t")
    assert "create table public.t__history" in script and "rowver.register" in script
    assert db.conn.execute("select count(*) from rowver.versioned").fetchone()[0] == 0
    assert db.conn.execute("select to_regclass('t__history')").fetchone()[0] is None
    # the script is runnable as it stands (as psql would run it)
    with db.conn.transaction():
        db.conn.execute(script)
    assert db.status().table_name.tolist() == ["public.t"]
    assert db.check().empty


def test_rewrite_stores_the_version_in_every_row(db: rowver.Database, db_url: str) -> None:
    """With rewrite, the table is copied once and every row carries its version on disk;
    without it, rv_version is a fast default (no row copied, atthasmissing). By default,
    tables up to rowver.rewrite_limit are copied, larger ones are not."""
    def filenode(t: str) -> int:
        return db.conn.execute("select pg_relation_filenode(%s::regclass)", (t,)).fetchone()[0]

    def has_missing(t: str) -> bool:
        missing = db.conn.execute("select atthasmissing from pg_attribute where attrelid = %s::regclass"
                                  " and attname = 'rv_version'", (t,)).fetchone()[0]
        assert db.conn.execute("select rowver.stores_version(%s)", (t,)).fetchone()[0] is not missing
        return missing

    db.conn.execute("create table fast (id int primary key, x text)")
    db.conn.execute("create table copied (id int primary key, x text)")
    db.conn.execute("create table small (id int primary key, x text)")
    db.conn.execute("create table large (id int primary key, x text)")
    db.conn.execute("create table parted (id int primary key, x text) partition by range (id)")
    db.conn.execute("create table parted_1 partition of parted for values from (0) to (1000)")
    for t in ("fast", "copied", "parted", "small", "large"):
        db.conn.execute(sql.SQL("insert into {} select i, 'row ' || i from generate_series(1, 500) i")
                        .format(sql.Identifier(t)))
    before = {t: filenode(t) for t in ("fast", "copied", "parted_1", "small", "large")}
    assert "using rv_version + 0" not in db.ddl("copied", rewrite=False)
    assert "using rv_version + 0" in db.ddl("copied")  # a small table: copied by default
    shown = CliRunner().invoke(app, ["ddl", "copied", "--no-rewrite", "--url", db_url])
    assert shown.exit_code == 0 and "using rv_version + 0" not in shown.output, shown.output
    result = CliRunner().invoke(app, ["enable", "fast", "--no-rewrite", "--url", db_url])
    assert result.exit_code == 0 and "fast was not copied" in result.output, result.output
    v_fast = db.conn.execute("select enabled_version from rowver.versioned where relid = 'fast'::regclass").fetchone()[0]
    v_copied = db.enable("copied", rewrite=True)
    result = CliRunner().invoke(app, ["enable", "parted", "--url", db_url])  # all partitions count
    assert result.exit_code == 0 and "not copied" not in result.output, result.output
    assert db.conn.execute("select rowver.stores_version('parted')").fetchone()[0] is True
    db.enable("small")
    with db.conn.transaction():
        size = db.conn.execute("select pg_total_relation_size('large')").fetchone()[0]
        db.conn.execute("select set_config('rowver.rewrite_limit', %s, true)", (f"{size - 1} bytes",))
        db.enable("large")
    assert filenode("fast") == before["fast"] and has_missing("fast")
    assert filenode("large") == before["large"] and has_missing("large")
    for t in ("copied", "parted_1", "small"):
        assert filenode(t) != before[t] and not has_missing(t), t
    assert db.conn.execute("select array_agg(distinct rv_version) from copied").fetchone()[0] == [v_copied]
    assert db.conn.execute("select count(*) from parted where rv_version is null").fetchone()[0] == 0
    with db.changeset() as cs:
        cs.upsert("copied", [{"id": 1, "x": "changed"}])
    assert db.as_of("copied", v_copied)["x"].tolist() == db.as_of("fast", v_fast)["x"].tolist()
    assert db.check().empty


def test_a_table_dropped_without_disable_is_named_and_forgotten(db: rowver.Database, db_url: str) -> None:
    for name in ("gone", "kept"):
        db.conn.execute(sql.SQL("create table {} (id int primary key, x int)").format(sql.Identifier(name)))
        db.enable(name)
    with db.changeset() as cs:
        cs.upsert("gone", [{"id": 1, "x": 1}])
        cs.upsert("kept", [{"id": 1, "x": 1}])
    oid = db.conn.execute("select 'gone'::regclass::oid").fetchone()[0]
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):  # its versions view needs it
        db.conn.execute("drop table gone")
    db.conn.execute("drop table gone cascade")

    found = db.check()
    assert found["invariant"].tolist() == ["dropped"]
    assert f"select rowver.forget({oid})" in found["detail"][0]
    result = CliRunner().invoke(app, ["check", "--url", db_url])
    assert result.exit_code == 1 and f"rowver.forget({oid})" in result.output
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="still exists"):
        db.conn.execute("select rowver.forget('kept'::regclass)")
    with pytest.raises(psycopg.errors.UndefinedObject, match="no versioned table"):
        db.conn.execute("select rowver.forget(1)")

    db.conn.execute("select rowver.forget(%s)", (oid,))
    assert db.check().empty
    assert db.status().table_name.tolist() == ["public.kept"]
    assert db.log()["tables"].iloc[0] == ["public.kept"]
    # what is left of its history is the caller's; versioning a new table of that name needs it gone
    db.conn.execute("drop table gone__history")
    db.conn.execute("create table gone (id int primary key, x int)")
    db.enable("gone")
    assert db.check().empty


def test_disable_with_and_without_keeping_history(db: rowver.Database) -> None:
    for name in ("keep", "drop"):
        db.conn.execute(sql.SQL("create table {} (id int primary key, x int)").format(sql.Identifier(name)))
        db.conn.execute(sql.SQL("insert into {} values (1, 1)").format(sql.Identifier(name)))
        db.enable(name)
        db.conn.execute(sql.SQL("update {} set x = 2").format(sql.Identifier(name)))
    assert "drop table" not in db.disable_ddl("keep", keep_history=True)
    db.disable("keep", keep_history=True)
    db.disable("drop")
    assert db.conn.execute("select x, rv_version, rv_until from keep__history").fetchall() == [(1, 1, 2)]
    assert db.conn.execute("select to_regclass('drop__history')").fetchone()[0] is None
    for name in ("keep", "drop"):
        cols = [d.name for d in db.conn.execute(sql.SQL("select * from {}").format(sql.Identifier(name))).description]
        assert cols == ["id", "x"]
    with pytest.raises(rowver.NotVersionedError):
        db.disable("drop")
    db.conn.execute("truncate drop")  # an ordinary table again


def test_sql_surface_from_psql_alone(conn: psycopg.Connection) -> None:
    conn.execute("create table s (id int primary key, x int)")
    conn.execute("select rowver.enable('s', key => array['id'], triggers => true, ignore => '{}')")
    conn.execute("insert into s values (1, 1)")
    v = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("select rowver.tag('t1', %s)", (str(v),))
    assert conn.execute("select rowver.resolve('t1')").fetchone()[0] == v
    plan = "\n".join(r[0] for r in conn.execute("explain select * from s__as_of(1) where id = 1"))
    assert "Index" in plan and "s__as_of" not in plan  # inlined: an index lookup
    conn.execute("prepare q(bigint) as select * from s__as_of($1) where id = 1")
    plan = "\n".join(r[0] for r in conn.execute("explain execute q(1)"))
    assert "Index" in plan
