"""Reads whose cost follows the answer (issue 17): T__as_of reads history through its BRIN
index on rv_until, so a read of a recent version or of head reads only the history pages of
states superseded after it, and returns what the definition returns at every version."""

from __future__ import annotations

import psycopg

DEFINITION = """select id, v, rv_version from t__versions
                 where rv_version <= %(v)s and (rv_until is null or rv_until > %(v)s) and not rv_deleted
                 order by id"""


def _history_rows_read(conn: psycopg.Connection, version: int) -> int:
    """How many history rows reading t as of version looked at (read through the index)."""
    plan = conn.execute("explain (analyze, costs off, timing off, format json) select * from t__as_of(%s)",
                        (version,)).fetchone()[0][0]["Plan"]

    def read(node: dict) -> int:
        if node.get("Relation Name") == "t__history":
            assert node["Node Type"] == "Bitmap Heap Scan", node  # through t__history_rv_until
            return node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + \
                node.get("Rows Removed by Index Recheck", 0)
        return sum(read(p) for p in node.get("Plans", []))
    return read(plan)


def test_as_of_reads_only_the_history_after_the_version(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('t'), rowver.enable('other')")
    conn.execute("insert into t select g, 0 from generate_series(1, 20000) g")
    for r in range(8):  # updates, deletes, re-inserts and a key change, each its own version
        conn.execute("update t set v = v + 1 where id %% 4 = %s", (r % 4,))
        conn.execute("delete from t where id = %s", (r + 1,))
        conn.execute("insert into t values (%s, -1) on conflict (id) do update set v = -2", (r + 30000,))
    conn.execute("update t set id = 90000 where id = 2500")
    last = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    conn.execute("insert into other values (1)")  # versions above t's newest change
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("vacuum analyze t__history")  # (every page range summarized)
    conn.execute("set enable_seqscan = off")  # the index however small the table
    for v in range(1, head + 1):
        assert conn.execute("select id, v, rv_version from t__as_of(%s) order by id", (v,)).fetchall() == \
            conn.execute(DEFINITION, {"v": v}).fetchall(), v
    total = conn.execute("select count(*) from t__history").fetchone()[0]
    # at or above t's newest change no state is superseded after it: one page range at most
    assert _history_rows_read(conn, head) < total / 10, (total, head)
    assert _history_rows_read(conn, last) < total / 10
    assert _history_rows_read(conn, last - 1) < total / 4  # the last round's pages
    assert _history_rows_read(conn, 1) == total


def test_a_writer_that_has_not_committed_changes_no_read(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("select rowver.enable('t')")
    conn.execute("insert into t values (1, 0), (2, 0)")
    conn.execute("update t set v = 1 where id = 1")
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    before = conn.execute("select * from t__as_of(%s) order by id", (head,)).fetchall()
    with psycopg.connect(conn.info.dsn) as writer:
        writer.execute("update t set v = 2 where id = 1")
        writer.execute("delete from t where id = 2")
        assert conn.execute("select * from t__as_of(%s) order by id", (head,)).fetchall() == before
    head2 = conn.execute("select rowver.publish_head()").fetchone()[0]
    assert conn.execute("select id, v from t__as_of(%s) order by id", (head2,)).fetchall() == [(1, 2)]
    assert conn.execute("select * from t__as_of(%s) order by id", (head,)).fetchall() == before
