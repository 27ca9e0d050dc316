"""rowver show --format csv through the server's COPY (sql/reads/csv_select.sql): the same bytes
that rowver's Python encoder (rowver/_output.py, to_csv) makes of the same rows, for every type the
server encodes, awkward values and names included; types only Python encodes fall back to it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import set_json_loads
from test_cli import error, rv

import rowver
from rowver import _output, _query
from rowver.errors import InvalidInputError

COLUMNS = """("Id" int primary key, "select" text, "with space" varchar(20), "Odd ""Name"", too" char(3),
    "MixedCase" name, i2 int2, i8 int8, o oid, u uuid, flag bool, n numeric, f4 float4, f8 float8, b bytea,
    d date, ts timestamp, tz timestamptz, t time, j jsonb, ia int4[], ta text[], ba bool[], i2a int2[],
    i8a int8[], va varchar[], e mood, dom positive)"""

# every column NULL but the key; then empty values; then awkward ones; then the edges of each type
ROWS = [
    "(1, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,"
    " null, null, null, null, null, null, null, null, null)",
    "(2, '', '', '', '', 0, 0, 0, '00000000-0000-0000-0000-000000000000', false, 0, 0, 0, '', '2026-01-01',"
    " '2026-01-01 00:00:00', '2026-01-01 00:00:00+00', '00:00:00', '\"\"', '{}', '{}', '{}', '{}', '{}', '{}',"
    " 'sad', 1)",
    "(3, e'say \"hi\",\\nthen\\r\\nbye\\ttab \\\\ back', 'a,b', '\"q\"', 'Ünï ✓', -32768,"
    " -9223372036854775808, 4294967295, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'NaN', 'NaN', 'NaN',"
    " '\\x00ff2c22', '0099-01-02', '2026-12-06 16:21:46.5', '2026-12-06 16:21:46.000001+05:30', '23:59:59.5',"
    " e'{\"a\": 1.10, \"b\": [1, \"x,y\", null, true], \"c\": \"line\\\\nbreak \\\\u0001 é 日本 🎉\", \"n\": 1e-7}',"
    " '{1,NULL,3}', e'{\"a,b\",\"c\\\\\"d\",NULL,\"\",\"é\"}', '{true,false,NULL}', '{{1,2},{3,4}}',"
    " '{9223372036854775807}', '{\"x y\"}', 'happy', 2147483647)",
    "(4, '\\.', ' lead', 'x', 'y', 1, 1, 1, null, null, 'Infinity', 'Infinity', 'Infinity', 'ab', 'infinity',"
    " 'infinity', 'infinity', '12:00', '\"x,y\"', '[2:3]={5,6}', '{}', '{}', '{}', '{}', '{}', 'happy', 3)",
    "(5, 'z', 'z', 'z', 'z', 1, 1, 1, null, null, '-Infinity', '-Infinity', '-Infinity', 'ab', '-infinity',"
    " '-infinity', '-infinity', '00:00:00.000001', 'null', null, null, null, null, null, null, null, null)",
    "(6, 'z', 'z', 'z', 'z', 1, 1, 1, null, null, 0.0000001, 0.1, 0.1, null, null, null,"
    " '1960-06-01 12:00:00+00', null, '2.50', null, null, null, null, null, null, null, null)",
    "(7, 'z', 'z', 'z', 'z', 1, 1, 1, null, null, -0.00000000, 3.4e38, 1e15, null, null, null, null, null,"
    " 'true', null, null, null, null, null, null, null, null)",
    "(8, 'z', 'z', 'z', 'z', 1, 1, 1, null, null, 12345678901234567890.123, 1e15, 1234567890123456.7, null, null,"
    " null, null, null, '[]', null, null, null, null, null, null, null, null)",
]
# the float8 edges, each a row of its own: where Python's repr and PostgreSQL's text part ways
FLOATS = [1e16, 1e-5, 0.0001, -0.0, 3.0, 1e300, 5e-324, -1.5e15, 999999999999999.9, 123.456, 1e15 - 0.5,
          1e15 + 0.25, 2.5e-5, 2.0**53 + 2, 1 / 3]


def shown_csv(db_url: str, table: str, *options: str) -> str:
    """rowver show --format csv's output (its bytes: the test runner's text turns CR LF into LF)."""
    return rv(db_url, "show", table, "--format", "csv", *options).stdout_bytes.decode()


def python_csv(db: rowver.Database, table: str, **read: Any) -> str:
    """The rows as rowver's Python encoder writes them (as the command's fallback would)."""
    found = db.read(table, **read)
    return _output.to_csv(found.columns, found.rows, found.type_oids)


@pytest.fixture
def every(conn: psycopg.Connection, db_url: str) -> str:
    conn.execute("create type mood as enum ('sad', 'happy')")
    conn.execute("create domain positive as int check (value > 0)")
    conn.execute("create table every " + COLUMNS)
    conn.execute("insert into every values " + ", ".join(ROWS))
    conn.execute("insert into every (\"Id\", f8) select 100 + n, v"
                 " from unnest(%s::float8[]) with ordinality as x(v, n)", (FLOATS,))
    rv(db_url, "enable", "every")
    return "every"


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "Africa/Monrovia"])
def test_copy_prints_what_the_python_encoder_prints(every: str, db_url: str, zone: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte for byte, in the session's time zone (Monrovia in 1960: an offset with seconds, west of Greenwich)."""
    monkeypatch.setenv("PGTZ", zone)
    with rowver.connect(db_url) as db:
        set_json_loads(_output.json_loads, db.conn)  # (as the command reads jsonb: numbers exact)
        with _query.stream_csv(db, every) as found:
            assert isinstance(found, _query.Copied)  # the server encodes every one of these types
        expected = python_csv(db, every)
        shown = shown_csv(db_url, every)
        assert shown == expected
        # what show's options do on the fast path too
        for options, read in (
                (["--columns", "select,f8,MixedCase", "--where", "\"Id\" > 2", "--limit", "4"],
                 {"columns": ["select", "f8", "MixedCase"], "where": '"Id" > 2', "limit": 4}),
                (["--order-by", "f8", "--limit", "0"], {"order_by": ["f8"], "limit": 0}),
                (["--order-by", "f8", "--at", "1"], {"order_by": ["f8"], "ref": "1"}),
                (["--columns", "select"], {"columns": ["select"]})):  # (one column: COPY quotes a lone \.)
            try:
                expected = python_csv(db, every, **read)
            except InvalidInputError:  # (version 1 predates the table)
                continue
            assert shown_csv(db_url, every, *options) == expected, options
    # NULL an empty field, an empty string a quoted one; NaN empty, infinity Python's largest value
    assert "\n1," + "," * 26 + "1\n" in shown and '\n2,"","",   ,"",0,0,0,' in shown
    assert ",NaN,,,AP8sIg==," in shown and ",Infinity,inf,inf,YWI=,9999-12-31," in shown
    assert '\n"\\."\n' in shown_csv(db_url, every, "--columns", "select")


