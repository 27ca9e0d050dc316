"""Reads whose cost follows the answer (issue 17): T__as_of reads history through its BRIN
indexes on rv_until and rv_version, so a read of a recent version or of head reads only the
history pages of states superseded after it, and a read of an old one skips the states
written after it; diffs and the change feed read only the keys that changed in the
range. Each returns what its simple definition returns, at every version."""

from __future__ import annotations

import psycopg
import pytest

DEFINITION = """select id, v, rv_version from t__versions
                 where rv_version <= %(v)s and (rv_until is null or rv_until > %(v)s) and not rv_deleted
                 order by id"""


def _rows_read(conn: psycopg.Connection, query: str, tables: tuple[str, ...]) -> int:
    """How many rows of the given tables a query's plan read (returned or filtered out)."""
    plan = conn.execute("explain (analyze, costs off, timing off, format json) " + query).fetchone()[0][0]["Plan"]

    def read(node: dict) -> int:
        own = 0
        if node.get("Relation Name") in tables:
            own = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
                   + node.get("Rows Removed by Index Recheck", 0)) * node.get("Actual Loops", 1)
        return own + sum(read(p) for p in node.get("Plans", []))
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
    assert _rows_read(conn, f"select * from t__as_of({head})", ("t__history",)) < total / 10, (total, head)
    assert _rows_read(conn, f"select * from t__as_of({last})", ("t__history",)) < total / 10
    assert _rows_read(conn, f"select * from t__as_of({last - 1})", ("t__history",)) < total / 4  # the last round's pages
    # below, the states written after it are skipped (rv_version's BRIN index): t was empty at 1
    assert _rows_read(conn, "select * from t__as_of(1)", ("t__history",)) < total / 10


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


# The definitions the key-driven diff and change feed must match: two whole snapshots joined
# on the key (rows whose version and content differ), and every state written in the range
# from the versions view.
DIFF_DEFINITION = """
    select pg_catalog.jsonb_build_object({keys_a}), to_jsonb(a) - 'rv_version', to_jsonb(b) - 'rv_version'
      from {t}__as_of(%(a)s) a full join {t}__as_of(%(b)s) b on {join}
     where a is null or b is null
        or (a.rv_version <> b.rv_version and to_jsonb(a) - 'rv_version' <> to_jsonb(b) - 'rv_version')"""
CHANGES_DEFINITION = """
    select s.rv_version,
           case when s.rv_deleted then 'delete'
                when exists (select from {t}__history p where {prev} and p.rv_until = s.rv_version
                                and not p.rv_deleted) then 'update' else 'insert' end,
           pg_catalog.jsonb_build_object({keys_v}),
           case when s.rv_deleted then null else to_jsonb(s) - '{{rv_version,rv_until,rv_deleted}}'::text[] end
      from {t}__versions s where s.rv_version > %(a)s and s.rv_version <= %(b)s"""


def _key_sql(keys: list[str], alias: str) -> str:
    return ", ".join(f"'{k}', coalesce(a.{k}, b.{k})" if alias == "ab" else f"'{k}', {alias}.{k}" for k in keys)


def _assert_reads_match_definitions(conn: psycopg.Connection, t: str, keys: list[str], versions: range) -> int:
    """Every diff between two versions (both ways) and every change feed equal the definitions;
    returns how many pairs were compared."""
    join = " and ".join(f"a.{k} = b.{k}" for k in keys)
    prev = " and ".join(f"p.{k} = s.{k}" for k in keys)
    diff_def = DIFF_DEFINITION.format(t=t, keys_a=_key_sql(keys, "ab"), join=join)
    changes_def = CHANGES_DEFINITION.format(t=t, keys_v=_key_sql(keys, "s"), prev=prev)
    pairs = 0
    for a in versions:
        for b in versions:
            got = conn.execute("select key, old, new from rowver.diff(%s, %s, %s)", (t, str(a), str(b))).fetchall()
            assert sorted(got, key=repr) == sorted(conn.execute(diff_def, {"a": a, "b": b}).fetchall(), key=repr), \
                (t, a, b)
            if a < b:
                got = conn.execute("select * from rowver.changes(%s, %s, %s)", (t, str(a), str(b))).fetchall()
                assert sorted(got, key=repr) == \
                    sorted(conn.execute(changes_def, {"a": a, "b": b}).fetchall(), key=repr), (t, a, b)
            pairs += 1
    return pairs


