"""An application role without privileges on rowver's internals cannot forge a version,
write history or changesets, or move the version sequence."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql


@pytest.fixture
def app(conn: psycopg.Connection, db_url: str) -> Iterator[psycopg.Connection]:
    """A connection as a fresh least-privilege role that may read and write `items`."""
    role = f"rv_app_{uuid.uuid4().hex[:8]}"
    conn.execute("create table items (id int primary key, name text)")
    conn.execute("insert into items values (1, 'one'), (2, 'two')")
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    conn.execute(sql.SQL("grant select, insert, update, delete on items to {}").format(sql.Identifier(role)))
    conn.execute("select rowver.enable('items')")  # mirrors the SELECT grant onto history
    conn.execute("select rowver.publish_head()")
    try:
        with psycopg.connect(db_url, user=role, autocommit=True) as app_conn:
            yield app_conn
    finally:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def state(conn: psycopg.Connection) -> tuple:
    return (
        conn.execute("select * from items order by id").fetchall(),
        conn.execute("select * from items__history order by id, rv_version").fetchall(),
        conn.execute("select version, message from rowver.changeset order by version").fetchall(),
    )


def test_app_writes_are_captured_with_its_role(app: psycopg.Connection, conn: psycopg.Connection) -> None:
    app.execute("update items set name = 'uno' where id = 1")
    row = conn.execute("select db_role, version from rowver.changeset order by version desc limit 1").fetchone()
    assert row[0] == app.info.user
    assert conn.execute("select rv_version from items where id = 1").fetchone()[0] == row[1]
    # and it reads the past, like any reader of the table
    assert app.execute("select name from items__as_of(1) where id = 1").fetchone()[0] == "one"


@pytest.mark.parametrize("setting", ["rowver.version", "rowver.xact", "rowver.v", "rowver.allocated"])
def test_settings_do_not_change_the_version(app: psycopg.Connection, conn: psycopg.Connection, setting: str) -> None:
    with app.transaction():
        app.execute("select set_config(%s, '1', true)", (setting,))
        app.execute("select set_config(%s, '1', false)", (setting,))
        app.execute("update items set name = 'forged' where id = 1")
    version = conn.execute("select rv_version from items where id = 1").fetchone()[0]
    assert version == conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    assert version > 1
    assert conn.execute("select rv_version, rv_until from items__history").fetchall() == [(1, version)]


def test_a_forged_allocation_pointer_fails_the_statement(app: psycopg.Connection, conn: psycopg.Connection) -> None:
    """The setting that skips allocation can point at the session's last allocation row (a
    transaction that ended): currval is then a version at or below head, which the stamp would
    write. The capture ties currval to this transaction's allocation and fails the statement."""
    with app.transaction():
        app.execute("update items set name = 'a' where id = 1")
        stale = app.execute("select current_setting('rowver.allocation')").fetchone()[0]
    before = state(conn)
    for pointer in (stale, "(0,1)"):
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not its own"):
            with app.transaction():
                app.execute("select set_config('rowver.allocation', %s, true)", (pointer,))
                app.execute("update items set name = 'forged' where id = 2")
    assert state(conn) == before


def test_stale_currval_is_never_reused(app: psycopg.Connection, conn: psycopg.Connection) -> None:
    app.execute("update items set name = 'a' where id = 1")
    first = app.execute("select currval('rowver.version_seq')").fetchone()[0]
    # a later transaction in the same session gets a version of its own, even via COPY
    with app.cursor().copy("copy items (id, name) from stdin") as cp:
        cp.write_row((3, "three"))
    assert conn.execute("select rv_version from items where id = 3").fetchone()[0] > first


FORBIDDEN = [
    ("insert into items__history (id, name, rv_version, rv_until) values (1, 'x', 0, 1)", psycopg.errors.InsufficientPrivilege),
    ("update items__history set name = 'x'", psycopg.errors.InsufficientPrivilege),
    ("delete from items__history", psycopg.errors.InsufficientPrivilege),
    ("insert into rowver.changeset (version, xid, db_role) values (999, '1', 'x')", psycopg.errors.InsufficientPrivilege),
    ("delete from rowver.changeset", psycopg.errors.InsufficientPrivilege),
    ("update rowver.head_mark set head = 1000", psycopg.errors.InsufficientPrivilege),
    ("select nextval('rowver.version_seq')", psycopg.errors.InsufficientPrivilege),
    ("select setval('rowver.version_seq', 1000)", psycopg.errors.InsufficientPrivilege),
    ("select rowver.allocate()", psycopg.errors.InsufficientPrivilege),
    ("select rowver.record_change(1, 'items', 1)", psycopg.errors.InsufficientPrivilege),
    ("alter table items disable trigger user", psycopg.errors.InsufficientPrivilege),
    ("drop trigger \"~rowver_stamp\" on items", psycopg.errors.InsufficientPrivilege),
    ("select rowver.enable('items')", psycopg.errors.InsufficientPrivilege),
    ("set session_replication_role = replica", psycopg.errors.InsufficientPrivilege),
    ("truncate items", psycopg.errors.InsufficientPrivilege),
    ("truncate items__history", psycopg.errors.InsufficientPrivilege),
    ("select rowver.disable('items')", psycopg.errors.InsufficientPrivilege),
    ("select rowver.forget('items'::regclass)", psycopg.errors.InsufficientPrivilege),
    ("select rowver.refresh('items')", psycopg.errors.InsufficientPrivilege),
    ("alter table items__history disable row level security", psycopg.errors.InsufficientPrivilege),
]


@pytest.mark.parametrize("statement,error", FORBIDDEN, ids=[s for s, _ in FORBIDDEN])
def test_tampering_is_refused_and_changes_nothing(app: psycopg.Connection, conn: psycopg.Connection,
                                                  statement: str, error: type) -> None:
    before = state(conn)
    seq = conn.execute("select last_value from rowver.version_seq").fetchone()[0]
    with pytest.raises(error):
        app.execute(statement)
    assert state(conn) == before
    assert conn.execute("select last_value from rowver.version_seq").fetchone()[0] == seq
