"""Capture by triggers: every writer is tracked, no-ops make no version, tombstones are
point events, and nothing a rolled-back statement did leaves a trace."""

from __future__ import annotations

import psycopg
import pytest


def history(conn: psycopg.Connection, table: str = "items") -> list[tuple]:
    return conn.execute(
        f"select id, name, rv_version, rv_until, rv_deleted from {table}__history order by id, rv_version"
    ).fetchall()


def changesets(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("select version from rowver.changeset order by version")]


@pytest.fixture
def items(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("create table items (id int primary key, name text not null, qty int, doc json, code char(4))")
    conn.execute("insert into items values (1, 'one', 1, '{\"a\": 1}', 'x'), (2, 'two', 2, null, 'y')")
    conn.execute("select rowver.enable('items')")
    return conn


def test_existing_rows_become_the_enabling_version(items: psycopg.Connection) -> None:
    assert changesets(items) == [1]
    assert items.execute("select id, rv_version from items order by id").fetchall() == [(1, 1), (2, 1)]
    msg = items.execute("select message from rowver.changeset").fetchone()[0]
    assert msg == "enable public.items"
    assert history(items) == []


def test_update_keeps_old_state_in_history(items: psycopg.Connection) -> None:
    items.execute("update items set name = 'uno' where id = 1")
    assert history(items) == [(1, "one", 1, 2, False)]
    assert items.execute("select rv_version from items where id = 1").fetchone()[0] == 2
    assert items.execute("select name from items__as_of(1) where id = 1").fetchone()[0] == "one"
    assert items.execute("select name from items__as_of(2) where id = 1").fetchone()[0] == "uno"


def test_noop_update_keeps_counts_and_returning_and_makes_no_version(items: psycopg.Connection) -> None:
    cur = items.execute("update items set name = name, doc = '{\"a\": 1}', code = 'x' where id = 1 returning id, rv_version")
    assert cur.rowcount == 1
    assert cur.fetchall() == [(1, 1)]
    assert history(items) == []
    assert changesets(items) == [1]


def test_json_column_change_is_detected(items: psycopg.Connection) -> None:
    items.execute("update items set doc = '{\"a\": 2}' where id = 1")
    assert [h[:3] for h in history(items)] == [(1, "one", 1)]


def test_delete_writes_state_and_tombstone(items: psycopg.Connection) -> None:
    items.execute("delete from items where id = 2")
    assert history(items) == [(2, "two", 1, 2, False), (2, None, 2, 2, True)]
    assert items.execute("select count(*) from items__as_of(1)").fetchone()[0] == 2
    assert items.execute("select count(*) from items__as_of(2)").fetchone()[0] == 1


def test_update_then_delete_in_one_transaction(items: psycopg.Connection) -> None:
    with items.transaction():
        items.execute("update items set name = 'zwei' where id = 2")
        items.execute("delete from items where id = 2")
    # the intermediate state is no version; the delete is one tombstone
    assert history(items) == [(2, "two", 1, 2, False), (2, None, 2, 2, True)]


def test_insert_then_delete_of_a_new_key_leaves_nothing(items: psycopg.Connection) -> None:
    with items.transaction():
        items.execute("insert into items values (3, 'three')")
        items.execute("update items set name = 'drei' where id = 3")
        items.execute("delete from items where id = 3")
    assert history(items) == []


def test_delete_and_reinsert_in_one_transaction_is_an_update(items: psycopg.Connection) -> None:
    with items.transaction():
        items.execute("delete from items where id = 1")
        items.execute("insert into items values (1, 'again')")
    assert history(items) == [(1, "one", 1, 2, False)]
    assert items.execute("select name, rv_version from items where id = 1").fetchone() == ("again", 2)


def test_primary_key_change_tombstones_the_old_key(items: psycopg.Connection) -> None:
    items.execute("update items set id = 10 where id = 1")
    assert history(items) == [(1, "one", 1, 2, False), (1, None, 2, 2, True)]
    assert items.execute("select id from items__as_of(1) order by id").fetchall() == [(1,), (2,)]
    assert items.execute("select id from items__as_of(2) order by id").fetchall() == [(2,), (10,)]


def test_shifting_keys_in_one_statement(conn: psycopg.Connection) -> None:
    conn.execute("create table shift (id int primary key deferrable, name text)")
    conn.execute("insert into shift values (1, 'one'), (2, 'two')")
    conn.execute("select rowver.enable('shift')")
    conn.execute("update shift set id = id + 1")  # key 2 now holds what key 1 held
    assert conn.execute("select id, name from shift__as_of(1) order by id").fetchall() == [(1, "one"), (2, "two")]
    assert conn.execute("select id, name from shift__as_of(2) order by id").fetchall() == [(2, "one"), (3, "two")]
    tombstones = conn.execute("select id, rv_deleted from shift__history where rv_until = 2 and rv_version = 2")
    assert tombstones.fetchall() == [(1, True)]


def test_on_conflict_do_nothing_leaves_no_changeset(items: psycopg.Connection) -> None:
    cur = items.execute("insert into items values (1, 'dup') on conflict do nothing")
    assert cur.rowcount == 0
    assert changesets(items) == [1]


def test_on_conflict_do_update_and_merge_are_captured(items: psycopg.Connection) -> None:
    items.execute("insert into items values (1, 'upd'), (5, 'new') on conflict (id) do update set name = excluded.name")
    v = changesets(items)[-1]
    assert history(items) == [(1, "one", 1, v, False)]
    items.execute(
        "merge into items t using (values (2, 'merged'), (6, 'six')) s(id, name) on t.id = s.id "
        "when matched then update set name = s.name when not matched then insert (id, name) values (s.id, s.name)"
    )
    w = changesets(items)[-1]
    assert w > v
    assert (2, "two", 1, w, False) in history(items)
    assert items.execute("select id, rv_version from items where id in (5, 6) order by id").fetchall() == [(5, v), (6, w)]


def test_rolled_back_savepoint_leaves_no_trace(items: psycopg.Connection) -> None:
    with items.transaction():
        items.execute("update items set name = 'kept' where id = 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            with items.transaction():
                items.execute("update items set name = 'lost' where id = 2")
                items.execute("select 1/0")
    assert history(items) == [(1, "one", 1, 2, False)]
    assert items.execute("select name from items where id = 2").fetchone()[0] == "two"
    assert changesets(items) == [1, 2]


def test_write_only_in_rolled_back_savepoint_makes_no_changeset(items: psycopg.Connection) -> None:
    with items.transaction():
        with pytest.raises(psycopg.errors.DivisionByZero):
            with items.transaction():
                items.execute("update items set name = 'lost' where id = 2")
                items.execute("select 1/0")
    assert changesets(items) == [1]
    assert history(items) == []


def test_one_transaction_is_one_version(items: psycopg.Connection) -> None:
    with items.transaction():
        items.execute("update items set qty = 10 where id = 1")
        items.execute("update items set qty = 11 where id = 1")
        items.execute("insert into items values (3, 'three')")
    assert changesets(items) == [1, 2]
    assert history(items) == [(1, "one", 1, 2, False)]
    assert items.execute("select qty from items__as_of(2) where id = 1").fetchone()[0] == 11


def test_forged_rv_version_is_ignored(items: psycopg.Connection) -> None:
    items.execute("insert into items (id, name, rv_version) values (7, 'seven', 1)")
    items.execute("update items set rv_version = 1, name = 'x' where id = 2")
    assert items.execute("select id, rv_version from items where id in (2, 7) order by id").fetchall() == [(2, 3), (7, 2)]


def test_truncate_is_refused(items: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="TRUNCATE"):
        items.execute("truncate items")
    assert items.execute("select count(*) from items").fetchone()[0] == 2


def test_ignored_columns_change_in_place(conn: psycopg.Connection) -> None:
    conn.execute("create table feed (id int primary key, price int, loaded_at timestamptz)")
    conn.execute("insert into feed values (1, 10, now())")
    conn.execute("select rowver.enable('feed', ignore => array['loaded_at'])")
    conn.execute("update feed set loaded_at = now() + interval '1 day' where id = 1")
    assert conn.execute("select count(*) from feed__history").fetchone()[0] == 0
    assert conn.execute("select rv_version from feed").fetchone()[0] == 1
    conn.execute("update feed set price = 11 where id = 1")
    assert conn.execute("select price, rv_version from feed__history").fetchall() == [(10, 1)]


def test_foreign_keys_keep_working(conn: psycopg.Connection) -> None:
    conn.execute("create table parent (id int primary key, name text)")
    conn.execute("create table child (id int primary key, parent_id int references parent(id) on delete cascade)")
    conn.execute("insert into parent values (1, 'p'), (2, 'q')")
    conn.execute("insert into child values (10, 1), (20, 2)")
    conn.execute("select rowver.enable('parent')")
    conn.execute("select rowver.enable('child')")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("insert into child values (30, 99)")
    conn.execute("delete from parent where id = 2")  # cascades into child, captured in both
    v = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    tables = conn.execute("select tables from rowver.log() where version = %s", (v,)).fetchone()[0]
    assert sorted(tables) == ["public.child", "public.parent"]
    assert conn.execute("select id from child__as_of(%s)", (v - 1,)).fetchall() != conn.execute(
        "select id from child__as_of(%s)", (v,)).fetchall()


@pytest.mark.corrupts_history
def test_check_catches_rewritten_versions(items: psycopg.Connection) -> None:
    """What a data-only restore without --disable-triggers does: every row restamped."""
    items.execute("update items set name = 'uno' where id = 1")
    assert items.execute("select * from rowver.check()").fetchall() == []
    items.execute("select rowver.publish_head()")
    items.execute("alter table items disable trigger user")  # the restore's target starts empty
    items.execute("delete from items")
    items.execute("alter table items enable trigger user")
    items.execute("insert into items (id, name) values (1, 'uno'), (2, 'two')")  # restored, restamped
    found = {r[1] for r in items.execute("select * from rowver.check()")}
    assert "gap" in found


@pytest.mark.corrupts_history
def test_check_counts_rows_written_without_capture(items: psycopg.Connection) -> None:
    """A table holds as many rows as its changesets added, whatever the mix of inserts,
    deletes, key changes and rows born and deleted in one transaction; rows that come or go
    behind capture's back break that."""
    with items.transaction():
        items.execute("insert into items (id, name) values (10, 'ten'), (11, 'eleven')")
        items.execute("delete from items where id = 10")  # born and gone in one transaction
    items.execute("update items set id = 12 where id = 11")
    items.execute("delete from items where id = 1")
    assert items.execute("select * from rowver.check()").fetchall() == []
    items.execute("alter table items disable trigger user")
    items.execute("delete from items where id = 2")
    items.execute("alter table items enable trigger user")
    found = items.execute("select table_name, invariant, detail from rowver.check()").fetchall()
    assert [(t, i) for t, i, _ in found] == [("public.items", "rows")]
    assert "holds" in found[0][2] and "without capture" in found[0][2]


def test_an_allocation_row_restored_from_another_cluster_is_not_trusted(items: psycopg.Connection,
                                                                          db_url: str) -> None:
    """After a restore from another cluster, a stale allocation row can carry the transaction
    id of a new transaction; it must not hand that transaction its old version, also when the
    transaction wrote before (and so looks for an allocation it lost: RESET ALL)."""
    with items.transaction(), psycopg.connect(db_url, autocommit=True) as restore:
        xid = items.execute("select pg_current_xact_id()").fetchone()[0]
        restore.execute("insert into rowver.allocation values (999999, %s)", (xid,))  # committed, as a restore's
        items.execute("update items set name = 'fresh' where id = 2")
    version = items.execute("select rv_version from items where id = 2").fetchone()[0]
    assert version not in (1, 999999)
    assert items.execute("select max(version) from rowver.changeset").fetchone()[0] == version


def test_one_transaction_enabling_two_tables_names_both(conn: psycopg.Connection) -> None:
    """The enabling changeset's message names every table it enabled; a message the user
    set stays as it was."""
    conn.execute("create table a (id int primary key); create table b (id int primary key)")
    conn.execute("create table c (id int primary key); create table d (id int primary key)")
    with conn.transaction():
        conn.execute("select rowver.enable('a'), rowver.enable('b')")
    with conn.transaction():
        conn.execute("set local rowver.message = 'two more'")
        conn.execute("select rowver.enable('c'), rowver.enable('d')")
    assert conn.execute("select message from rowver.changeset order by version").fetchall() == [
        ("enable public.a, public.b",), ("two more",)]


@pytest.mark.slow
def test_an_update_of_every_row_of_a_large_table_is_captured_in_linear_time(conn: psycopg.Connection) -> None:
    """The capture's test for changed keys once ran as a nested loop over the statement's old
    and new rows (an exists, planned for its first row): 200,000 rows took minutes, 1,000,000
    never ended. Asked as a count, it is a hash anti-join; a generous timeout catches the
    quadratic plan without timing the linear one."""
    conn.execute("create table big (id int primary key, name text, price float8)")
    conn.execute("insert into big select g, 'n' || g, g from generate_series(1, 200000) g")
    conn.execute("select rowver.enable('big')")
    with conn.transaction():
        conn.execute("set local statement_timeout = '60s'")
        assert conn.execute("update big set price = price + 0.5").rowcount == 200000
    assert conn.execute("select count(*) from big__history").fetchone()[0] == 200000


@pytest.mark.slow
@pytest.mark.parametrize("change", ["price = price + 0.5", "id = id + 100000"], ids=["values", "keys"])
def test_a_bulk_update_after_a_one_row_update_in_the_same_session_is_captured_in_linear_time(
        conn: psycopg.Connection, change: str) -> None:
    """PL/pgSQL keeps the capture's parse for the session, with the row counts of its first
    firing: after a one-row UPDATE, the old and new rows of a 30,000-row UPDATE were matched in
    a nested loop (110 s, not 0.3 s). A generous timeout catches the quadratic plan."""
    conn.execute("create table big (id int primary key, name text, price float8)")
    conn.execute("insert into big select g, 'n' || g, g from generate_series(1, 40000) g")
    conn.execute("select rowver.enable('big')")
    conn.execute("update big set price = price + 1 where id = 1")  # (the session's first firing)
    with conn.transaction():
        conn.execute("set local statement_timeout = '60s'")
        assert conn.execute(f"update big set {change}").rowcount == 40000
    assert conn.execute("select count(*) from big__history").fetchone()[0] == 40001 + (40000 if "id" in change else 0)
    assert conn.execute("select count(*), min(id) from big").fetchone() == (40000, 1 if "price" in change else 100001)


@pytest.mark.slow
@pytest.mark.parametrize("first", [20000, 1], ids=["after a bulk insert", "after a one-row insert"])
def test_one_row_inserts_find_history_by_key_whatever_the_session_wrote_first(
        conn: psycopg.Connection, first: int) -> None:
    """The same the other way round, and without the planner's help: a session whose first
    INSERT added thousands of rows planned the search of the inserted keys' history as a scan of
    all of it, and kept that plan for every later one-row INSERT (22 ms each on 300,000 history
    rows, growing with them); and where the history had no statistics yet (autovacuum off, or
    not yet run), the test for a newer version of an inserted key was planned to stop at its
    first match, scanning the whole history when there was none (30 ms for each one-row INSERT
    on 500,000 history rows, whatever came first)."""
    conn.execute("create table t (id int primary key, v int, s text)")
    conn.execute("insert into t select g, 0, md5(g::text) from generate_series(1, 100000) g")
    conn.execute("select rowver.enable('t')")
    conn.execute("alter table t__history set (autovacuum_enabled = false)")  # (no statistics)
    for _ in range(3):
        conn.execute("update t set v = v + 1")
    conn.execute("delete from t where id <= 100")  # (tombstones that an insert of these keys meets)
    scans = "select seq_scan from pg_stat_xact_user_tables where relid = 't__history'::regclass"
    with conn.transaction():
        conn.execute("insert into t select g, 2, 'x' from generate_series(100001, 100000 + %s) g", (first,))
        before = conn.execute(scans).fetchone()[0]
        for key in [*range(200001, 200011), *range(1, 11)]:  # new keys, and keys with a history
            conn.execute("insert into t values (%s, 3, 'x')", (key,))
        assert conn.execute(scans).fetchone()[0] == before
    assert conn.execute("select count(*) from t").fetchone()[0] == 99900 + first + 20
    assert conn.execute("select count(*) from t__history where rv_deleted").fetchone()[0] == 100


def _counts(conn: psycopg.Connection, version: int) -> list[tuple]:
    return conn.execute("select v.relid::regclass::text, c.rows, c.net, c.inserted from rowver.changeset_table c"
                        " join rowver.versioned v on v.id = c.table_id where c.version = %s order by 1",
                        (version,)).fetchall()


def test_a_long_transaction_adds_each_statements_counts_without_walking_the_earlier_ones(
        conn: psycopg.Connection) -> None:
    """Each statement adds its counts to the transaction's changeset_table row for the table.
    That row's earlier versions cannot be pruned before the transaction ends, and an upsert
    through the index walked them all: 100,000 one-row UPDATEs in one transaction took five
    times as long for the last tenth as for the first. The statements after a table's first
    now find the row by its address; the counts are the same, across partitions, savepoints
    and a renumber in between."""
    conn.execute("create table a (id int primary key, v int)")
    conn.execute("create table p (id int primary key, v int) partition by range (id)")
    conn.execute("create table p1 partition of p for values from (0) to (1000)")
    conn.execute("create table p2 partition of p for values from (1000) to (2000)")
    conn.execute("insert into a select g, 0 from generate_series(1, 500) g")
    conn.execute("insert into p select g, 0 from generate_series(1, 1999) g")
    conn.execute("select rowver.enable('a'), rowver.enable('p')")
    scans = "select idx_scan from pg_stat_xact_user_tables where relid = 'rowver.changeset_table'::regclass"
    with conn.transaction():
        for i in range(1, 201):
            conn.execute("update a set v = v + 1 where id = %s", (i,))
            conn.execute("update p set v = v + 1 where id = %s", (i * 9,))  # (both partitions)
            if i == 1:  # (each table's first statement upserts, through the index)
                first = conn.execute(scans).fetchone()[0]
        conn.execute("insert into a values (1001, 0)")
        conn.execute("delete from p where id = 9")
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():  # (its counts go with it)
            conn.execute("update a set v = v + 1 where id <= 10")
            conn.execute("select 1/0")
        conn.execute("update a set v = v + 1 where id = 500")
        scanned = conn.execute(scans).fetchone()[0]
        version = conn.execute("select rowver.xact_version()").fetchone()[0]
    assert _counts(conn, version) == [("a", 202, 1, 1), ("p", 201, -1, 0)]
    assert scanned == first


def test_counts_after_a_renumber_land_on_the_final_version(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table a (id int primary key, v int)")
    conn.execute("insert into a select g, 0 from generate_series(1, 10) g")
    conn.execute("select rowver.enable('a')")
    with conn.transaction():
        conn.execute("update a set v = v + 1 where id = 1")
        with psycopg.connect(db_url, autocommit=True) as other:  # a later version writes row 2 first
            other.execute("update a set v = v + 1 where id = 2")
            later = other.execute("select max(version) from rowver.changeset").fetchone()[0]
        conn.execute("update a set v = v + 1 where id = 2")  # (renumbers: the counts row moves)
        conn.execute("update a set v = v + 1 where id = 3")
        version = conn.execute("select rowver.xact_version()").fetchone()[0]
    assert version > later
    assert _counts(conn, version) == [("a", 3, 0, 0)]
    assert conn.execute("select count(*) from rowver.changeset_table").fetchone()[0] == 3  # (enable, other, this)