def test_diff_and_changes_match_the_definitions_between_every_two_versions(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int, gone text)")
    conn.execute("create table ev (region text, id int, v int, primary key (region, id)) partition by list (region)")
    conn.execute("create table ev_eu partition of ev for values in ('eu')")
    conn.execute("create table ev_us partition of ev for values in ('us')")
    conn.execute("insert into t select g, g, 'x' from generate_series(1, 40) g")
    conn.execute("insert into ev select case when g % 2 = 0 then 'eu' else 'us' end, g, g from generate_series(1, 20) g")
    conn.execute("select rowver.enable('t'), rowver.enable('ev')")
    first = conn.execute("select rowver.head()").fetchone()[0]
    for r in range(6):  # updates, deletes, re-inserts, new keys, key changes: each its own version
        conn.execute("update t set v = v + 1 where id %% 5 = %s", (r % 5,))
        conn.execute("delete from t where id = %s", (r + 1,))
        conn.execute("insert into t values (%s, -1) on conflict (id) do update set v = -2", (r + 2,))
        conn.execute("update t set id = id + 100 where id = %s", (r + 20,))
        conn.execute("update ev set region = 'eu' where id = %s", (2 * r + 1,))  # moves between partitions
        conn.execute("delete from ev where id = %s", (2 * r + 2,))
        with conn.transaction():  # a change undone in the same transaction: the same state, a new version
            conn.execute("update t set v = v + 1 where id = 30")
            conn.execute("update t set v = v - 1 where id = 30")
        if r == 2:
            conn.execute("alter table t add column extra int default 7")  # NULL as of before it
            conn.execute("select rowver.refresh('t')")
        if r == 4:
            conn.execute("select rowver.alter('t', 'drop column gone')")
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("vacuum analyze t__history")
    versions = range(first, head + 1)
    assert _assert_reads_match_definitions(conn, "t", ["id"], versions) == len(versions) ** 2
    _assert_reads_match_definitions(conn, "ev", ["region", "id"], versions)


