"""rowver analyze: a table's floor (no current row is older), below which as-of reads leave
the table itself alone, and which stays true while writers go on."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

import rowver
from rowver.cli import app


def _every_version(conn: psycopg.Connection, first: int, head: int) -> dict[int, list[tuple]]:
    return {v: conn.execute("select id, qty from items__as_of(%s) order by id", (v,)).fetchall()
            for v in range(first, head + 1)}


def _reads_items(conn: psycopg.Connection, v: int) -> bool:
    plan = "\n".join(r[0] for r in conn.execute(f"explain (costs off) select * from items__as_of({v})"))
    return " on items\n" in plan + "\n" or " on items " in plan


@pytest.fixture
def items(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("create table items (id int primary key, qty int not null)")
    conn.execute("insert into items select g, 0 from generate_series(1, 40) g")
    conn.execute("select rowver.enable('items')")
    for r in range(4):  # every row updated: none is as old as the enabling version
        conn.execute("update items set qty = qty + 1 where id %% 4 = %s", (r,))
    conn.execute("delete from items where id = 7")
    conn.execute("insert into items values (7, 70)")
    return conn


def test_reads_below_the_floor_skip_the_table_and_read_the_same(items: psycopg.Connection, db_url: str) -> None:
    first = items.execute("select enabled_version from rowver.versioned").fetchone()[0]
    head = items.execute("select rowver.publish_head()").fetchone()[0]
    before = _every_version(items, first, head)
    assert _reads_items(items, first)
    with rowver.connect(db_url) as db:
        floor = db.analyze("items")
    oldest = items.execute("select min(rv_version) from items").fetchone()[0]
    assert floor == oldest > first
    assert not _reads_items(items, first) and not _reads_items(items, oldest - 1)
    assert _reads_items(items, oldest)
    assert _every_version(items, first, head) == before
    # a prepared read with the version as a parameter: the same rows
    for v in (first, oldest - 1, oldest, head):
        got = items.execute("select id, qty from items__as_of(%s) order by id", (v,), prepare=True).fetchall()
        assert got == before[v]
    assert items.execute("select * from rowver.check('items')").fetchall() == []
    # writers go on: their rows carry newer versions, and every version still reads the same
    items.execute("update items set qty = -1 where id = 1")
    items.execute("delete from items where id = 2")
    head2 = items.execute("select rowver.publish_head()").fetchone()[0]
    after = _every_version(items, first, head2)
    assert {v: after[v] for v in before} == before
    assert items.execute("select * from rowver.check('items')").fetchall() == []


def _history_blocks_read(conn: psycopg.Connection, v: int) -> int:
    """Heap blocks of the history that an as-of read of version v visits (all of them for a
    sequential scan), from EXPLAIN ANALYZE."""
    def walk(node: dict) -> int:
        own = 0
        if node.get("Relation Name") == "items__history":
            own = (node.get("Exact Heap Blocks", 0) + node.get("Lossy Heap Blocks", 0)
                   if node["Node Type"] == "Bitmap Heap Scan" else pages)
        return own + sum(walk(child) for child in node.get("Plans", []))
    pages = conn.execute("select pg_relation_size('items__history') / 8192").fetchone()[0]
    return walk(conn.execute(f"explain (analyze, format json) select * from items__as_of({v})").fetchone()[0][0]["Plan"])


def test_analyze_summarizes_the_historys_new_brin_ranges(items: psycopg.Connection, db_url: str) -> None:
    # enough history for many 16-page ranges, on a server whose autovacuum may not have summarized them
    items.execute("insert into items select g, 0 from generate_series(41, 20000) g")
    for r in range(3):
        items.execute("update items set qty = qty + 1 where id %% 3 = %s", (r,))
    head = items.execute("select rowver.publish_head()").fetchone()[0]
    before = items.execute("select id, qty from items__as_of(%s) order by id", (head,)).fetchall()
    with rowver.connect(db_url) as db:
        db.analyze("items")
    brins = [r[0] for r in items.execute(
        "select i.indexrelid::regclass::text from pg_index i join pg_class c on c.oid = i.indexrelid"
        " join pg_am a on a.oid = c.relam where i.indrelid = 'items__history'::regclass and a.amname = 'brin'")]
    assert len(brins) == 2
    for index in brins:  # nothing left to summarize
        assert items.execute("select brin_summarize_new_values(%s::regclass)", (index,)).fetchone()[0] == 0, index
    # a read at head skips the ranges of states superseded before it: a few pages of the history, not all
    pages = items.execute("select pg_relation_size('items__history') / 8192").fetchone()[0]
    assert pages > 100
    assert _history_blocks_read(items, head) < pages / 4
    assert items.execute("select id, qty from items__as_of(%s) order by id", (head,)).fetchall() == before


def test_a_row_older_than_the_floor_is_named_by_check_and_analyze_sets_it_again(items: psycopg.Connection) -> None:
    floor = items.execute("select rowver.analyze('items')").fetchone()[0]
    items.execute("update rowver.versioned set current_floor = current_floor + 3")  # (a floor too high)
    found = items.execute("select invariant, detail from rowver.check('items')").fetchall()
    # the floor above a row, and an as-of function made with another floor than the registry's
    assert sorted(i for i, _ in found) == ["definition", "floor"]
    assert "rowver analyze" in dict(found)["floor"]
    assert items.execute("select rowver.analyze('items')").fetchone()[0] == floor
    assert items.execute("select * from rowver.check('items')").fetchall() == []


def test_analyze_needs_the_owner_and_read_committed(items: psycopg.Connection, db_url: str) -> None:
    items.execute("create role rv_reader login")
    items.execute("grant select, update on items to rv_reader")
    try:
        with psycopg.connect(db_url, user="rv_reader", autocommit=True) as other:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the owner"):
                other.execute("select rowver.analyze('items')")
    finally:
        items.execute(sql.SQL("drop owned by rv_reader; drop role rv_reader"))
    with pytest.raises(psycopg.errors.ActiveSqlTransaction, match="READ COMMITTED"):
        with items.transaction():
            items.execute("set transaction isolation level repeatable read")
            items.execute("select rowver.analyze('items')")
    assert items.execute("select current_floor from rowver.versioned").fetchone()[0] is None


def test_a_table_whose_writers_set_versions_keeps_no_floor(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table feed (id int primary key, qty int)")
    conn.execute("select rowver.enable('feed', triggers => false)")
    assert conn.execute("select rowver.analyze('feed')").fetchone()[0] is None
    result = CliRunner().invoke(app, ["analyze", "feed", "--url", db_url])
    assert result.exit_code == 0 and "every version scan" in result.output


def test_cli_analyze_names_the_floor(items: psycopg.Connection, db_url: str) -> None:
    result = CliRunner().invoke(app, ["analyze", "items", "--url", db_url])
    floor = items.execute("select current_floor from rowver.versioned").fetchone()[0]
    assert result.exit_code == 0, result.output
    assert f"reads below version {floor:,} skip the table" in result.output
    result = CliRunner().invoke(app, ["analyze", "nosuch", "--url", db_url])
    assert result.exit_code != 0 and "nosuch" in result.output
