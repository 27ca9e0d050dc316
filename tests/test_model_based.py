"""Model-based test: random transactions of inserts, updates, deletes, re-inserts and key
changes across two tables, some steps in rolled-back savepoints, some transactions rolled
back whole, some followed by rowver.analyze (the floor below which as-of reads skip the
table). As-of reads at every version must equal the state computed in Python, and history
must satisfy rowver's invariants. A second test does the same with one table partitioned (a key
change may move a row to the other partition) and a column added, and perhaps dropped again,
part way through."""

from __future__ import annotations

import itertools
import json
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

KEYS = st.integers(min_value=1, max_value=6)
STEP = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(["upsert", "upsert", "delete", "rekey"]),
    KEYS, KEYS, st.integers(0, 3),
    st.booleans(),  # inside a savepoint that is rolled back
)
# (steps, commit?, then rowver.analyze both tables? which sets the floor the as-of reads skip the table below)
TRANSACTION = st.tuples(st.lists(STEP, min_size=1, max_size=5), st.booleans(), st.booleans())

_suffix = itertools.count()


def apply_step(conn: psycopg.Connection, tables: dict[str, sql.Identifier], state: dict[str, dict[int, Any]],
               step: tuple) -> None:
    name, op, key, other, value, _ = step
    t, rows = tables[name], state[name]
    if op == "upsert":
        conn.execute(sql.SQL("insert into {} values (%s, %s) on conflict (id) do update set v = excluded.v")
                     .format(t), (key, value))
        rows[key] = value
    elif op == "delete":
        conn.execute(sql.SQL("delete from {} where id = %s").format(t), (key,))
        rows.pop(key, None)
    elif key in rows and other not in rows:
        conn.execute(sql.SQL("update {} set id = %s where id = %s").format(t), (other, key))
        rows[other] = rows.pop(key)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TRANSACTION, min_size=1, max_size=12))
def test_as_of_every_version_equals_the_model(conn: psycopg.Connection, transactions: list) -> None:
    n = next(_suffix)
    tables = {name: sql.Identifier(f"{name}_{n}") for name in ("a", "b")}
    for t in tables.values():
        conn.execute(sql.SQL("create table {} (id int primary key, v int not null)").format(t))
        conn.execute("select rowver.enable(%s)", (t.as_string(conn),))
    state: dict[str, dict[int, int]] = {"a": {}, "b": {}}
    last = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    snapshots = {last: {"a": {}, "b": {}}}

    for steps, commit, analyze in transactions:
        before = {k: dict(v) for k, v in state.items()}
        with conn.transaction():
            for step in steps:
                if step[-1]:
                    with conn.transaction():  # a savepoint, rolled back
                        apply_step(conn, tables, {k: dict(v) for k, v in state.items()}, step)
                        raise psycopg.Rollback()
                else:
                    apply_step(conn, tables, state, step)
            if not commit:
                state = before
                raise psycopg.Rollback()
        newest = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
        if newest != last:
            # (a transaction that changes a row and changes it back makes a version with the
            # same content, as DESIGN §2 allows for delete-and-reload; reads stay right)
            assert commit, "a changeset from a rolled-back transaction"
            snapshots[newest] = {k: dict(v) for k, v in state.items()}
            last = newest
        else:
            assert state == snapshots[last], "a change without a changeset"
        if analyze:
            for t in tables.values():
                conn.execute("select rowver.analyze(%s)", (t.as_string(conn),))

    head = conn.execute("select rowver.head()").fetchone()[0]
    versions = sorted(snapshots)
    for v in range(versions[0], head + 1):
        expected = snapshots[max(x for x in versions if x <= v)]
        for name in tables:
            got = dict(conn.execute(sql.SQL("select id, v from {}(%s)").format(
                sql.Identifier(f"{name}_{n}__as_of")), (v,)).fetchall())
            assert got == expected[name], (name, v)
    # diffs between neighbouring versions and across the whole run, both ways, as the model has them
    pairs = list(zip(versions, versions[1:])) + [(versions[0], versions[-1])]
    for name in tables:
        for a, b in pairs + [(b, a) for a, b in pairs]:
            old, new = snapshots[a][name], snapshots[b][name]
            expected_diff = {k: (old.get(k), new.get(k)) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            got_diff = {key["id"]: (was and was["v"], now and now["v"]) for key, was, now in conn.execute(
                "select key, old, new from rowver.diff(%s, %s, %s)", (f"{name}_{n}", str(a), str(b)))}
            assert got_diff == expected_diff, (name, a, b)
    # a row's history (db.history's query, and rowver.history) is every state of the key, with its
    # changeset, exactly as a plain join of the versions view with the changesets has it
    for name in tables:
        t = f"{name}_{n}"
        query, versions = conn.execute("select rowver.history_sql(%s::regclass), versions_name from rowver.versioned"
                                       " where relid = %s::regclass", (t, t)).fetchone()
        for key in range(1, 7):
            expected_rows = conn.execute(sql.SQL(
                "select v.*, c.created_at, c.author, c.message from {} v left join rowver.changeset c"
                " on c.version = v.rv_version where v.id = %s order by v.rv_version, v.rv_deleted").format(
                sql.Identifier(versions)), (key,)).fetchall()
            with psycopg.RawCursor(conn) as cur:
                assert cur.execute(query, [json.dumps({"id": key})]).fetchall() == expected_rows, (name, key)
            assert conn.execute("select rv_version, rv_until, rv_deleted, created_at, author, message"
                                " from rowver.history(%s, %s)", (t, json.dumps({"id": key}))).fetchall() == [
                row[2:] for row in expected_rows], (name, key)
    assert conn.execute("select * from rowver.check()").fetchall() == []


# The same through schema changes, on a partitioned table beside a plain one: at some point one
# table gains a column (its values read NULL as of every version before), and later may lose
# it again (as-of reads then have the table's new shape).
COLUMN_CHANGE = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 8), st.one_of(st.none(), st.integers(1, 8)))