def test_an_adjacent_diff_reads_the_changed_keys_not_the_table(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("insert into t select g, 0 from generate_series(1, 20000) g")
    conn.execute("select rowver.enable('t')")
    for r in range(8):
        conn.execute("update t set v = v + 1 where id %% 8 = %s", (r,))
    conn.execute("update t set v = -1 where id between 100 and 109")  # 10 rows, no insert
    conn.execute("insert into t values (30000, 0)")                     # one insert
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("vacuum analyze t, t__history")
    total = conn.execute("select (select count(*) from t) + (select count(*) from t__history)").fetchone()[0]
    updates = conn.execute("select rowver.diff_sql('t', %s, %s)", (head - 2, head - 1)).fetchone()[0]
    assert len(conn.execute(updates).fetchall()) == 10
    assert _rows_read(conn, updates, ("t", "t__history")) < total / 50  # history's BRIN index, then keys
    changes = conn.execute("select * from rowver.changes('t', %s, %s)", (str(head - 2), str(head - 1))).fetchall()
    assert [c[1] for c in changes] == ["update"] * 10
    # an insert leaves no state behind to find its key by: the range's changesets say one was
    # made, and the table is read for it
    inserts = conn.execute("select rowver.diff_sql('t', %s, %s)", (head - 1, head)).fetchone()[0]
    assert [r[0] for r in conn.execute(inserts).fetchall()] == ["added"]
    assert _rows_read(conn, inserts, ("t",)) >= 20000


def test_diff_and_changes_after_a_prune(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("insert into t select g, 0 from generate_series(1, 30) g")
    conn.execute("select rowver.enable('t')")
    for r in range(6):
        conn.execute("update t set v = v + 1 where id %% 3 = %s", (r % 3,))
        conn.execute("insert into t values (%s, 0)", (100 + r,))
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    conn.execute("select rowver.prune('t', %s)", (str(head - 3),))
    head = conn.execute("select rowver.publish_head()").fetchone()[0]
    _assert_reads_match_definitions(conn, "t", ["id"], range(head - 4, head + 1))
    with pytest.raises(psycopg.DatabaseError, match="pruned") as refused:
        conn.execute("select * from rowver.diff('t', '1', 'head')")
    assert refused.value.sqlstate == "RV006"  # rowver's own code (rowver/errors.py)


def test_check_names_a_missing_brin_index_and_an_uncounted_insert(conn: psycopg.Connection) -> None:
    conn.execute("create table t (id int primary key, v int)")
    conn.execute("select rowver.enable('t')")
    conn.execute("insert into t values (1, 0), (2, 0)")
    conn.execute("update t set v = 1 where id = 1")
    assert conn.execute("select * from rowver.check('t')").fetchall() == []
    conn.execute("drop index t__history_rv_version")
    assert conn.execute("select invariant, detail from rowver.check('t')").fetchall() == [
        ("index", "public.t__history has no BRIN index on rv_version: reads scan all of it; rowver init adds it")]
    conn.execute(conn.execute("select rowver.history_brin_ddl('public.t__history', 't__history', 'rv_version')"
                              ).fetchone()[0])
    # an insert its changeset did not count would be missing from diffs: check names it
    inserted_at = conn.execute("select rv_version from t where id = 2").fetchone()[0]
    conn.execute("update rowver.changeset_table set inserted = 0 where version = %s", (inserted_at,))
    assert sorted(conn.execute("select invariant, detail from rowver.check('t')").fetchall()) == [
        ("inserted", f"key ({k}): inserted at version {inserted_at}, which counted no insert") for k in (1, 2)]
    conn.execute("update rowver.changeset_table set inserted = 2 where version = %s", (inserted_at,))


def test_a_read_at_or_above_the_tables_last_change_reads_the_table_and_equals_as_of(db_url: str,
                                                                                   conn: psycopg.Connection) -> None:
    import rowver

    conn.execute("create table t (id int primary key, v int)")
    conn.execute("create table other (id int primary key)")
    conn.execute("select rowver.enable('t'), rowver.enable('other')")
    conn.execute("insert into t select g, 0 from generate_series(1, 200) g")
    for r in range(4):
        conn.execute("update t set v = v + 1 where id %% 4 = %s", (r,))
        conn.execute("delete from t where id = %s", (r + 1,))
    last = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    conn.execute("insert into other values (1)")  # a version above t's last change
    with rowver.connect(db_url) as db:
        db.alter("t", "add column w int default 7")  # a column change: reads below it are T__as_of's
        conn.execute("update other set id = 2")
        head = db.head()
        first = conn.execute("select enabled_version from rowver.versioned where relid = 't'::regclass").fetchone()[0]
        sources = {}
        for v in range(first, head + 1):
            got = db.read("t", v)
            want = conn.execute("select * from t__as_of(%s) order by id", (v,)).fetchall()
            assert got.rows == want, v
            assert [r[0] for r in db.read("t", v, after=[100], limit=3).rows] == [r[0] for r in want if r[0] > 100][:3]
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read")
                sources[v] = conn.execute("select rowver.read_source_sql('t', %s)", (v,)).fetchone()[0]
        added = conn.execute("select added_version from rowver.column_life where name = 'w'").fetchone()[0]
    # the table itself once neither its rows nor its columns changed after v; its past below that
    assert all(("__as_of(" in s) == (v < max(last, added or 0)) for v, s in sources.items()), sources
    assert sources[head].startswith("(select * from public.t where")
