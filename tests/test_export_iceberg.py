"""rowver export --format iceberg / db.export(format="iceberg"): each exported version is an
Iceberg snapshot tagged v<version> whose rows (read by that tag) equal the table read as of the
version, value for value; its summary names the version and the changesets; after the first,
an export writes only the rows that changed; a version exported again writes nothing; an older
one is refused; a failed export commits nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_export import ROWVER, as_records, make_wide, version  # (the Parquet export's table and helpers)

import rowver

pytest.importorskip("pyarrow")
pytest.importorskip("pyiceberg")  # (in the test extra: CI has it)
from pyiceberg.catalog.sql import SqlCatalog  # noqa: E402

CASTS = {"big": "text"}  # (Iceberg has no decimal over 38 digits)


def catalog(warehouse: Path, uri: str | None = None) -> Any:
    """The Iceberg catalog an export wrote: by default the export's own, pyiceberg's SQL catalog in
    a file beside the warehouse (what a user without --catalog gets, so the tests read it back);
    given a PostgreSQL URL, the catalog kept there (test_a_catalog_in_postgres_...)."""
    uri = uri.replace("postgresql://", "postgresql+psycopg://") if uri else f"sqlite:///{warehouse}/catalog.db"
    return SqlCatalog("rowver", uri=uri, warehouse=warehouse.as_uri())


def read_tag(table: Any, tag: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The Iceberg table's rows at a tag, in key order, as the Parquet tests compare them."""
    got = table.scan().use_ref(tag).to_arrow()
    rows = sorted(got.to_pylist(), key=lambda r: r["id"])
    return got.column_names, as_records(got.column_names, [tuple(r.values()) for r in rows])


def expected(db: rowver.Database, table: str, v: int) -> tuple[list[str], list[dict[str, Any]]]:
    want = db.read(table, v)
    records = as_records(want.columns, want.rows)
    for row in records:  # the cast column: as the server prints it
        if "big" in row:
            row["big"] = None if row["big"] is None else str(row["big"])
    return want.columns, records


def changed_state(db: rowver.Database) -> int:
    """A fourth version: a key changes (3 becomes 6), and another row's values."""
    with db.changeset(message="move 3 to 6", author="ana"):
        db.conn.execute("update wide set id = 6 where id = 3")
        db.conn.execute("update wide set f8 = null, texts = '{\"new\"}' where id = 1")
    return version(db.conn)


