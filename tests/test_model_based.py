"""Model-based test: random transactions of inserts, updates, deletes, re-inserts and key
changes across two tables, some steps in rolled-back savepoints, some transactions rolled
back whole, some followed by rowver.analyze (the floor below which as-of reads skip the
table). As-of reads at every version must equal the state computed in Python, and history
must satisfy rowver's invariants."""

from __future__ import annotations

import itertools
import json

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


def apply_step(conn: psycopg.Connection, tables: dict[str, sql.Identifier], state: dict[str, dict[int, int]],
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