def write_step(conn: psycopg.Connection, tables: dict[str, sql.Identifier], state: dict[str, dict[int, dict]],
               has_w: dict[str, bool], step: tuple) -> None:
    """apply_step's writes, setting the column w too while a table has it (to v + 10)."""
    name, op, key, _, value, _ = step
    t, rows = tables[name], state[name]
    if op != "upsert":  # (a delete or a key change carries w along as it is)
        apply_step(conn, tables, state, step)
    elif has_w[name]:
        conn.execute(sql.SQL("insert into {} (id, v, w) values (%s, %s, %s)"
                             " on conflict (id) do update set v = excluded.v, w = excluded.w").format(t),
                     (key, value, value + 10))
        rows[key] = {"v": value, "w": value + 10}
    else:
        conn.execute(sql.SQL("insert into {} (id, v) values (%s, %s) on conflict (id) do update set v = excluded.v")
                     .format(t), (key, value))
        rows[key] = {"v": value}


def assert_as_of_matches(conn: psycopg.Connection, as_of: dict[str, sql.Identifier],
                         snapshots: dict[int, dict[str, dict[int, dict]]]) -> None:
    """Every version from the first snapshot to head, read through each table's as-of function in
    its current shape, equals the model: a column the table had not yet reads NULL."""
    head = conn.execute("select rowver.head()").fetchone()[0]
    versions = sorted(snapshots)
    for v in range(versions[0], head + 1):
        expected = snapshots[max(x for x in versions if x <= v)]
        for name, f in as_of.items():
            cur = conn.execute(sql.SQL("select * from {}(%s)").format(f), (v,))
            columns = [d.name for d in cur.description or []]
            got = {row[0]: {c: x for c, x in zip(columns[1:], row[1:]) if c != "rv_version"} for row in cur}
            assert columns[0] == "id" and "rv_version" in columns, columns
            want = {k: {c: r.get(c) for c in columns[1:] if c != "rv_version"} for k, r in expected[name].items()}
            assert got == want, (name, v)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TRANSACTION, min_size=1, max_size=10), COLUMN_CHANGE)
def test_as_of_every_version_equals_the_model_through_partitions_and_column_changes(
        conn: psycopg.Connection, transactions: list, change: tuple) -> None:
    n = next(_suffix)
    tables = {name: sql.Identifier(f"{name}_{n}") for name in ("a", "b")}
    as_of = {name: sql.Identifier(f"{name}_{n}__as_of") for name in ("a", "b")}
    conn.execute(sql.SQL("create table {} (id int primary key, v int not null)").format(tables["a"]))
    # b is partitioned by key range: a key change across 3 | 4 moves the row to the other partition
    conn.execute(sql.SQL("create table {} (id int primary key, v int not null) partition by range (id)")
                 .format(tables["b"]))
    for part, bounds in (("low", "from (minvalue) to (4)"), ("high", "from (4) to (maxvalue)")):
        conn.execute(sql.SQL("create table {} partition of {} for values " + bounds).format(
            sql.Identifier(f"b_{n}_{part}"), tables["b"]))
    for t in tables.values():
        conn.execute("select rowver.enable(%s)", (t.as_string(conn),))
    changed, add_at, drop_after = change
    state: dict[str, dict[int, dict]] = {"a": {}, "b": {}}
    has_w = {"a": False, "b": False}
    last = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    snapshots = {last: {"a": {}, "b": {}}}

    def recorded(changes_made: bool) -> None:
        """Take the model's snapshot at a new version, which only a change may make."""
        nonlocal last
        newest = conn.execute("select max(version) from rowver.changeset").fetchone()[0]
        if newest != last:
            assert changes_made, "a changeset from a rolled-back transaction"
            snapshots[newest] = {k: {key: dict(r) for key, r in v.items()} for k, v in state.items()}
            last = newest
        else:
            assert state == snapshots[last], "a change without a changeset"

    for i, (steps, commit, analyze) in enumerate(transactions):
        target = tables[changed].as_string(conn)
        if i == add_at:  # the column comes with a default, which every current row takes
            conn.execute(sql.SQL("alter table {} add column w int default 5").format(tables[changed]))
            conn.execute("select rowver.refresh(%s)", (target,))
            has_w[changed] = True
            for row in state[changed].values():
                row["w"] = 5
            recorded(True)
        elif drop_after is not None and has_w[changed] and i == add_at + drop_after:
            assert_as_of_matches(conn, as_of, snapshots)  # (while w can still be read)
            conn.execute("select rowver.alter(%s, 'drop column w')", (target,))
            has_w[changed] = False
            for row in state[changed].values():
                row.pop("w", None)
            recorded(True)
        before = {k: {key: dict(r) for key, r in v.items()} for k, v in state.items()}
        with conn.transaction():
            for step in steps:
                if step[-1]:
                    with conn.transaction():  # a savepoint, rolled back
                        scratch = {k: {key: dict(r) for key, r in v.items()} for k, v in state.items()}
                        write_step(conn, tables, scratch, has_w, step)
                        raise psycopg.Rollback()
                else:
                    write_step(conn, tables, state, has_w, step)
            if not commit:
                state = before
                raise psycopg.Rollback()
        recorded(commit)
        if analyze:
            for t in tables.values():
                conn.execute("select rowver.analyze(%s)", (t.as_string(conn),))

    assert_as_of_matches(conn, as_of, snapshots)
    assert conn.execute("select * from rowver.check()").fetchall() == []