def test_each_version_is_a_tagged_snapshot_equal_to_the_table_as_of_it(db_url: str, conn: psycopg.Connection,
                                                                      tmp_path: Path) -> None:
    versions = make_wide(conn)
    conn.execute("select rowver.tag('last', %s)", (str(versions[2]),))
    db = rowver.connect(db_url)
    versions.append(changed_state(db))
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('other')")
    conn.execute("insert into other values (1)")
    versions.append(version(conn))  # (wide unchanged)
    with pytest.raises(rowver.UnsupportedError, match="column big of wide is numeric.50,10., wider than Iceberg"):
        db.export("wide", tmp_path, versions[0], format="iceberg")
    results = [db.export("wide", tmp_path, v, format="iceberg", cast=CASTS) for v in versions]
    assert [r.written for r in results] == [True] * 5
    assert [r.changed for r in results] == [4, 2, 1, 2, 0]  # (all; then the changed keys still there)
    table = catalog(tmp_path).load_table("rowver.public_wide")
    assert table.properties["rowver.version"] == str(versions[-1])
    for v, result in zip(versions, results):
        assert read_tag(table, f"v{v}") == expected(db, "wide", v)
        summary = table.snapshot_by_name(f"v{v}").summary
        assert summary["rowver.version"] == str(v) and summary["rowver.table"] == "public.wide"
        assert result.rows == len(expected(db, "wide", v)[1]) == \
            int(summary["total-records"]) - int(summary.get("total-position-deletes") or 0)
    # the changesets of wide after the version exported before: all up to it, one, one, one, none
    changesets = [table.snapshot_by_name(f"v{v}").summary["rowver.changesets"] for v in versions]
    assert changesets[0].split(",")[-1] == str(versions[0])
    assert changesets[1:] == [str(v) for v in versions[1:4]] + [""]
    summaries = [table.snapshot_by_name(f"v{v}").summary for v in versions]
    assert [s["rowver.export"] for s in summaries] == ["full", "changes", "changes", "changes", "changes"]
    assert [s.get("rowver.changed-keys") for s in summaries] == [None, "3", "2", "3", "0"]  # (3 and 6: both)
    # only the change written: the new states appended, the old rows of changed keys deleted by
    # position (a delete file); no data file rewritten
    assert [s.get("added-records") or "0" for s in summaries] == ["4", "2", "1", "2", "0"]
    assert [s.get("added-position-deletes") or "0" for s in summaries] == ["0", "2", "2", "2", "0"]
    assert [s.get("added-delete-files") or "0" for s in summaries] == ["0", "1", "1", "1", "0"]
    assert all(s.get("deleted-data-files") is None for s in summaries)
    assert len(table.snapshots()) == len(versions)  # (one snapshot per version: the tagged one)
    assert summaries[2]["rowver.tags"] == "last" and summaries[2]["rowver.since"] == str(versions[1])
    assert summaries[3]["rowver.authors"] == "ana" and summaries[3]["rowver.messages"] == f"{versions[3]}: move 3 to 6"
    schema = {f.name: str(f.field_type) for f in table.schema().fields}
    assert schema["i2"] == "int" and schema["tstz"] == "timestamptz" and schema["tm"] == "time"
    assert schema["n"] == "decimal(12, 3)" and schema["prices"] == "list<decimal(8, 2)>"
    # the same version again: nothing written; an older one: refused
    snapshots = len(table.snapshots())
    again = db.export("wide", tmp_path, str(versions[1]), format="iceberg", cast=CASTS)
    assert not again.written and again.rows == results[1].rows
    out = subprocess.run([ROWVER, "export", "wide", "--at", "last", "--to", str(tmp_path), "--format", "iceberg",
                          "--cast", "big=text", "--url", db_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "exported already" in out.stdout, out.stderr
    assert len(catalog(tmp_path).load_table("rowver.public_wide").snapshots()) == snapshots
    skipping = tmp_path / "skipping"
    db.export("wide", skipping, versions[0], format="iceberg", cast=CASTS)
    db.export("wide", skipping, versions[2], format="iceberg", cast=CASTS)
    with pytest.raises(rowver.InvalidInputError, match="versions go forward"):
        db.export("wide", skipping, versions[1], format="iceberg", cast=CASTS)
    skipped = catalog(skipping).load_table("rowver.public_wide")
    assert sorted(skipped.refs()) == sorted(["main", f"v{versions[0]}", f"v{versions[2]}"])
    assert read_tag(skipped, f"v{versions[2]}") == expected(db, "wide", versions[2])


def test_a_catalog_in_postgres_a_name_a_composite_key_and_the_cli(db_url: str, conn: psycopg.Connection,
                                                                 tmp_path: Path) -> None:
    conn.execute("create table pairs (id int, part text, qty int, primary key (id, part))")
    conn.execute("select rowver.enable('pairs')")
    conn.execute("insert into pairs select g, 'p' || g % 3, g from generate_series(1, 50) g")
    db = rowver.connect(db_url)
    first = version(conn)
    db.export("pairs", tmp_path, format="iceberg", catalog=db_url, name="lake.pairs")
    with conn.transaction():
        conn.execute("update pairs set qty = null where id <= 5")
        conn.execute("update pairs set part = 'moved' where id = 7")
        conn.execute("delete from pairs where id > 45")
    out = subprocess.run([ROWVER, "export", "pairs", "--to", str(tmp_path), "--format", "iceberg",
                          "--catalog", db_url, "--as", "lake.pairs", "--url", db_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "45 rows written; 45 rows" in out.stdout  # (a composite key: the whole table, overwritten)
    second = version(conn)
    # the catalog is two tables in the same database
    assert conn.execute("select table_namespace, table_name from iceberg_tables").fetchall() == [("lake", "pairs")]
    in_postgres = catalog(tmp_path, db_url)
    try:
        table = in_postgres.load_table("lake.pairs")
        assert table.snapshot_by_name(f"v{second}").summary["rowver.export"] == "full overwrite"
        assert len(table.snapshots()) == 2  # (one each)
        for v in (first, second):
            got = sorted(table.scan().use_ref(f"v{v}").to_arrow().to_pylist(), key=lambda r: (r["id"], r["part"]))
            want = db.read("pairs", v)
            assert got == [dict(zip(want.columns, row)) for row in want.rows]
    finally:
        in_postgres.engine.dispose()  # (its pooled connections: the test's database is dropped after it)
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('other')")
    with pytest.raises(rowver.InvalidInputError, match="holds public.pairs, not public.other"):
        db.export("other", tmp_path, format="iceberg", catalog=db_url, name="lake.pairs")
    for bad in ({"name": "nodot"}, {"catalog": "not a url"}):
        with pytest.raises(rowver.InvalidInputError):
            db.export("other", tmp_path / "bad", format="iceberg", **bad)
    with pytest.raises(rowver.ServerError, match="cannot open the Iceberg catalog") as unreachable:
        db.export("other", tmp_path / "bad", format="iceberg", catalog="postgresql://nobody:secret@127.0.0.1:1/x")
    assert "secret" not in str(unreachable.value)
    with pytest.raises(rowver.InvalidInputError, match="format='iceberg' only"):
        db.export("other", tmp_path / "bad", catalog=db_url)


def test_a_failed_iceberg_export_commits_nothing(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    conn.execute("create table times (id int primary key, at timestamptz)")
    conn.execute("select rowver.enable('times')")
    conn.execute("insert into times select g, now() from generate_series(1, 10) g")
    db = rowver.connect(db_url)
    db.export("times", tmp_path, format="iceberg")
    conn.execute("insert into times values (11, 'infinity')")
    with pytest.raises(rowver.UnsupportedError, match="infinity"):
        rowver._iceberg.export(db, "times", "head", tmp_path, batch=3)
    table = catalog(tmp_path).load_table("rowver.public_times")
    assert len(table.snapshots()) == 1 and table.scan().to_arrow().num_rows == 10
    fresh = tmp_path / "fresh"
    with pytest.raises(rowver.UnsupportedError, match="infinity"):
        db.export("times", fresh, format="iceberg")
    assert catalog(fresh).list_tables("rowver") == []  # (not even an empty table)


def test_pyiceberg_missing_is_one_clear_error(db_url: str, conn: psycopg.Connection, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("create table t (id int primary key)")
    conn.execute("select rowver.enable('t')")
    monkeypatch.setitem(sys.modules, "pyiceberg.catalog.sql", None)
    with pytest.raises(rowver.UnsupportedError, match=r"pip install 'rowver\[iceberg\]'"):
        rowver.connect(db_url).export("t", tmp_path, format="iceberg")


def test_columns_added_or_dropped_in_between_overwrite_the_whole_table(db_url: str, tmp_path: Path) -> None:
    db = rowver.connect(db_url)
    c = db.conn
    c.execute("create table acct (id int primary key, owner text, tier text)")
    c.execute("select rowver.enable('acct')")
    c.execute("insert into acct values (1, 'ann', 'gold'), (2, 'bo', null), (3, 'cy', 'basic')")

    def export_and_read(tag_rows: dict[int, list[dict[str, Any]]]) -> Any:
        v = version(c)
        db.export("acct", tmp_path, v, format="iceberg")
        want = db.read("acct", v)
        tag_rows[v] = [dict(zip(want.columns, row)) for row in want.rows]
        return catalog(tmp_path).load_table("rowver.public_acct")

    def rows_at(table: Any, v: int) -> list[dict[str, Any]]:
        return sorted(table.scan().use_ref(f"v{v}").to_arrow().to_pylist(), key=lambda r: r["id"])

    exported: dict[int, list[dict[str, Any]]] = {}
    export_and_read(exported)
    with c.transaction():
        c.execute("alter table acct add column region text not null default 'eu'")
        db.refresh("acct")
    c.execute("update acct set owner = 'zed', region = 'us' where id = 1")
    export_and_read(exported)
    db.alter("acct", "drop column tier")
    c.execute("update acct set owner = 'amy' where id = 2")
    table = export_and_read(exported)
    first, second, third = exported
    assert [table.snapshot_by_name(f"v{v}").summary["rowver.export"] for v in exported] == \
        ["full", "full overwrite", "full overwrite"]
    assert len(table.snapshots()) == 3
    for v, rows in exported.items():  # each tag as exported, in the columns it had then
        assert rows_at(table, v) == rows
    assert "region" not in rows_at(table, first)[0] and "tier" not in rows_at(table, third)[0]
    assert [f.name for f in table.schema().fields] == ["id", "owner", "rv_version", "region"]


def test_history_pruned_past_the_version_there_overwrites_the_whole_table(db_url: str, tmp_path: Path) -> None:
    db = rowver.connect(db_url)
    c = db.conn
    c.execute("create table t (id int primary key, v text)")
    c.execute("select rowver.enable('t')")
    c.execute("insert into t select g, 'a' || g from generate_series(1, 20) g")
    db.export("t", tmp_path, format="iceberg")
    c.execute("update t set v = 'b' where id <= 5")
    c.execute("delete from t where id > 15")
    last = version(c)
    c.execute("update t set v = 'c' where id = 1")
    assert db.prune("t", last) > 0  # (the version exported is no longer readable)
    result = db.export("t", tmp_path, format="iceberg")
    table = catalog(tmp_path).load_table("rowver.public_t")
    assert table.snapshot_by_name(f"v{result.version}").summary["rowver.export"] == "full overwrite"
    want = db.read("t", result.version)
    got = sorted(table.scan().use_ref(f"v{result.version}").to_arrow().to_pylist(), key=lambda r: r["id"])
    assert got == [dict(zip(want.columns, row)) for row in want.rows] and result.changed == result.rows == 15


def test_deletes_by_position_stack_up_and_a_full_overwrite_drops_them(db_url: str, tmp_path: Path) -> None:
    """A key changed again after its old row was deleted by position is deleted once more, where
    it is now (never twice where it was); every tag reads back as the table was; an overwrite of
    the whole table drops the delete files with the data files they named."""
    db = rowver.connect(db_url)
    c = db.conn
    c.execute("create table t (id int primary key, v text)")
    c.execute("select rowver.enable('t')")
    c.execute("insert into t select g, 'a' || g from generate_series(1, 20) g")
    exported = [version(c)]
    db.export("t", tmp_path, format="iceberg")
    as_exported = {exported[0]: sorted(db.read("t", exported[0]).rows)}  # (in the columns of the time)
    for change in ("update t set v = 'b' where id <= 5",
                   "update t set v = 'c' where id <= 3; delete from t where id = 4",
                   "insert into t values (4, 'back'); update t set v = 'd' where id in (1, 20)"):
        with c.transaction():
            for statement in change.split(";"):
                c.execute(statement)
        exported.append(version(c))
        result = db.export("t", tmp_path, format="iceberg")
        as_exported[exported[-1]] = sorted(db.read("t", exported[-1]).rows)
        assert result.rows == len(as_exported[exported[-1]])
    table = catalog(tmp_path).load_table("rowver.public_t")
    summaries = [table.snapshot_by_name(f"v{v}").summary for v in exported]
    assert [s.get("added-position-deletes") or "0" for s in summaries] == ["0", "5", "4", "2"]
    assert summaries[-1]["total-position-deletes"] == "11" and summaries[-1]["total-delete-files"] == "3"

    def rows_at(table: Any, v: int) -> list[tuple[Any, ...]]:
        return sorted(tuple(r.values()) for r in table.scan().use_ref(f"v{v}").to_arrow().to_pylist())

    for v in exported:
        assert rows_at(table, v) == as_exported[v]
    with c.transaction():
        c.execute("alter table t add column w int")
        db.refresh("t")
    c.execute("update t set w = 1 where id = 2")
    exported.append(version(c))
    result = db.export("t", tmp_path, format="iceberg")
    as_exported[exported[-1]] = sorted(db.read("t", exported[-1]).rows)
    table = catalog(tmp_path).load_table("rowver.public_t")
    last = table.snapshot_by_name(f"v{exported[-1]}").summary
    assert last["rowver.export"] == "full overwrite" and result.rows == 20
    assert (last.get("total-delete-files") or "0") == "0" and (last.get("total-position-deletes") or "0") == "0"
    assert len(list(table.scan().plan_files())) == 1 and not next(iter(table.scan().plan_files())).delete_files
    for v in exported:
        assert rows_at(table, v) == as_exported[v]
