"""rowver's own SQLSTATEs (class RV, rowver/errors.py's table): each is raised by a real server
call, reaches Python as its own class with its code, and is still caught by the broader class
callers caught before the codes were split (InvalidInputError for the refs, keys, stages and
models that shared 22023; NotVersionedError keeps its class)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import rowver
from rowver import errors

SQL = Path(__file__).resolve().parent.parent / "sql"


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create table early (id int primary key, v text)")
        conn.execute("insert into early values (1, 'a'), (2, 'b')")
        conn.execute("create table plain (id int primary key)")
    with rowver.connect(db_url) as handle:
        handle.enable("early")
        with handle.changeset(message="second") as cs:
            cs.upsert("early", [{"id": 1, "v": "a2"}])
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("create table late (id int primary key)")
        handle.enable("late")
        yield handle


def _duplicate_keys_file(db: rowver.Database, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,v\n7,x\n7,y\n")
    with db.changeset() as cs:
        cs.load("early", path, "upsert")


def _pruned(db: rowver.Database) -> None:
    db.prune("early", before="head")
    db.as_of("early", 1)


CASES: list[tuple[str, type[rowver.RowverError], type[rowver.RowverError], Callable[..., object]]] = [
    ("RV003", rowver.UnknownRefError, rowver.InvalidInputError, lambda db, _: db.resolve("no-such-ref")),
    ("RV003", rowver.UnknownRefError, rowver.InvalidInputError, lambda db, _: db.as_of("early", "1999-01-01")),
    ("RV004", rowver.AboveHeadError, rowver.InvalidInputError, lambda db, _: db.as_of("early", db.head() + 10)),
    ("RV005", rowver.PredatesTableError, rowver.InvalidInputError, lambda db, _: db.read("late", 1)),
    ("RV006", rowver.PrunedError, rowver.InvalidInputError, lambda db, _: _pruned(db)),
    ("RV007", rowver.UnknownTagError, rowver.UnknownRefError, lambda db, _: db.untag("no-such-tag")),
    ("RV008", rowver.NotVersionedError, rowver.RowverError, lambda db, _: db.history("plain", 1)),
    ("RV009", rowver.BadKeyError, rowver.InvalidInputError, lambda db, tmp: _duplicate_keys_file(db, tmp)),
    ("RV010", rowver.UnknownStageError, rowver.InvalidInputError, lambda db, _: db.publish("no-such-stage")),
    ("RV011", rowver.UnknownModelError, rowver.InvalidInputError, lambda db, _: db.models.load("no-such-model")),
    ("RV011", rowver.UnknownModelError, rowver.InvalidInputError, lambda db, _: db.models.alias("nope", "prod", 1)),
]


@pytest.mark.parametrize(("code", "cls", "base", "call"), CASES,
                         ids=[f"{c[0]}-{c[1].__name__}-{i}" for i, c in enumerate(CASES)])
def test_each_code_is_raised_by_the_server_and_maps_to_its_class(
        db: rowver.Database, tmp_path: Path, code: str, cls: type[rowver.RowverError],
        base: type[rowver.RowverError], call: Callable[..., object]) -> None:
    with pytest.raises(cls) as caught:
        call(db, tmp_path)
    error = caught.value
    assert type(error) is cls and error.sqlstate == code
    assert isinstance(error, base) and isinstance(error, rowver.RowverError)
    assert isinstance(error.__cause__, psycopg.Error) and error.__cause__.sqlstate == code  # the server said it
    assert db.head() > 0  # the handle is usable afterwards


def test_old_except_clauses_still_catch_the_split_codes(db: rowver.Database) -> None:
    """Code written against the 22023 bucket keeps working."""
    for call in (lambda: db.resolve("no-such-ref"), lambda: db.as_of("early", db.head() + 10),
                 lambda: db.untag("no-such-tag"), lambda: db.publish("no-such-stage")):
        try:
            call()
        except rowver.InvalidInputError as error:
            assert error.sqlstate is not None and error.sqlstate.startswith("RV")
        else:
            pytest.fail("no error")


def test_every_rowver_code_in_sql_has_a_class() -> None:
    """No server: each RVnnn code a file in sql/ raises is in the mapping, and each mapped code
    is raised somewhere (the table in rowver/errors.py stays true)."""
    raised = {m for p in SQL.rglob("*.sql") for m in re.findall(r"errcode = '(RV\d{3})'", p.read_text())}
    mapped = {code for code in errors._BY_SQLSTATE if code.startswith("RV")} | {"RV001", "RV002"}
    assert raised == mapped
    documented = set(re.findall(r"^(RV\d{3})  ", errors.__doc__ or "", re.M))
    assert documented == mapped
