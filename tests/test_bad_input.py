"""Hostile and odd inputs to every public entry point, Python and SQL.

Each input must end in a clear error (rowver.RowverError from Python, a psycopg error from
SQL) or be handled correctly, and either way change nothing: the tables, their history,
the changesets, tags, the registry, the published head and the catalog's relations,
functions and triggers are compared before and after, and the Python handle must still
work afterwards (no transaction left open or broken).

The sweep shares one database (cloned from the template, like db_url) because every case
changes nothing; inputs that are handled by changing data (huge values, wide tables,
names with quotes and semicolons, empty frames) have tests of their own. Core bugs found
here are marked xfail(strict=True) with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from pgserver import report
from psycopg import sql

import rowver
from rowver._server import server_url_for

WEIRD = '"We""ird; ü"."Tä""ble; --"'  # schema and table names with quotes, semicolons, unicode
WEIRD_KEY = 'k"ey; ü'
MB = 1024 * 1024

SETUP = [
    "create table items (id int primary key, name text, data bytea, doc jsonb, at timestamptz)",
    ("insert into items values (1, 'one', '\\x01', '{\"a\": 1}', '2020-01-01'), (2, 'two', null, null, null),"
     " (3, 'three', '\\x', '[]', '2999-12-31')"),
    "create table plain (id int primary key, v text)",  # never versioned
    "insert into plain values (1, 'p')",
    'create schema "We""ird; ü"',
    f'create table {WEIRD} ("k""ey; ü" text primary key, "välue" int)',
    f"insert into {WEIRD} values ('a', 1), ('b''c', 2), ('ü; --', 3)",
    "create table textkey (k text primary key, v text)",
    "insert into textkey values ('a', 'x')",
    "create view items_view as select id, name from items",
    "select rowver.enable('items'), rowver.enable('textkey')",
    f"select rowver.enable('{WEIRD.replace(chr(39), chr(39) * 2)}')",
    "update items set name = name || '!' where id < 3",
    f"""update {WEIRD} set "välue" = "välue" + 10""",
    "select rowver.tag('v1')",
    "delete from items where id = 2",
    "insert into items (id, name) values (4, 'four')",
    "update textkey set v = 'y'",
    "select rowver.publish_head()",
]


@dataclass
class Handle:
    db: rowver.Database
    conn: psycopg.Connection  # autocommit, superuser: inspects, and runs the SQL-level cases
    snapshot_sql: sql.Composable

    def snapshot(self) -> dict[str, str]:
        cur = self.conn.execute(self.snapshot_sql)
        return dict(zip([d.name for d in cur.description or []], cur.fetchone() or (), strict=False))


def _snapshot_sql(conn: psycopg.Connection) -> sql.Composable:
    """One statement: a digest of everything a hostile input could change, part by part."""
    def agg(from_: sql.Composable, label: str) -> sql.Composable:
        return sql.SQL("(select md5(coalesce(string_agg(x::text, ',' order by x::text), '')) from {} x) as {}").format(
            from_, sql.Identifier(label))
    tables = [r[0] for r in conn.execute(
        "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')"
        " and n.nspname not like 'pg_temp%' and n.nspname <> 'rowver' order by 1").fetchall()]
    parts = [agg(sql.SQL(t), t) for t in tables]  # every user table, histories included (quoted by format)
    # (not head_mark and head_log: head may pass versions that failed writes burnt, as it should)
    for t in ("changeset", "changeset_table", "tag", "versioned", "column_life"):
        parts.append(agg(sql.SQL("rowver.{}").format(sql.Identifier(t)), f"rowver.{t}"))
    parts.append(agg(sql.SQL("(select n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n"
                             " on n.oid = c.relnamespace where n.nspname not like 'pg_temp%%'"
                             " and n.nspname not like 'pg_toast%%')"), "relations"))
    parts.append(agg(sql.SQL("(select p.oid::regprocedure::text, md5(p.prosrc) from pg_proc p"
                             " join pg_namespace n on n.oid = p.pronamespace where n.nspname <> 'pg_catalog')"),
                     "functions"))
    parts.append(agg(sql.SQL("(select tgrelid::regclass::text, tgname, tgenabled from pg_trigger"
                             " where not tgisinternal)"), "triggers"))
    parts.append(agg(sql.SQL("(select rolname from pg_roles)"), "roles"))
    return sql.SQL("select ") + sql.SQL(", ").join(parts)


@pytest.fixture(scope="module")
def hostile(server_url: str, template_db: str) -> Iterator[Handle]:
    name = f"rowver_bad_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(template_db)))
    url = server_url_for(server_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn, rowver.connect(url) as db:
            for statement in SETUP:
                conn.execute(statement)
            yield Handle(db, conn, _snapshot_sql(conn))
            assert conn.execute("select * from rowver.check()").fetchall() == []
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


# -- the cases -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Handle], Any]
    expect: str | Callable[[Handle, Any], None]  # "error" (RowverError), "sqlerror" (psycopg.Error), or a check


@dataclass(frozen=True)
class Lazy:
    """Rows made when the case runs (big ones would slow every collection of the suite)."""
    make: Callable[[], Any]


def write(op: str, table: Any, rows: Any) -> Callable[[Handle], Any]:
    def call(h: Handle) -> Any:
        with h.db.changeset(message="hostile") as cs:
            return getattr(cs, op)(table, rows.make() if isinstance(rows, Lazy) else rows)
    return call


def sql_call(query: str, *params: Any) -> Callable[[Handle], Any]:
    return lambda h: h.conn.execute(query, params).fetchall()


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)})"


TABLE_NAMES: list[Any] = [
    "items; drop table plain; --", "items'; drop table plain; --", '"items', '"items"; select 1', "items ;",
    "nope", "public.nope", "nope.items", "", " ", "ü", '"Tä""ble; --"', "x" * 100, "a\x00b", None, 123,
    "plain", "items__history", "items_view", "rowver.nope",
]
NOT_VERSIONED = ["plain", "items__history", "items_view"]  # exist, are not versioned


PUBLISHED, HEAD = "published", "head"
REFS: list[tuple[Any, Any]] = [
    ("-1", "error"), ("0", 0), ("-0", 0), ("+1", 1), (" 1 ", 1), ("00000000000000000000001", 1),
    ("99999999999", "error"), ("9" * 40, "error"), ("9223372036854775807", "error"),
    ("9223372036854775808", "error"), ("-9223372036854775808", "error"), ("1e5", "error"), ("1.5", "error"),
    ("0x10", "error"), ("--1", "error"), ("1; drop table plain", "error"), ("'; drop table items; --", "error"),
    ("head; drop table plain", "error"), ("HEAD", HEAD), ("head", HEAD), ("2024-13-45", "error"),
    ("2024-02-30", "error"), ("not-a-date", "error"), ("2001-01-01", "error"), ("-infinity", "error"),
    ("epoch", "error"), ("9999-12-31", PUBLISHED), ("infinity", PUBLISHED), ("now", PUBLISHED),
    ("2999-01-01T00:00:00+14:00", PUBLISHED), ("", "error"), (" ", "error"), ("\t\n", "error"),
    ("model:", "error"), ("model:x@y", "error"), ("model:../../etc/passwd", "error"), ("v1", "v1"),
    ("V1", "error"), ("ü", "error"), ("１", "error"), ("a" * 1000, "error"), ("\x00", "error"),
    # Python values, passed on as str(ref)
    (None, "error"), (-1, "error"), (0, 0), (10**30, "error"), (1.5, "error"), (True, "error"),
    (float("nan"), "error"), (b"1", "error"), ([1], "error"),
]


def expected_version(h: Handle, expect: Any) -> int:
    if expect == HEAD:
        return int(h.conn.execute("select rowver.head()").fetchone()[0])
    if expect == PUBLISHED:
        return int(h.conn.execute("select head from rowver.head_log order by at desc, head desc limit 1").fetchone()[0])
    if expect == "v1":
        return int(h.conn.execute("select version from rowver.tag where name = 'v1'").fetchone()[0])
    return int(expect)


def as_of_check(table: str) -> Callable[[Any], Callable[[Handle, Any], None]]:
    def for_ref(expect: Any) -> Callable[[Handle, Any], None]:
        def check(h: Handle, frame: pd.DataFrame) -> None:
            v = expected_version(h, expect)
            fn = h.conn.execute("select rowver.as_of_sql(%s::regclass, %s)", (table, v)).fetchone()[0]
            want = h.conn.execute(sql.SQL("select id, rv_version from {} order by 1").format(sql.SQL(fn))).fetchall()
            assert list(zip(frame["id"], frame["rv_version"], strict=False)) == want
        return check
    return for_ref


def resolve_check(expect: Any) -> Callable[[Handle, Any], None]:
    def check(h: Handle, got: Any) -> None:
        value = got[0][0] if isinstance(got, list) else got
        assert value == expected_version(h, expect)
    return check


def ref_cases() -> list[Case]:
    cases = []
    for ref, expect in REFS:
        bad = expect == "error"
        early = bad or expect == 0  # version 0 predates items: a read of items there is refused
        r = short(ref)
        sref = ref if isinstance(ref, str) else str(ref)
        cases += [
            Case(f"resolve({r})", lambda h, ref=ref: h.db.resolve(ref), "error" if bad else resolve_check(expect)),
            Case(f"as_of(items, {r})", lambda h, ref=ref: h.db.as_of("items", ref),
                 "error" if early else as_of_check("items")(expect)),
            Case(f"diff(items, {r}, head)", lambda h, ref=ref: h.db.diff("items", ref, "head"),
                 "error" if early else lambda h, frame: None),
            Case(f"changes(items, since={r})", lambda h, ref=ref: h.db.changes("items", ref),
                 "error" if bad else lambda h, frame: None),  # (a feed may start before the table)
            Case(f"sql resolve({r})", sql_call("select rowver.resolve(%s)", sref),
                 "sqlerror" if bad else resolve_check(expect)),
            Case(f"sql as_of(null::items, {r})", sql_call("select * from rowver.as_of(null::items, %s)", sref),
                 "sqlerror" if early else lambda h, rows: None),
        ]
        if early and not bad:
            cases.append(Case(f"revert(items, {r})", lambda h, ref=ref: h.db.revert("items", ref), "error"))
        if bad:  # a valid ref would change data or tags: those have tests of their own
            cases += [
                Case(f"revert(items, {r})", lambda h, ref=ref: h.db.revert("items", ref), "error"),
                Case(f"tag(t, {r})", lambda h, ref=ref: h.db.tag("t_hostile", ref), "error"),
                Case(f"sql revert(items, {r})", sql_call("select * from rowver.revert('items', %s)", sref), "sqlerror"),
                Case(f"sql diff(items, {r}, head)", sql_call("select * from rowver.diff('items', %s, 'head')", sref),
                     "sqlerror"),
                Case(f"sql changes(items, {r})", sql_call("select * from rowver.changes('items', %s)", sref),
                     "sqlerror"),
            ]
    return cases


def table_cases() -> list[Case]:
    cases = []
    for name in TABLE_NAMES:
        n = short(name)
        # refresh is a no-op on anything unversioned, by design (migrations call it for any table)
        refresh_ok = name in NOT_VERSIONED or name is None or name == 123
        cases += [
            Case(f"disable({n})", lambda h, t=name: h.db.disable(t), "error"),
            Case(f"as_of({n}, head)", lambda h, t=name: h.db.as_of(t, "head"), "error"),
            Case(f"history({n}, 1)", lambda h, t=name: h.db.history(t, 1), "error"),
            Case(f"diff({n}, 0, head)", lambda h, t=name: h.db.diff(t, 0, "head"), "error"),
            Case(f"changes({n}, 0)", lambda h, t=name: h.db.changes(t, 0), "error"),
            Case(f"revert({n}, 0)", lambda h, t=name: h.db.revert(t, 0), "error"),
            Case(f"log(table={n})", lambda h, t=name: h.db.log(table=t), "error" if name is not None else
                 (lambda h, frame: None)),  # no table: the whole log
            *([] if isinstance(name, str) and "\x00" in name else  # see test_a_changeset_that_fails_to_open...
              [Case(f"truncate({n})", lambda h, t=name: h.db.truncate(t), "error")]),
            Case(f"refresh({n})", lambda h, t=name: h.db.refresh(t),
                 (lambda h, out: _equal(out, "not versioned")) if refresh_ok else "error"),
        ]
        for op in ("insert", "upsert", "delete", "sync"):
            cases.append(Case(f"{op}({n})", write(op, name, [{"id": 1}]), "error"))
        if name != "plain":  # enabling it (or planning to) would work
            cases += [Case(f"enable({n})", lambda h, t=name: h.db.enable(t), "error"),
                      Case(f"ddl({n})", lambda h, t=name: h.db.ddl(t), "error")]
        if isinstance(name, str) and "\x00" not in name:
            cases += [] if name == "plain" else [
                Case(f"sql enable({n})", sql_call("select rowver.enable(%s)", name), "sqlerror")]
            cases += [
                Case(f"sql disable({n})", sql_call("select rowver.disable(%s)", name), "sqlerror"),
                Case(f"sql history({n})", sql_call("select * from rowver.history(%s, '{\"id\": 1}')", name),
                     "sqlerror"),
                Case(f"sql truncate({n})", sql_call("select rowver.truncate(%s)", name), "sqlerror"),
            ]
    cases += [
        Case("enable(items) again", lambda h: h.db.enable("items"), "error"),
        Case("enable(items_view)", lambda h: h.db.enable("items_view"), "error"),
        Case("enable(pg_catalog.pg_class)", lambda h: h.db.enable("pg_catalog.pg_class"), "error"),
        Case("enable(items__history)", lambda h: h.db.enable("items__history"), "error"),
        Case("enable(plain, key=[nope])", lambda h: h.db.enable("plain", key=["nope"]), "error"),
        Case("enable(plain, key=[v])", lambda h: h.db.enable("plain", key=["v"]), "error"),  # nullable, no index
        Case("enable(plain, key=['id; drop'])", lambda h: h.db.enable("plain", key=["id; drop table plain"]), "error"),
        Case("enable(plain, key=[''])", lambda h: h.db.enable("plain", key=[""]), "error"),
        Case("enable(plain, key=[None])", lambda h: h.db.enable("plain", key=[None]), "error"),  # type: ignore[list-item]
        Case("enable(plain, ignore=[id])", lambda h: h.db.enable("plain", ignore=["id"]), "error"),
        Case("enable(plain, ignore=[nope])", lambda h: h.db.enable("plain", ignore=["nope"]), "error"),
        Case("enable(plain, ignore=[\"v'; drop\"])", lambda h: h.db.enable("plain", ignore=["v'; drop table plain"]),
             "error"),
        Case("sql enable(plain, key => {v})", sql_call("select rowver.enable('plain', key => array['v']::name[])"),
             "sqlerror"),
        Case("sql enable(NULL)", sql_call("select rowver.enable(NULL)"), "sqlerror"),
        Case("sql disable(NULL)", sql_call("select rowver.disable(NULL)"), "sqlerror"),
        Case("sql refresh(NULL)", sql_call("select rowver.refresh(NULL)"), lambda h, rows: None),
        Case("refresh(plain) is a no-op", lambda h: h.db.refresh("plain"), lambda h, out: None),
    ]
    return cases


def row_cases() -> list[Case]:
    rows: list[tuple[str, Any]] = [
        ("[]", []),
        ("DataFrame()", pd.DataFrame()),
        ("null key", [{"id": None, "name": "x"}]),
        ("NaN key", [{"id": float("nan"), "name": "x"}]),
        ("frame with a NaN key", pd.DataFrame({"id": [1.0, None], "name": ["a", "b"]})),
        ("duplicate keys", [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
        ("unknown column", [{"id": 1, "nope": 2}]),
        ("hostile column", [{"id": 1, 'name"; drop table plain; --': "x"}]),
        ("no key column", [{"name": "x"}]),
        ("rv_version column", [{"id": 1, "rv_version": 1}]),
        ("text for int", [{"id": "abc"}]),
        ("int out of range", [{"id": 2**40}]),
        ("NUL in text", [{"id": 1, "name": "a\x00b"}]),
        ("bad json", [{"id": 1, "doc": "{bad json"}]),
        ("bad timestamp", [{"id": 1, "at": "2024-13-45"}]),
        ("object()", [{"id": 1, "name": object()}]),
        ("rows is an int", 42),
        ("rows is a str", "id,name\n1,x"),
        ("rows is a dict", {"id": 1}),
        ("rows is None", None),
        ("rows are ints", [1, 2]),
        ("200k-column dict", Lazy(lambda: [{"id": 1, **{f"c{i}": i for i in range(200_000)}}])),
    ]
    cases = []
    for op in ("insert", "upsert", "delete", "sync"):
        for label, value in rows:
            cases.append(Case(f"{op}(items, {label})", write(op, "items", value), "error"))
    cases += [
        # (every column is converted before names are checked: seconds for 20k columns, so once)
        Case("upsert(items, 20k-column frame)", write("upsert", "items", Lazy(lambda: pd.DataFrame(
            np.zeros((1, 20_000), dtype="int64"), columns=["id", *(f"c{i}" for i in range(1, 20_000))]))), "error"),
        Case("insert(items, existing key)", write("insert", "items", [{"id": 1, "name": "dup"}]), "error"),
        Case(f"upsert({WEIRD}, null key)", write("upsert", WEIRD, [{WEIRD_KEY: None, "välue": 1}]), "error"),
        Case(f"upsert({WEIRD}, key named without quotes)", write("upsert", WEIRD, [{"key": "a"}]), "error"),
        # a 20 MB incompressible key does not fit a btree index entry
        Case("upsert(textkey, 20 MB key)",
             write("upsert", "textkey",
                   Lazy(lambda: [{"k": base64.b64encode(os.urandom(15 * MB)).decode(), "v": "x"}])),
             "error"),
        # the empty frame with columns changes nothing (sync would delete all: tested apart)
        *[Case(f"{op}(items, empty frame with columns)",
               write(op, "items", pd.DataFrame({"id": pd.Series([], dtype="int64"),
                                                "name": pd.Series([], dtype=object)})),
               lambda h, result: _nothing_written(result)) for op in ("insert", "upsert", "delete")],
        Case("sql apply_rows(items, bogus mode)", sql_call("select * from rowver.apply_rows('items', null, 'bogus')"),
             "sqlerror"),
        Case("sql load(items, plain, insert)", sql_call("select * from rowver.load('items', 'plain', 'insert')"),
             "sqlerror"),
        Case("sql stage(items, {nope})", sql_call("select rowver.stage('items', array['nope']::name[])"), "sqlerror"),
        Case("sql load(items, items, sync): a table synced with itself",
             sql_call("select * from rowver.load('items', 'items', 'sync')"), lambda h, rows: None),
    ]
    return cases


def _nothing_written(result: rowver.WriteResult) -> None:
    assert (result.inserted, result.updated, result.deleted, result.version) == (0, 0, 0, None)


def misc_cases() -> list[Case]:
    keys: list[tuple[str, Any, Any]] = [
        ("None", None, "empty"), ("'abc'", "abc", "error"), ("(1, 2)", (1, 2), "error"), ("{}", {}, "error"),
        ("{'id': 1, 'x': 2}", {"id": 1, "x": 2}, "error"), ("'1; drop table plain'", "1; drop table plain", "error"),
        ("10**20", 10**20, "error"), ("nan", float("nan"), "error"), ("[[1]]", [[1]], "error"),
    ]
    cases = [Case(f"history(items, {label})", lambda h, k=key: h.db.history("items", k),
                  "error" if expect == "error" else lambda h, frame: _empty(frame))
             for label, key, expect in keys]
    cases += [
        Case(f"history({WEIRD}, hostile text key)", lambda h: h.db.history(WEIRD, "x'; drop table plain; --"),
             lambda h, frame: _empty(frame)),
        Case(f"history({WEIRD}, existing key)", lambda h: h.db.history(WEIRD, "b'c"),
             lambda h, frame: _equal(list(frame["välue"]), [2, 12])),
    ]
    for label, key in [("[]", "[]"), ("null", "null"), ('"x"', '"x"'), ("{}", "{}"), ('{"id": "abc"}', '{"id": "abc"}'),
                       ('{"nope": 1}', '{"nope": 1}'), ("1", "1")]:
        cases.append(Case(f"sql history(items, {label})",
                          sql_call("select * from rowver.history('items', %s::jsonb)", key),
                          "sqlerror"))
    cases.append(Case("sql history(items, {id: null})",
                      sql_call("select * from rowver.history('items', '{\"id\": null}')"),
                      lambda h, rows: _equal(rows, [])))
    for label, limit, expect in [("-1", -1, "error"), ("0", 0, "empty"), ("'5'", "5", "ok"), ("None", None, "ok"),
                                 ("1.5", 1.5, "error"), ("'x'", "x", "error")]:
        cases.append(Case(f"log({label})", lambda h, n=limit: h.db.log(n),
                          "error" if expect == "error" else (lambda h, f: _empty(f)) if expect == "empty" else
                          (lambda h, f: None)))
    cases += [Case("sql log(-1)", sql_call("select * from rowver.log(-1)"), "sqlerror"),
              Case("sql log(NULL, 'plain')", sql_call("select * from rowver.log(NULL, 'plain')"), "sqlerror")]
    tag_names: list[Any] = ["", " ", "head", "HEAD", "model:x", "a b", "x'; drop table plain; --", "v1", "1abc", "9",
                            "a" * 201, "\x00", None, "\t", "-x", "x\ny"]
    for name in tag_names:
        cases.append(Case(f"tag({short(name)})", lambda h, n=name: h.db.tag(n, 0), "error"))
        if isinstance(name, str) and "\x00" not in name:
            cases.append(Case(f"sql tag({short(name)})", sql_call("select rowver.tag(%s, '0')", name), "sqlerror"))
    cases += [
        Case("untag(nope)", lambda h: h.db.untag("nope"), "error"),
        Case("sql untag(NULL)", sql_call("select rowver.untag(NULL)"), "sqlerror"),
        Case("changes(items, since > until)", lambda h: h.db.changes("items", 3, 1), lambda h, f: _empty(f)),
        Case("items__as_of(-1)", sql_call("select * from items__as_of(-1)"), lambda h, rows: _equal(rows, [])),
        Case("items__as_of(NULL)", sql_call("select * from items__as_of(NULL)"), lambda h, rows: _equal(rows, [])),
        Case("items__as_of('x')", sql_call("select * from items__as_of('x')"), "sqlerror"),
        # T's rows are alive until the largest bigint: no version is that large, one below it reads T
        Case("items__as_of(2^63 - 1)", sql_call("select * from items__as_of(9223372036854775807)"), "sqlerror"),
        Case("items__as_of(2^63 - 2)", sql_call("select * from items__as_of(9223372036854775806) order by 1"),
             lambda h, rows: _equal(rows, h.conn.execute("select * from items order by 1").fetchall())),
        Case("rowver.as_of(null::plain, head)", sql_call("select * from rowver.as_of(null::plain, 'head')"),
             "sqlerror"),
        Case("rowver.as_of(null::int, head)", sql_call("select * from rowver.as_of(null::int, 'head')"), "sqlerror"),
    ]
    return cases


def _empty(frame: pd.DataFrame) -> None:
    assert len(frame) == 0


def _equal(got: Any, want: Any) -> None:
    assert got == want


CASES = ref_cases() + table_cases() + row_cases() + misc_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id.replace("\x00", "\\0") for c in CASES])
def test_hostile_input_changes_nothing(hostile: Handle, case: Case, request: pytest.FixtureRequest) -> None:
    before = hostile.snapshot()
    if case.expect in ("error", "sqlerror"):
        with pytest.raises(rowver.RowverError if case.expect == "error" else psycopg.Error) as caught:
            case.call(hostile)
        message = str(caught.value).strip()
        assert message and len(message) < 3000, f"unclear error: {message[:300]!r}... ({len(message)} chars)"
    else:
        assert callable(case.expect)
        case.expect(hostile, case.call(hostile))
    after = hostile.snapshot()
    assert {k: v for k, v in after.items() if before[k] != v} == {}, "the input changed something"
    # the handle is usable: no transaction left open or failed
    assert hostile.db.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert hostile.db.head() >= 0
    _count(request.config)


def _count(config: pytest.Config) -> None:
    counted = getattr(config, "_rowver_bad_inputs", 0) + 1
    config._rowver_bad_inputs = counted
    if counted == len(CASES):
        report(config, f"bad input: {len(CASES)} hostile or odd inputs to the Python API and the SQL functions, "
                       "each a clear error or handled, none changed anything")


# -- inputs handled by changing data ------------------------------------------------------------

@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as handle:
        yield handle


def test_names_with_quotes_semicolons_and_unicode_work_everywhere(db: rowver.Database) -> None:
    schema, table, key, value = 'Sch"ema; --', "Tab'le; drop table x; ü", 'k"ey; --', "välue'"
    ref = sql.Identifier(schema, table).as_string(db.conn)
    db.conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    db.conn.execute(sql.SQL("create table {} ({} text primary key, {} int)").format(
        sql.Identifier(schema, table), sql.Identifier(key), sql.Identifier(value)))
    assert "create table" in db.ddl(ref)
    v0 = db.enable(ref)
    with db.changeset(message="first") as cs:
        cs.insert(ref, [{key: "a'; --", value: 1}, {key: 'b"', value: 2}])
    v1 = cs.version
    with db.changeset(message="second") as cs:
        cs.sync(ref, [{key: "a'; --", value: 10}, {key: "c", value: 3}])
    v2 = cs.version
    db.tag("tag';--", v1)
    assert db.as_of(ref, "tag';--").set_index(key)[value].to_dict() == {"a'; --": 1, 'b"': 2}
    assert db.as_of(ref, v2).set_index(key)[value].to_dict() == {"a'; --": 10, "c": 3}
    assert list(db.history(ref, "a'; --")[value]) == [1, 10]
    assert sorted(db.diff(ref, v1, v2)["op"]) == ["added", "changed", "removed"]
    assert list(db.changes(ref, v0)["op"]) == ["insert", "insert", "update", "delete", "insert"]
    assert set(db.log(table=ref).version) == {v0, v1, v2}
    assert db.refresh(ref) is not None
    reverted = db.revert(ref, "tag';--")
    assert db.as_of(ref, reverted.version).set_index(key)[value].to_dict() == {"a'; --": 1, 'b"': 2}
    assert db.check(ref).empty
    db.disable(ref)
    assert db.conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()[0] == 2


def test_huge_text_and_bytea(db: rowver.Database, request: pytest.FixtureRequest) -> None:
    """50 MB of text and 50 MB of bytea through the write layer and plain SQL: stored, read as
    of each version, kept in history when superseded, and a rewrite of the same values makes
    no version."""
    db.conn.execute("create table blobs (id int primary key, tag text, body text, data bytea)")
    db.enable("blobs")
    body = base64.b64encode(os.urandom(3 * 50 * MB // 4)).decode()  # incompressible, 50 MB
    data = os.urandom(50 * MB)
    with db.changeset(message="huge") as cs:
        cs.upsert("blobs", [{"id": 1, "tag": "a", "body": body, "data": data}])
    v1 = cs.version
    db.conn.execute("update blobs set body = body || 'x', tag = 'b' where id = 1")
    v2 = db.conn.execute("select max(version) from rowver.changeset").fetchone()[0]
    db.conn.execute("update blobs set data = data, body = body where id = 1")  # a no-op
    db.publish_head()
    digests = "select md5(body), md5(data), octet_length(body), octet_length(data), tag from blobs__as_of(%s)"
    assert db.conn.execute(digests, (v1,)).fetchone() == (
        hashlib.md5(body.encode()).hexdigest(), hashlib.md5(data).hexdigest(), len(body), len(data), "a")
    assert db.conn.execute(digests, (v2,)).fetchone()[:2] == (
        hashlib.md5((body + "x").encode()).hexdigest(), hashlib.md5(data).hexdigest())
    assert db.conn.execute("select count(*) from rowver.changeset where version > %s", (v2,)).fetchone()[0] == 0
    report(request.config, "bad input: 50 MB text and 50 MB bytea stored, read as of each version, no-op rewrites"
                           " of them make no version")


@pytest.mark.parametrize("columns,fits", [(1597, True), (1598, False)])
def test_wide_tables(db: rowver.Database, columns: int, fits: bool) -> None:
    """PostgreSQL allows 1600 columns; history needs three more than the payload (rv_version,
    rv_until, rv_deleted). A table too wide for that is refused, changing nothing."""
    cols = sql.SQL(", ").join(sql.SQL("{} int").format(sql.Identifier(f"c{i}")) for i in range(1, columns))
    db.conn.execute(sql.SQL("create table wide (id int primary key, {})").format(cols))
    db.conn.execute("insert into wide (id) values (1)")
    before = db.conn.execute("select count(*) from rowver.changeset").fetchone()[0]
    if not fits:
        with pytest.raises(rowver.RowverError, match="1600"):
            db.enable("wide")
        assert db.conn.execute("select count(*) from rowver.changeset").fetchone()[0] == before
        assert db.conn.execute("select count(*) from rowver.versioned").fetchone()[0] == 0
        assert db.conn.execute("select count(*) from pg_attribute where attrelid = 'wide'::regclass"
                               " and attname = 'rv_version'").fetchone()[0] == 0
        return
    v0 = db.enable("wide")
    row = {"id": 1, **{f"c{i}": i for i in range(1, columns)}}
    with db.changeset() as cs:
        cs.sync("wide", pd.DataFrame([row, {**row, "id": 2}]))
    assert db.as_of("wide", v0).iloc[0].isna().sum() == columns - 1
    assert db.as_of("wide", cs.version).drop(columns="rv_version").iloc[1].tolist() == [2, *range(1, columns)]


def test_empty_frames(db: rowver.Database) -> None:
    """An empty frame with columns is no change for insert, upsert and delete (no version),
    and for sync the empty snapshot it says it is: every row becomes a tombstone."""
    db.conn.execute("create table t (id int primary key, v text)")
    db.conn.execute("insert into t values (1, 'a'), (2, 'b')")
    db.enable("t")
    empty = pd.DataFrame({"id": pd.Series([], dtype="int64"), "v": pd.Series([], dtype=object)})
    for op in ("insert", "upsert", "delete"):
        with db.changeset() as cs:
            result = getattr(cs, op)("t", empty)
        assert (result.inserted, result.updated, result.deleted, result.version) == (0, 0, 0, None)
    assert len(db.log()) == 1
    with db.changeset() as cs:
        result = cs.sync("t", empty)
    assert (result.deleted, result.inserted) == (2, 0)
    assert db.conn.execute("select count(*) from t__history where rv_deleted").fetchone()[0] == 2


# -- core bugs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["rowver.changeset", "rowver.tag", "rowver.head_mark"])
def test_enable_refuses_rowver_catalog_tables(db: rowver.Database, table: str) -> None:
    with pytest.raises(rowver.RowverError):
        db.enable(table)
    assert db.conn.execute("select count(*) from rowver.versioned").fetchone()[0] == 0


@pytest.mark.parametrize("where", ["row value", "table name", "ref"])
def test_invalid_unicode_is_a_rowver_error(db: rowver.Database, where: str) -> None:
    db.conn.execute("create table t (id int primary key, v text)")
    db.enable("t")
    with pytest.raises(rowver.RowverError):
        if where == "row value":
            with db.changeset() as cs:
                cs.upsert("t", [{"id": 1, "v": "\ud800"}])
        elif where == "table name":
            db.as_of("\ud800", "head")
        else:
            db.as_of("t", "\ud800")
    assert db.conn.execute("select count(*) from t").fetchone()[0] == 0


def test_unserialisable_json_is_a_rowver_error(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key, doc jsonb)")
    db.enable("t")
    with pytest.raises(rowver.InvalidInputError), db.changeset() as cs:
        cs.upsert("t", [{"id": 1, "doc": {1, 2}}])


@pytest.mark.parametrize("rows", [[{"id": None, "v": "x" * MB}], [{"id": "x" * MB, "v": "a"}], "x" * MB],
                         ids=["null key", "text for int", "long ref"])
def test_errors_about_huge_values_stay_short(db: rowver.Database, rows: Any) -> None:
    db.conn.execute("create table t (id int primary key, v text)")
    db.enable("t")
    with pytest.raises(rowver.InvalidInputError) as caught:
        if isinstance(rows, str):
            db.as_of("t", rows)
        else:
            with db.changeset() as cs:
                cs.upsert("t", rows)
    assert len(str(caught.value)) < 3000


def test_log_limit_out_of_range_is_an_input_error(db: rowver.Database) -> None:
    with pytest.raises(rowver.InvalidInputError):
        db.log(10**10)


@pytest.mark.parametrize("column", ["x", "y"])
def test_diff_of_a_table_with_a_column_named_like_its_aliases(db: rowver.Database, column: str) -> None:
    db.conn.execute(sql.SQL("create table t (id int primary key, {} int)").format(sql.Identifier(column)))
    db.conn.execute("insert into t values (1, 1)")
    v0 = db.enable("t")
    db.conn.execute(sql.SQL("update t set {} = 2").format(sql.Identifier(column)))
    db.publish_head()
    assert list(db.diff("t", v0, "head")["op"]) == ["changed"]


@pytest.mark.parametrize("entry", ["changes", "sql history"])
def test_feed_and_history_of_a_table_with_a_column_named_v(db: rowver.Database, entry: str) -> None:
    db.conn.execute("create table t (id int primary key, v int)")
    db.conn.execute("insert into t values (1, 1)")
    v0 = db.enable("t")
    db.conn.execute("update t set v = 2")
    db.publish_head()
    if entry == "changes":
        assert list(db.changes("t", v0)["op"]) == ["update"]
    else:
        assert len(db.conn.execute("select * from rowver.history('t', '{\"id\": 1}')").fetchall()) == 2


def test_a_column_named_rv_op(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key, rv_op text)")
    try:
        db.enable("t")
    except rowver.RowverError:
        return  # refused up front: fine
    with db.changeset() as cs:
        cs.upsert("t", [{"id": 1, "rv_op": "x"}])
    assert db.conn.execute("select rv_op from t").fetchall() == [("x",)]


def test_alter_runs_one_alter_table(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key)")
    db.conn.execute("create table plain (id int primary key)")
    db.enable("t")
    try:
        db.alter("t", "add column x int; drop table plain")
    except rowver.RowverError:
        pass
    assert db.conn.execute("select to_regclass('plain') is not null").fetchone()[0]


@pytest.mark.parametrize("how", ["message", "author", "truncate"])
def test_a_changeset_that_fails_to_open_leaves_no_transaction_behind(db_url: str, how: str) -> None:
    with rowver.connect(db_url) as db:
        db.conn.execute("create table t (id int primary key)")
        db.enable("t")
        try:
            if how == "truncate":
                db.truncate("t\x00")
            else:
                with db.changeset(**{how: "a\x00b"}):
                    pass
        except rowver.RowverError:
            assert db.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with db.changeset(message="after") as cs:
                cs.upsert("t", [{"id": 1}])
        else:
            pytest.fail("no error")
        with psycopg.connect(db_url) as other:  # committed, so another session sees it
            assert other.execute("select count(*) from t").fetchone()[0] == 1


def test_sql_load_refuses_columns_the_table_lacks(conn: psycopg.Connection) -> None:
    conn.execute("create table items (id int primary key, name text)")
    conn.execute("insert into items values (1, 'one')")
    conn.execute("create table plain (id int primary key, v text)")
    conn.execute("insert into plain values (1, 'p')")
    conn.execute("select rowver.enable('items')")
    with pytest.raises(psycopg.Error):
        conn.execute("select * from rowver.load('items', 'plain', 'upsert')")


def test_infinite_timestamps_read_back(db: rowver.Database) -> None:
    db.conn.execute("create table t (id int primary key, valid_until timestamptz, born date)")
    db.conn.execute("insert into t values (1, 'infinity', '-infinity'), (2, '2024-01-01', '2024-01-01')")
    db.enable("t")
    assert len(db.as_of("t", "head")) == 2
    assert len(db.history("t", 1)) == 1


@pytest.mark.parametrize("values", [
    ["2024-01-01 10:00:00.123456+00", "1999-12-31 23:59:59+05:30", "2026-07-01 12:00:00-07"],  # parsed as text
    ["2024-01-01 10:00:00+00", None], [None, "2024-01-01 10:00:00+00"], [None],                # with NULL
    ["infinity", "2024-01-01 10:00:00+00"],                                                   # fetched again
])
@pytest.mark.parametrize("setting", ["", "set timezone = 'America/New_York'"])
def test_frames_read_timestamps_as_psycopg_does(db: rowver.Database, values: list[str | None], setting: str) -> None:
    db.conn.execute("create table t (id int primary key, at timestamptz)")
    for i, v in enumerate(values):
        db.conn.execute("insert into t values (%s, %s::timestamptz)", (i, v))
    db.enable("t")
    if setting:
        db.conn.execute(setting)
    expected = [r[0] for r in db.conn.execute("select at from t order by id")]  # the connection's loaders
    frame = db.as_of("t", "head")
    got = [None if pd.isna(v) else v.to_pydatetime() for v in frame["at"]]
    assert got == expected
    if "infinity" not in values and any(values):  # (infinity: beyond datetime64's range; all NULL: no type)
        assert str(frame["at"].dtype).endswith(f"{db.conn.info.timezone.key}]")
