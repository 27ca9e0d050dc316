"""Reads whose cost follows the answer (issue 17): as of a version at or above a table's
newest change, T__as_of reads the table alone, and returns what the definition returns."""

from __future__ import annotations

import psycopg
import pytest

DEFINITION = """select id, v, rv_version from t__versions
                 where rv_version <= %(v)s and (rv_until is null or rv_until > %(v)s) and not rv_deleted
                 order by id"""


def _history_read(conn: psycopg.Connection, version: int) -> bool:
    """Whether reading t as of version scans its history."""
    plan = conn.execute("explain (analyze, costs off, timing off, format json) select * from t__as_of(%s)",
                        (version,)).fetchone()[0][0]["Plan"]

    def scans(node: dict) -> bool:
        if node.get("Relation Name") == "t__history":
            return node.get("Actual Loops", 0) > 0
        return any(scans(p) for p in node.get("Plans", []))
    return scans(plan)


def test_as_of_at_or_above_the_newest_change_reads_the_table_alone(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('t'), rowver.enable('other')")
    conn.execute("insert into t select g, 0 from generate_series(1, 50) g")
    conn.execute("update t set v = 1 where id <= 10")
    conn.execute("delete from t where id > 45")
    conn.execute("update t set id = 100 where id = 45")  # a key change: a tombstone and a new key
    last = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    conn.execute("insert into other values (1)")  # versions above t's newest change
    conn.execute("insert into other values (2)")
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    for v in range(1, head + 1):
        expected = conn.execute(DEFINITION, {"v": v}).fetchall()
        assert conn.execute("select id, v, rv_version from t__as_of(%s) order by id", (v,)).fetchall() == expected, v
        assert _history_read(conn, v) == (v < last), v
    # a writer of t that has not committed changes nothing for the reader, but what it
    # committed moves t's newest change up
    with psycopg.connect(conn.info.dsn) as writer:
        writer.execute("update t set v = 2 where id = 1")
        assert not _history_read(conn, head)
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select v from t__as_of(%s) where id = 1", (head,)).fetchone()[0] == 2
    assert _history_read(conn, head - 1)
    assert conn.execute("select v from t__as_of(%s) where id = 1", (head - 1,)).fetchone()[0] == 1


@pytest.mark.corrupts_history
def test_check_names_a_version_above_the_newest_recorded_change(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('t'), rowver.enable('other')")
    conn.execute("insert into t values (1, 0)")
    conn.execute("insert into other values (1)")
    above = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    assert conn.execute("select * from rowver.check()").fetchall() == []
    # a version written past the triggers (as a superuser may): as-of reads would miss it
    conn.execute("alter table t disable trigger user")
    conn.execute("update t set rv_version = %s", (above,))
    conn.execute("alter table t enable trigger user")
    found = conn.execute("select table_name, invariant from rowver.check() where invariant = 'high_water'").fetchall()
    assert found == [("public.t", "high_water")]


def test_as_of_through_the_history_index_returns_the_definition(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("select rowver.enable('t')")
    conn.execute("insert into t select g, 0 from generate_series(1, 300) g")
    for r in range(12):  # updates, deletes and re-inserts, each its own version
        conn.execute("update t set v = v + 1 where id %% 4 = %s", (r % 4,))
        conn.execute("delete from t where id = %s", (r + 1,))
        conn.execute("insert into t values (%s, -1) on conflict (id) do update set v = -2", (r + 200,))
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("set enable_seqscan = off")  # the history's BRIN index, however small the table
    plan = str(conn.execute("explain select * from t__as_of(%s)", (head - 1,)).fetchall())
    assert "t__history_rv_until" in plan, plan
    for v in range(1, head + 1):
        assert conn.execute("select id, v, rv_version from t__as_of(%s) order by id", (v,)).fetchall() == \
            conn.execute(DEFINITION, {"v": v}).fetchall(), v
