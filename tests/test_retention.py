"""The two recorded exceptions to append-only history: retention (prune) and legal erasure
(erase). Both need the table's owner or rowver_admin and leave a changeset; nothing else is touched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import rowver


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as handle:
        handle.conn.execute("create table people (email text primary key, name text, city text)")
        handle.conn.execute("insert into people values ('ann@x', 'Ann', 'Oslo'), ('bob@x', 'Bob', 'Rome')")
        handle.enable("people")
        for city in ("Bergen", "Paris", "Lyon"):
            with handle.changeset() as cs:
                cs.upsert("people", [{"email": "ann@x", "name": "Ann", "city": city},
                                     {"email": "bob@x", "name": "Bob", "city": city + "!"}])
        yield handle


def read(db: rowver.Database, v: int) -> list[tuple]:
    return [tuple(r) for r in db.as_of("people", v)[["email", "city"]].itertuples(index=False)]


def test_prune_keeps_later_and_tagged_versions(db: rowver.Database) -> None:
    first, head = db.head() - 3, db.head()
    db.tag("audit", first + 1)
    expected = {v: read(db, v) for v in range(first, head + 1)}
    removed = db.prune("people", head - 1)
    assert removed > 0
    for v in (first + 1, head - 1, head):  # the tagged version and everything from the horizon on
        assert read(db, v) == expected[v]
    with pytest.raises(rowver.InvalidInputError, match="pruned before"):
        db.as_of("people", first)
    with pytest.raises(rowver.InvalidInputError, match="pruned"):
        db.tag("too-late", first)
    assert db.log().iloc[0].message.startswith("prune public.people")
    # still an index lookup: the horizon guard is a pseudo-constant
    explain = sql.SQL("explain select * from people__as_of({}) where email = 'ann@x'").format(head)
    plan = "\n".join(r[0] for r in db.conn.execute(explain))
    assert "people__as_of" not in plan and "Index" in plan
    # the enabling changeset is no longer named by any row, so it went too; the rows it added
    # are still accounted for (check compares each table's row count with its changesets')
    assert db.conn.execute("select count(*) from rowver.changeset where version = %s", (first,)).fetchone()[0] == 0
    assert db.check().empty


def test_erase_removes_one_key_everywhere(db: rowver.Database) -> None:
    bob_before = db.history("people", "bob@x")
    removed = db.erase("people", "ann@x", surrogate="erased-1")
    assert removed >= 4
    hist = db.conn.execute("select email, name, city, rv_deleted from people__history order by email, rv_version").fetchall()
    assert not any(r[0] == "ann@x" or r[1] == "Ann" for r in hist)
    assert ("erased-1", None, None, True) in hist
    assert all(r[0] != "ann@x" for v in range(1, db.head() + 1) for r in read(db, v))
    assert db.history("people", "bob@x").equals(bob_before)
    assert db.log().iloc[0].message == "erase"
    assert db.check().empty


@pytest.mark.parametrize("call", ["select rowver.prune('people', 'head')",
                                  "select rowver.erase('people', '{\"email\": \"bob@x\"}')"])
def test_a_writer_may_not_prune_or_erase(db: rowver.Database, db_url: str, call: str) -> None:
    role = f"rv_app_{uuid.uuid4().hex[:8]}"
    db.conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    db.conn.execute(sql.SQL("grant select, insert, update, delete on people to {}").format(sql.Identifier(role)))
    before = db.conn.execute("select count(*) from people__history").fetchone()[0]
    try:
        with psycopg.connect(db_url, user=role, autocommit=True) as app:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="needs the rights of its owner, or rowver_admin"):
                app.execute(call)
    finally:
        db.conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        db.conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
    assert db.conn.execute("select count(*) from people__history").fetchone()[0] == before