def test_types_only_python_encodes_fall_back_to_it(conn: psycopg.Connection, db_url: str) -> None:
    conn.execute("create table other (id int primary key, span interval, j json, r int4range, amounts numeric[])")
    conn.execute("insert into other values (1, '1 day 02:03:04.5', '{\"b\": 1, \"a\": [2.50]}', '[1,5)', '{1.50,NULL}'),"
                 " (2, null, null, null, null), (3, '-1 mon', '\"\"', 'empty', '{}')")
    rv(db_url, "enable", "other")
    with rowver.connect(db_url) as db:
        set_json_loads(_output.json_loads, db.conn)
        with _query.stream_csv(db, "other") as found:
            assert isinstance(found, _query.Stream)
        assert shown_csv(db_url, "other") == python_csv(db, "other")
    conn.execute("update other set span = span * 2, j = '[]'")
    conn.execute("select rowver.publish_head()")
    with rowver.connect(db_url) as db:
        set_json_loads(_output.json_loads, db.conn)
        with _query.diff_stream_csv(db, "other", 1, "head") as (_, found):
            assert isinstance(found, _query.Stream)


def python_diff_csv(db: rowver.Database, table: str, a: int, **options: Any) -> str:
    """diff's rows as rowver's Python encoder writes them (as the command's fallback would)."""
    limit = options.pop("limit", None)
    with _query.diff_stream(db, table, a, "head", **options) as (_, found):
        rows = [row for batch in found for row in batch][:limit]
    return _output.to_csv(found.columns, rows)


