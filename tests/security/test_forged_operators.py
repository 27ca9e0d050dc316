"""Class 1: operators resolved through a writer's search_path (DESIGN §6).

A role with a schema of its own plants an always-true `=` for a column's type. As a writer,
it then tries to make its real UPDATE look like a no-op (no history, no version); as a
trojan, it waits for the table's owner to run rowver's functions with that schema on the
path. For every type family, neither works: the update is versioned, and the planted
operator never runs."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, violations
from psycopg import sql
from psycopg.conninfo import make_conninfo

import rowver

# family: (the column's type, made in the owner's schema where it is the owner's own;
#          the value first written, the value the attacker writes)
FAMILIES = {
    "integer": ("integer", "1", "2"),
    "text": ("text", "'a'", "'b'"),
    "array": ("integer[]", "'{1,2}'", "'{1,3}'"),
    "enum": ("{s}.mood", "'sad'", "'happy'"),
    "range": ("int4range", "'[1,5)'", "'[1,6)'"),
    "composite": ("{s}.pair", "row(1, 'x')", "row(1, 'y')"),
    "domain": ("{s}.positive", "1", "2"),
    "domain over array": ("{s}.labels", "'{a}'", "'{b}'"),
    "range over domain": ("{s}.span", "'[1,5)'", "'[1,6)'"),
    "json (no equality)": ("json", "'{\"a\": 1}'", "'{\"a\": 2}'"),
}

TYPES = """
create type {s}.mood as enum ('sad', 'happy');
create type {s}.pair as (a integer, b text);
create domain {s}.positive as integer check (value > 0);
create domain {s}.labels as text[];
create type {s}.span as range (subtype = {s}.positive);
"""


def plant(attacker: psycopg.Connection, evil: str, column_type: str) -> None:
    """Always-true `=` (and always-false `<>`) for the column's type, for integer and bigint
    (keys and versions), and for text (what types without an equality compare as), each
    logging the role that ran it."""
    attacker.execute(sql.SQL("create table {}.calls (who text, op text)").format(sql.Identifier(evil)))
    attacker.execute(sql.SQL("grant usage on schema {} to public").format(sql.Identifier(evil)))
    attacker.execute(sql.SQL("grant insert on {}.calls to public").format(sql.Identifier(evil)))
    for i, t in enumerate(dict.fromkeys([column_type, "integer", "bigint", "text"])):
        for op, result in (("=", "true"), ("<>", "false"), ("<=", "true"), (">", "false")):
            fn = sql.Identifier(evil, f"op{i}_{'eq ne le gt'.split()[('=', '<>', '<=', '>').index(op)]}")
            attacker.execute(sql.SQL(
                "create function {fn}(a {t}, b {t}) returns boolean language plpgsql as $$"
                " begin insert into {calls} values (current_user, {op}); return {result}; end $$").format(
                fn=fn, t=sql.SQL(t), calls=sql.Identifier(evil, "calls"), op=sql.Literal(f"{t} {op}"),
                result=sql.SQL(result)))
            attacker.execute(sql.SQL("create operator {schema}.{op} (leftarg = {t}, rightarg = {t}, function = {fn})")
                             .format(schema=sql.Identifier(evil), op=sql.SQL(op), t=sql.SQL(t), fn=fn))


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest, logins: Logins) -> dict:
    """A versioned one-row table `t (id, v)` of the family's type, owned by its team; a
    writer of it that has a schema of its own, with the operators planted there."""
    column_type, first, second = FAMILIES[request.param]
    owner = logins.owner("team")
    attacker = logins.owner("evil")
    s = owner  # (role names here need no quotes)
    own = logins.login(owner)
    own.execute(TYPES.replace('{s}', s))
    table = f"{s}.t"
    own.execute(f"create table {table} (id integer primary key, v {column_type.replace('{s}', s)})")
    own.execute(f"insert into {table} values (1, {first.replace('{s}', s)})")
    own.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(owner), sql.Identifier(attacker)))
    own.execute(f"grant select, insert, update, delete on {table} to {attacker}")
    own.execute("select rowver.enable(%s)", (table,))
    plant(logins.login(attacker), attacker, column_type.replace('{s}', s))
    return {"owner": owner, "attacker": attacker, "table": table, "type": column_type.replace('{s}', s),
            "second": second.replace('{s}', s), "evil": attacker}


def test_an_update_under_a_planted_equality_is_versioned(family: dict, logins: Logins) -> None:
    path = f"{family['evil']},pg_catalog,public"  # the planted schema first, even before pg_catalog
    writer = logins.login(family["attacker"], search_path=path)
    before = logins.su.execute(f"select rv_version from {family['table']}").fetchone()[0]
    writer.execute(f"update {family['table']} set v = {family['second']}"
                   f" where id operator(pg_catalog.=) 1")  # (its own query may use what it likes)
    after, value = logins.su.execute(f"select rv_version, v::text from {family['table']}").fetchone()
    assert after > before, "the update kept its old version: it was taken for a no-op"
    kept = logins.su.execute(f"select rv_version, rv_until from {family['table']}__history").fetchall()
    assert kept == [(before, after)], "the superseded state is not in history"
    who = logins.su.execute("select db_role from rowver.changeset where version = %s", (after,)).fetchone()
    assert who == (family["attacker"],)
    assert violations(logins.su) == []


def test_the_owners_routine_work_never_runs_a_planted_operator(family: dict, logins: Logins) -> None:
    table = family["table"]
    logins.su.execute(f"update {table} set v = {family['second']}")  # version 2 to revert from
    logins.su.execute("select rowver.publish_head()")
    path = f"{family['evil']},pg_catalog,public"
    owner = logins.login(family["owner"], search_path=path)
    assert owner.execute("show search_path").fetchone()[0].startswith(family["evil"])
    first = owner.execute(f"select v::text from {table}__as_of(1)").fetchone()
    diff = owner.execute("select op, changed from rowver.diff(%s, '1', 'head')", (table,)).fetchall()
    assert diff == [("changed", ["v"])]
    assert len(owner.execute("select * from rowver.history(%s, '{\"id\": 1}')", (table,)).fetchall()) == 2
    assert len(owner.execute("select * from rowver.changes(%s, '0')", (table,)).fetchall()) == 2
    assert owner.execute("select * from rowver.check(%s)", (table,)).fetchall() == []
    reverted = owner.execute("select inserted, updated, deleted from rowver.revert(%s, '1')", (table,)).fetchone()
    assert reverted == (0, 1, 0)
    assert owner.execute(f"select v::text from {table}").fetchone() == first
    # the Python surface, on the same path: its own SQL and what rowver generates for it
    url = make_conninfo(logins.url, user=family["owner"], options=f"-c search_path={path}")
    with rowver.connect(url) as db:
        assert len(db.diff(table, 2, "head")) == 1
        assert len(db.history(table, 1)) == 3
        assert len(db.as_of(table, 1)) == 1
        with db.changeset(message="sync") as cs:
            frame = db.as_of(table, 2).drop(columns=["rv_version"])
            assert cs.sync(table, frame).updated == 1
    calls = logins.su.execute(sql.SQL("select who, op from {}.calls").format(sql.Identifier(family["evil"]))).fetchall()
    assert calls == [], f"a planted operator ran as {calls}"
    assert violations(logins.su) == []
