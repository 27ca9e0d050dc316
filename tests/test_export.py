"""rowver export / db.export: a table as of a version, as Parquet. Each version's file set read
back equals the table read as of that version (db.read, the rows db.as_of's frame is made of),
value for value; the metadata names the version; a version exported again is left alone; a
type with no faithful Parquet type is one error naming it, or an explicit cast; a failed export
leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import rowver
from rowver import _export

pq = pytest.importorskip("pyarrow.parquet")  # (in the test extra: CI has it)

ROWVER = str(Path(sys.executable).parent / "rowver")

COLUMNS = """id int primary key, b bool, i2 smallint, i8 bigint, f4 real, f8 double precision,
             n numeric(12,3), big numeric(50,10), t text, vc varchar(10), c char(3), d date,
             ts timestamp, tstz timestamptz, tm time, raw bytea, j json, jb jsonb, u uuid, mood mood,
             ints int[], texts text[], prices numeric(8,2)[]"""

ROW = """(%s, true, -7, 9007199254740993, 1.5, 0.1, 12345.678, 12345678901234567890.0123456789, 'tëxt', 'short',
          'ab', '2026-01-31', '2026-01-31 12:34:56.789012', '2026-01-31 12:34:56.5+05:30', '23:59:59.999999',
          '\\x00ff10', '{"a": [1, 2.50]}', '{"b": {"c": null}, "n": 1.10}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
          'happy', '{1,NULL,3}', '{"x",NULL,"z z"}', '{1.50,NULL}')"""


def make_wide(conn: psycopg.Connection) -> list[int]:
    """A table with every supported type, and three versions: inserts (one row all NULL), then
    updates, an insert and a delete, then more."""
    conn.execute("create type mood as enum ('sad', 'happy')")
    conn.execute(f"create table wide ({COLUMNS})")
    conn.execute("select rowver.enable('wide')")
    versions = []
    with conn.transaction():
        for i in (1, 2, 3):
            conn.execute(f"insert into wide values {ROW}", (i,))
        conn.execute("insert into wide (id) values (4)")  # every other column NULL
    versions.append(version(conn))
    with conn.transaction():
        conn.execute("update wide set n = -0.001, t = null, tstz = '1970-01-01 00:00:00+00', ints = '{}',"
                     " jb = '[1, \"two\"]', mood = 'sad' where id = 1")
        conn.execute("delete from wide where id = 2")
        conn.execute(f"insert into wide values {ROW}", (5,))
    versions.append(version(conn))
    with conn.transaction():
        conn.execute("update wide set raw = '', big = -1, texts = null where id = 5")
        conn.execute("delete from wide where id = 4")
    versions.append(version(conn))
    return versions


def version(conn: psycopg.Connection) -> int:
    return int(conn.execute("select max(version) from rowver.changeset").fetchone()[0])


def plain(column: str, value: Any) -> Any:
    """A value as the Parquet file holds it: json and jsonb as their text (compared parsed),
    uuid as its text."""
    if value is None:
        return None
    if column in ("j", "jb"):
        return json.loads(value) if isinstance(value, str) else value
    if column == "u":
        return str(value)
    return value


def as_records(columns: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [{c: plain(c, v) for c, v in zip(columns, row)} for row in rows]


def test_each_version_reads_back_equal_to_the_table_as_of_it(db_url: str, conn: psycopg.Connection,
                                                             tmp_path: Path) -> None:
    versions = make_wide(conn)
    db = rowver.connect(db_url)
    db.publish_head()
    for v in versions:
        result = db.export("wide", tmp_path, v)
        assert result.written and result.version == v and result.path == tmp_path / f"version={v}"
        table = pq.read_table(result.path)
        expected = db.read("wide", v)
        assert table.column_names == expected.columns
        assert as_records(table.column_names, [tuple(r.values()) for r in table.to_pylist()]) == \
            as_records(expected.columns, expected.rows)
        assert table.num_rows == result.rows == len(expected.rows)
        for file in result.files:
            metadata = pq.read_schema(file).metadata
            assert metadata[b"rowver.version"] == str(v).encode()
            assert metadata[b"rowver.table"] == b"public.wide"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"version={v}" for v in versions)
    schema = pq.read_schema(tmp_path / f"version={versions[0]}" / "part-00000.parquet")
    types = {f.name: str(f.type) for f in schema}
    assert types == {
        "id": "int32", "b": "bool", "i2": "int16", "i8": "int64", "f4": "float", "f8": "double",
        "n": "decimal128(12, 3)", "big": "decimal256(50, 10)", "t": "string", "vc": "string", "c": "string",
        "d": "date32[day]", "ts": "timestamp[us]", "tstz": "timestamp[us, tz=UTC]", "tm": "time64[us]",
        "raw": "binary", "j": "string", "jb": "string", "u": "string", "mood": "string",
        "ints": "list<element: int32>", "texts": "list<element: string>", "prices": "list<element: decimal128(8, 2)>",
        "rv_version": "int64",  # (each row's version, as an as-of read shows it)
    }
    # exact as stored: numerics to the last digit, the instant of a timestamptz in UTC
    first = pq.read_table(tmp_path / f"version={versions[0]}").to_pylist()[0]
    assert str(first["big"]) == "12345678901234567890.0123456789"
    assert first["tstz"].isoformat() == "2026-01-31T07:04:56.500000+00:00"
    assert first["i8"] == 9007199254740993


def test_exporting_a_version_again_writes_nothing(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    versions = make_wide(conn)
    db = rowver.connect(db_url)
    first = db.export("wide", tmp_path, versions[1])
    stamps = [f.stat().st_mtime_ns for f in first.files]
    again = db.export("wide", tmp_path, str(versions[1]))
    assert not again.written and again.rows == first.rows and again.files == first.files
    assert [f.stat().st_mtime_ns for f in first.files] == stamps
    out = subprocess.run([ROWVER, "export", "wide", "--at", str(versions[1]), "--to", str(tmp_path),
                          "--format", "parquet", "--url", db_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "exported already" in out.stdout and "nothing written" in out.stdout
    # another table's (or version's) files under that name are not taken for it
    (tmp_path / "other").mkdir()
    db.export("wide", tmp_path / "other", versions[0])
    (tmp_path / "other" / f"version={versions[0]}").rename(tmp_path / "other" / f"version={versions[2]}")
    with pytest.raises(rowver.InvalidInputError, match="is not public.wide as of version"):
        db.export("wide", tmp_path / "other", versions[2])


def test_the_cli_streams_in_batches_and_files(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    conn.execute("create table big (id int primary key, v text)")
    conn.execute("select rowver.enable('big')")
    conn.execute("insert into big select g, 'v' || g from generate_series(1, 2500) g")
    db = rowver.connect(db_url)
    result = _export.export(db, "big", "head", tmp_path, batch=300, rows_per_file=1000)
    assert [f.name for f in result.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_table(result.path).column("id").to_pylist() == list(range(1, 2501))
    out = subprocess.run([ROWVER, "export", "big", "--to", str(tmp_path / "cli"), "--url", db_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2,500 rows in 1 file" in out.stdout
    (path,) = (tmp_path / "cli").iterdir()
    assert pq.read_table(path).num_rows == 2500


def test_a_type_without_a_faithful_parquet_type_is_an_error_or_a_cast(db_url: str, conn: psycopg.Connection,
                                                                      tmp_path: Path) -> None:
    conn.execute("create table odd (id int primary key, span interval, amount numeric, at point)")
    conn.execute("select rowver.enable('odd')")
    conn.execute("insert into odd values (1, '1 day 2 hours', 1.23456789, '(1,2)')")
    db = rowver.connect(db_url)
    with pytest.raises(rowver.UnsupportedError, match="column span of odd is interval"):
        db.export("odd", tmp_path, cast={"amount": "numeric(20,8)", "at": "text"})
    with pytest.raises(rowver.UnsupportedError, match="column amount of odd is numeric,"):
        db.export("odd", tmp_path, cast={"span": "text", "at": "text"})
    assert not any(tmp_path.iterdir())  # nothing half-written
    result = db.export("odd", tmp_path, cast={"span": "text", "amount": "numeric(20,8)", "at": "text"})
    (row,) = pq.read_table(result.path).to_pylist()
    assert row == {"id": 1, "span": "1 day 02:00:00", "amount": Decimal("1.23456789"), "at": "(1,2)",
                   "rv_version": row["rv_version"]}
    out = subprocess.run([ROWVER, "export", "odd", "--to", str(tmp_path / "cli"), "--url", db_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "span" in out.stderr and "--cast span=text" in out.stderr
    for bad in ({"nope": "text"}, {"span": "no_such_type"}, {"span": "text; drop table odd"}):
        with pytest.raises(rowver.RowverError):
            db.export("odd", tmp_path / "bad", cast=bad)
    assert conn.execute("select count(*) from odd").fetchone() == (1,)


def test_infinity_fails_whole_and_leaves_nothing(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    conn.execute("create table times (id int primary key, at timestamptz)")
    conn.execute("select rowver.enable('times')")
    conn.execute("insert into times select g, now() from generate_series(1, 10) g")
    conn.execute("insert into times values (11, 'infinity')")
    db = rowver.connect(db_url)
    with pytest.raises(rowver.UnsupportedError, match="infinity"):
        rowver._export.export(db, "times", "head", tmp_path, batch=3)
    assert list(tmp_path.iterdir()) == []
    assert db.export("times", tmp_path, cast={"at": "text"}).rows == 11


def test_pyarrow_missing_is_one_clear_error(db_url: str, conn: psycopg.Connection, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    conn.execute("create table t (id int primary key)")
    conn.execute("select rowver.enable('t')")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # (import pyarrow now fails)
    with pytest.raises(rowver.UnsupportedError, match=r"pip install 'rowver\[export\]'"):
        rowver.connect(db_url).export("t", tmp_path)


# -- Delta Lake ---------------------------------------------------------------------------

DELTA_CASTS = {"tm": "text", "big": "text"}  # (Delta Lake has no time type, no decimal over 38 digits)


def test_delta_holds_one_commit_per_version_each_equal_to_the_table_as_of_it(db_url: str, conn: psycopg.Connection,
                                                                            tmp_path: Path) -> None:
    deltalake = pytest.importorskip("deltalake")
    versions = make_wide(conn)
    conn.execute("select rowver.tag('last', %s)", (str(versions[2]),))
    db = rowver.connect(db_url)
    with db.changeset(message="move 3 to 6", author="ana"):  # a key changes, and another row's values
        db.conn.execute("update wide set id = 6 where id = 3")
        db.conn.execute("update wide set f8 = null, texts = '{\"new\"}' where id = 1")
    versions.append(version(conn))
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('other')")
    conn.execute("insert into other values (1)")
    versions.append(version(conn))  # (wide unchanged)
    path = tmp_path / "wide"
    with pytest.raises(rowver.UnsupportedError, match="column tm of wide is time without time zone, which has no Delta"):
        db.export("wide", path, versions[0], format="delta", cast={"big": "text"})
    results = [db.export("wide", path, v, format="delta", cast=DELTA_CASTS) for v in versions]
    assert [r.written for r in results] == [True] * 5 and [r.version for r in results] == versions
    # after the first, only the change: the changed keys' states written, a key gone deleted
    assert [r.changed for r in results] == [None, 3, 2, 3, 0]
    commits = list(reversed(deltalake.DeltaTable(str(path)).history()))  # (oldest first)
    assert [c["version"] for c in commits] == [0, 1, 2, 3, 4]  # one Delta version per rowver version
    assert [c["rowver.version"] for c in commits] == [str(v) for v in versions]
    assert [c["rowver.export"] for c in commits] == ["full", "changes", "changes", "changes", "changes"]
    assert [c["operation"] for c in commits] == ["WRITE", "MERGE", "MERGE", "MERGE", "WRITE"]
    metrics = [c["operationMetrics"] for c in commits]
    assert metrics[0]["num_added_rows"] == 4
    # v2: id 1 updated, 2 deleted, 5 inserted; v3: 5 updated, 4 deleted; v4: 1 updated, 3 deleted, 6 inserted
    assert [(m["num_source_rows"], m["num_target_rows_inserted"], m["num_target_rows_updated"],
             m["num_target_rows_deleted"]) for m in metrics[1:4]] == [(3, 1, 1, 1), (2, 0, 1, 1), (3, 1, 1, 1)]
    assert metrics[4]["num_added_rows"] == 0 and metrics[4]["num_added_files"] == 0  # (wide unchanged: empty)
    assert commits[2]["rowver.tags"] == "last" and commits[2]["rowver.since"] == str(versions[1])
    assert commits[3]["rowver.authors"] == "ana" and commits[3]["rowver.messages"] == f"{versions[3]}: move 3 to 6"
    assert [c["rowver.changesets"] for c in commits[1:]] == [str(v) for v in versions[1:4]] + [""]
    assert all(c["rowver.table"] == "public.wide" for c in commits)
    for k, (v, result) in enumerate(zip(versions, results)):
        table = deltalake.DeltaTable(str(path), version=k).to_pyarrow_table()
        got = sorted(table.to_pylist(), key=lambda r: r["id"])
        expected = db.read("wide", v)
        assert table.column_names == expected.columns
        want = as_records(expected.columns, expected.rows)
        for row in want:  # the two cast columns: as the server prints them
            row["big"] = None if row["big"] is None else str(row["big"])
            row["tm"] = None if row["tm"] is None else row["tm"].isoformat()
        assert as_records(table.column_names, [tuple(r.values()) for r in got]) == want
        assert result.rows == len(want)
    # the same version again: nothing written; an older one: refused
    again = db.export("wide", path, versions[2], format="delta", cast=DELTA_CASTS)
    assert not again.written and again.rows == results[2].rows
    assert deltalake.DeltaTable(str(path)).version() == len(versions) - 1
    skipping = tmp_path / "skipping"
    db.export("wide", skipping, versions[0], format="delta", cast=DELTA_CASTS)
    db.export("wide", skipping, versions[2], format="delta", cast=DELTA_CASTS)
    with pytest.raises(rowver.InvalidInputError, match="versions go forward"):
        db.export("wide", skipping, versions[1], format="delta", cast=DELTA_CASTS)
    assert deltalake.DeltaTable(str(skipping)).version() == 1
    assert deltalake.DeltaTable(str(skipping)).history(1)[0]["rowver.changesets"] == \
        ",".join(str(v) for v in versions[1:3])


def test_delta_writes_only_the_files_holding_changed_keys(db_url: str, conn: psycopg.Connection, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Changes in one key range rewrite the data file holding it, not the table; a key with a
    quote in its column name; a column cast differently, added or dropped, or history pruned in
    between: the table written whole (an overwrite), equal to the table as of the version."""
    deltalake = pytest.importorskip("deltalake")
    conn.execute('create table runs ("Run ""id""" bigint primary key, note text)')
    conn.execute("select rowver.enable('runs')")
    conn.execute("insert into runs select g, 'n' || g from generate_series(1, 4000) g")
    db = rowver.connect(db_url)
    first = version(conn)
    path = tmp_path / "runs"
    monkeypatch.setattr(rowver._export, "DELTA_FILE_BYTES", 16_000)  # (data files of a few hundred rows)
    rowver._export.export(db, "runs", first, path, fmt="delta", batch=500)
    files = len(deltalake.DeltaTable(str(path)).file_uris())
    assert files >= 4
    with conn.transaction():
        conn.execute('update runs set note = null where "Run ""id""" in (5, 6)')
        conn.execute('delete from runs where "Run ""id""" = 7')
        conn.execute("insert into runs values (4001, 'new')")
    result = db.export("runs", path, format="delta")
    metrics = deltalake.DeltaTable(str(path)).history(1)[0]["operationMetrics"]
    assert result.changed == 4 and result.rows == 4000
    assert metrics["num_target_rows_deleted"] == 1 and metrics["num_target_rows_updated"] == 2
    assert metrics["num_target_rows_inserted"] == 1
    assert metrics["num_output_rows"] < 4000 / 2  # (what the changed keys' files held, rewritten; not the table)
    assert metrics["num_target_files_removed"] < files

    def check(v: int) -> None:
        got = sorted(tuple(r.values()) for r in deltalake.DeltaTable(str(path)).to_pyarrow_table().to_pylist())
        assert got == sorted(db.read("runs", v).rows)

    check(result.version)
    conn.execute("alter table runs add column tier text")
    db.refresh("runs")
    conn.execute("update runs set tier = 'gold' where \"Run \"\"id\"\"\" = 1")
    result = db.export("runs", path, format="delta")
    assert deltalake.DeltaTable(str(path)).history(1)[0]["rowver.export"] == "full overwrite"
    assert result.changed is None and "tier" in deltalake.DeltaTable(str(path)).to_pyarrow_table().column_names
    check(result.version)
    conn.execute("update runs set tier = 'silver' where \"Run \"\"id\"\"\" = 2")
    result = db.export("runs", path, format="delta", cast={"note": "varchar(20)", "tier": "bytea"})
    assert deltalake.DeltaTable(str(path)).history(1)[0]["rowver.export"] == "full overwrite"  # (tier retyped)
    last = result.version
    conn.execute("update runs set note = 'pruned' where \"Run \"\"id\"\"\" <= 10")
    conn.execute("update runs set note = 'again' where \"Run \"\"id\"\"\" = 1")
    assert db.prune("runs", version(conn)) > 0  # (the version there can no longer be read)
    result = db.export("runs", path, format="delta")
    commit = deltalake.DeltaTable(str(path)).history(1)[0]
    assert commit["rowver.export"] == "full overwrite" and commit["rowver.since"] == str(last)
    check(result.version)