def test_diff_by_copy_prints_what_the_python_encoder_prints(every: str, conn: psycopg.Connection,
                                                            db_url: str) -> None:
    first = int(conn.execute("select rowver.head()").fetchone()[0])
    conn.execute("update every set \"select\" = 'changed, \"quoted\"', f8 = f8 / 3, j = '{\"new\": [1.50]}'"
                 " where \"Id\" in (2, 3, 4, 101)")
    conn.execute("update every set tz = null, n = 'NaN', b = '' where \"Id\" in (1, 6)")
    conn.execute("delete from every where \"Id\" in (5, 102)")
    conn.execute("insert into every (\"Id\", \"with space\", f4) values (200, '', 'NaN')")
    conn.execute("select rowver.publish_head()")
    with rowver.connect(db_url) as db:
        set_json_loads(_output.json_loads, db.conn)
        with _query.diff_stream_csv(db, every, first, "head") as (_, found):
            assert isinstance(found, _query.Copied)
        shown = rv(db_url, "diff", every, str(first), "--format", "csv").stdout_bytes.decode()
        assert shown == python_diff_csv(db, every, first)
        assert shown.count("\nchanged,") == 6 and shown.count("\nremoved,") == 2 and shown.count("\nadded,") == 1
        for options, read in ((["--columns", "select,f8", "--where", "\"Id\" < 100"],
                               {"columns": ["select", "f8"], "where": '"Id" < 100'}),
                              (["--limit", "3"], {"limit": 3}), (["--limit", "0"], {"limit": 0})):
            assert rv(db_url, "diff", every, str(first), "--format", "csv", *options).stdout_bytes.decode() == \
                python_diff_csv(db, every, first, **read), options


def test_an_error_midway_through_the_copy_is_one_line(conn: psycopg.Connection, db_url: str) -> None:
    """A row that fails after others were printed: one error line, exit status 1."""
    conn.execute("create table few (id int primary key)")
    conn.execute("insert into few select generate_series(1, 3000)")
    rv(db_url, "enable", "few")
    said = rv(db_url, "show", "few", "--format", "csv", "--where", "1 / (id - 2500) <> 7", code=1)
    assert error(said) == "error: division by zero (in where '1 / (id - 2500) <> 7')"
    assert rv(db_url, "show", "few", "--format", "csv", "--limit", "2").stdout == "id,rv_version\n1,1\n2,1\n"


def test_a_year_python_cannot_hold_is_an_error_not_a_year_without_its_era(conn: psycopg.Connection,
                                                                          db_url: str) -> None:
    """As in Python (which reads no such value), the COPY path refuses BC, years after 9999 and 24:00."""
    conn.execute("create table eras (id int primary key, d date, t timestamp, z timestamptz, h time)")
    conn.execute("insert into eras values (1, '0044-03-15 BC', null, null, null), (2, null, '12000-01-01', null, null),"
                 " (3, null, null, '0001-01-01 00:00+00 BC', null), (4, null, null, null, '24:00'),"
                 " (5, '0001-01-01', '9999-12-31 23:59', '2026-01-01+00', '23:59:59.999999')")
    rv(db_url, "enable", "eras")
    for key, value in ((1, "0044-03-15 BC"), (2, "12000-01-01"), (3, " BC"), (4, "24:00:00")):
        for fmt in ("csv", "json"):
            said = error(rv(db_url, "show", "eras", "--format", fmt, "--where", f"id = {key}", code=1))
            assert value in said and ("outside the dates and times rowver prints" in said or fmt == "json"), said
    assert shown_csv(db_url, "eras", "--where", "id = 5") == \
        "id,d,t,z,h,rv_version\n5,0001-01-01,9999-12-31T23:59:00,2026-01-01T00:00:00+00:00,23:59:59.999999,1\n"