def test_a_failed_delta_export_commits_nothing(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    deltalake = pytest.importorskip("deltalake")
    conn.execute("create table times (id int primary key, at timestamptz)")
    conn.execute("select rowver.enable('times')")
    conn.execute("insert into times select g, now() from generate_series(1, 10) g")
    db = rowver.connect(db_url)
    db.export("times", tmp_path, format="delta")
    conn.execute("insert into times values (11, 'infinity')")
    with pytest.raises(rowver.UnsupportedError, match="infinity"):
        rowver._export.export(db, "times", "head", tmp_path, fmt="delta", batch=3)
    assert deltalake.DeltaTable(str(tmp_path)).version() == 0
    assert deltalake.DeltaTable(str(tmp_path)).to_pyarrow_table().num_rows == 10
    out = subprocess.run([ROWVER, "export", "times", "--to", str(tmp_path), "--format", "delta", "--cast", "at=text",
                          "--url", db_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "11 rows" in out.stdout
    assert deltalake.DeltaTable(str(tmp_path)).to_pyarrow_table().column("at").to_pylist()[-1] == "infinity"
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('other')")
    with pytest.raises(rowver.InvalidInputError, match="is a Delta table of public.times, not of public.other"):
        db.export("other", tmp_path, format="delta")


def test_delta_changes_of_a_composite_text_key(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    """A key of two columns, one of them text with quotes and accents: each version's commit
    merges the change, and reads back equal to the table as of it."""
    deltalake = pytest.importorskip("deltalake")
    conn.execute("create table pairs (id int, part text, qty int, primary key (id, part))")
    conn.execute("select rowver.enable('pairs')")
    conn.execute("insert into pairs select g, 'p''' || g % 3 || 'é', g from generate_series(1, 50) g")
    db = rowver.connect(db_url)
    versions = [version(conn)]
    for change in ("update pairs set qty = null where id <= 5",
                   "update pairs set part = 'moved \"x\"' where id = 7",
                   "delete from pairs where id > 45; insert into pairs values (7, 'p''0é', 70)"):
        with conn.transaction():
            for statement in change.split(";"):
                conn.execute(statement)
        versions.append(version(conn))
    results = [db.export("pairs", tmp_path, v, format="delta") for v in versions]
    assert [r.changed for r in results] == [None, 5, 2, 6]
    commits = list(reversed(deltalake.DeltaTable(str(tmp_path)).history()))
    assert [c["rowver.export"] for c in commits] == ["full", "changes", "changes", "changes"]
    for k, v in enumerate(versions):
        got = sorted(tuple(r.values()) for r in deltalake.DeltaTable(str(tmp_path), version=k).to_pyarrow_table().to_pylist())
        assert got == sorted(db.read("pairs", v).rows)
