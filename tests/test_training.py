"""db.training_set: each event joined with each feature table's row as of its time (the rule of
timestamp refs), versions or refs; equal, row for row, to one db.as_of per distinct event time."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rowver
from rowver.errors import InvalidInputError, NotVersionedError, PermissionDeniedError, RowverError, UnknownTableError

US = dt.timedelta(microseconds=1)
_tables = itertools.count()


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as database:
        yield database


def run(db: rowver.Database, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Statements in one transaction (the capture triggers make it one version), then head published."""
    with db.conn.transaction():
        for query, params in statements:
            db.conn.execute(query, params)
    db.publish_head()


def published(db: rowver.Database) -> list[dt.datetime]:
    return [r[0] for r in db.conn.execute("select at from rowver.head_log order by at").fetchall()]


def plain(value: Any) -> Any:
    """A value as compared: NaN, NA and None alike."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def reference(db: rowver.Database, table: str, events: pd.DataFrame, key: str, at: str,
              columns: list[str]) -> tuple[list[tuple[Any, ...]], int]:
    """The brute force: one db.as_of per distinct event time (resolved as a timestamp ref), and
    the events that read before the table's first version (or before any head)."""
    first = int(db.scalar("select (rowver.registered(%s::regclass)).enabled_version", (table,)))
    states: dict[Any, dict[Any, tuple[Any, ...]] | None] = {}
    for t in events[at].unique():
        ref = pd.Timestamp(t).isoformat() if isinstance(t, (pd.Timestamp, np.datetime64, dt.datetime)) else str(t)
        try:
            v = db.resolve(ref)
        except InvalidInputError:  # before the first head published
            v = None
        if v is None or v < first:
            states[t] = None
            continue
        frame = db.as_of(table, v)
        states[t] = {row[key]: tuple(plain(row[c]) for c in columns) for row in frame.to_dict("records")}
    rows, before = [], 0
    for t, k in zip(events[at], events["k"]):
        state = states[t]
        before += state is None
        rows.append((state or {}).get(k, (None,) * len(columns)))
    return rows, before


# -- the property: random histories -----------------------------------------------------------

KEYS = st.integers(0, 4)
OPS = st.one_of(
    st.tuples(st.just("put"), KEYS, st.integers(-3, 3)),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("rekey"), KEYS, KEYS),
    st.tuples(st.just("reinsert"), KEYS, st.integers(-3, 3)),  # delete and insert in one transaction
)


def statements(table: str, op: tuple[Any, ...]) -> list[tuple[str, tuple[Any, ...]]]:
    t = psycopg.sql.Identifier(table).as_string(None)
    if op[0] == "put":
        return [(f"insert into {t} values (%s, %s, %s) on conflict (id) do update set val = excluded.val,"
                 f" note = excluded.note", (op[1], op[2], f"n{op[2]}"))]
    if op[0] == "delete":
        return [(f"delete from {t} where id = %s", (op[1],))]
    if op[0] == "rekey":
        return [(f"update {t} set id = %s where id = %s and not exists (select from {t} where id = %s)",
                 (op[2], op[1], op[2]))]
    return [(f"delete from {t} where id = %s", (op[1],)),
            (f"insert into {t} values (%s, %s, null)", (op[1], op[2]))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.lists(OPS, min_size=1, max_size=3), min_size=1, max_size=8),
       keys=st.lists(KEYS, min_size=1, max_size=6), late=st.booleans())
def test_training_set_equals_one_as_of_per_event_time(db: rowver.Database, history: list[list[tuple[Any, ...]]],
                                                      keys: list[int], late: bool) -> None:
    table = f"feat_{next(_tables)}"
    db.conn.execute(psycopg.sql.SQL("create table {} (id int primary key, val int, note text)").format(
        psycopg.sql.Identifier(table)))
    db.conn.execute(psycopg.sql.SQL("insert into {} values (0, 100, 'start')").format(psycopg.sql.Identifier(table)))
    db.enable(table)
    db.publish_head()
    for i, ops in enumerate(history):
        run(db, *(s for op in ops for s in statements(table, op)))
        if late and i == len(history) // 2:
            db.conn.execute(psycopg.sql.SQL("alter table {} add column late int default 7").format(
                psycopg.sql.Identifier(table)))
            db.refresh(table)
            db.publish_head()
    # events exactly on, just before and just after every published head and every changeset's
    # time, before all, after all
    stamps = published(db) + [r[0] for r in db.conn.execute("select created_at from rowver.changeset").fetchall()]
    times = sorted({t + d for t in stamps for d in (-US, dt.timedelta(0), US)})
    times = [times[0] - dt.timedelta(days=1), *times, times[-1] + dt.timedelta(days=1)]
    events = pd.DataFrame([{"k": k, "when": t} for t in times for k in keys])
    events["when"] = pd.to_datetime(events["when"], utc=True)
    columns = ["val", "note", *(["late"] if late else [])]

    found = db.training_set(events, {table: columns}, on={table: "k"}, at="when")

    expected, before = reference(db, table, events, "id", "when", columns)
    assert [tuple(plain(v) for v in row) for row in found[columns].itertuples(index=False)] == expected
    assert found.attrs["rowver_before_first"] == {f"public.{table}": before}
    assert list(found.columns) == ["k", "when", *columns]
    assert found[["k", "when"]].equals(events)


# -- versions, refs, several tables ------------------------------------------------------------

@pytest.fixture
def shop(db: rowver.Database) -> dict[str, int]:
    """customers (one key) and usage (a composite key), with a few versions each."""
    db.conn.execute("create table customers (id int primary key, plan text, mrr numeric)")
    db.conn.execute("create table usage (customer int, region text, calls_7d int, primary key (customer, region))")
    db.enable("customers")
    db.enable("usage")
    v: dict[str, int] = {}
    with db.changeset(message="load") as cs:
        cs.sync("customers", [{"id": 1, "plan": "free", "mrr": 0}, {"id": 2, "plan": "pro", "mrr": 50}])
        cs.sync("usage", [{"customer": 1, "region": "eu", "calls_7d": 3}])
    v["load"] = db.head()
    db.tag("loaded")
    with db.changeset(message="upgrade") as cs:
        cs.upsert("customers", [{"id": 1, "plan": "pro", "mrr": 50}])
        cs.upsert("usage", [{"customer": 1, "region": "eu", "calls_7d": 9}, {"customer": 2, "region": "us", "calls_7d": 1}])
    v["upgrade"] = db.head()
    with db.changeset(message="churn") as cs:
        cs.delete("customers", [{"id": 2}])
    v["churn"] = db.head()
    return v


def test_at_versions_and_refs_read_those_versions(db: rowver.Database, shop: dict[str, int]) -> None:
    events = pd.DataFrame({"cust": [1, 2, 1, 2, 2], "reg": ["eu", "us", "eu", "us", "eu"],
                           "v": [shop["load"], shop["load"], shop["upgrade"], shop["upgrade"], shop["churn"]]})
    features = {"customers": ["plan", "mrr"], "usage": {"calls_7d": "calls"}}
    on = {"customers": "cust", "usage": {"region": "reg", "customer": "cust"}}
    by_version = db.training_set(events, features, on=on, at="v")
    assert by_version["plan"].tolist()[:4] == ["free", "pro", "pro", "pro"] and pd.isna(by_version["plan"][4])
    assert [plain(c) for c in by_version["calls"]] == [3, None, 9, 1, None]
    assert by_version.attrs["rowver_lineage"] == {"public.customers": [shop["load"], shop["upgrade"]],
                                                  "public.usage": [shop["load"], shop["upgrade"]]}
    assert by_version.attrs["rowver_before_first"] == {"public.customers": 0, "public.usage": 0}

    refs = events.assign(v=["loaded", "loaded", str(shop["upgrade"]), "head", "head"])
    by_ref = db.training_set(refs, features, on=on, at="v")
    assert by_ref["plan"].tolist()[:3] == ["free", "pro", "pro"] and by_ref["plan"][3:].isna().all()
    assert [plain(c) for c in by_ref["calls"]] == [3, None, 9, 1, None]


def test_the_result_keeps_the_events_index_and_columns(db: rowver.Database, shop: dict[str, int]) -> None:
    events = pd.DataFrame({"cust": [2, 1], "at": [shop["load"]] * 2, "label": [True, False]}, index=["b", "a"])
    found = db.training_set(events, {"customers": ["plan"]}, on={"customers": "cust"}, at="at")
    assert list(found.index) == ["b", "a"] and found["plan"].tolist() == ["pro", "free"]
    assert found[["cust", "at", "label"]].equals(events)
    empty = db.training_set(events.iloc[:0], {"customers": ["plan"]}, on={"customers": "cust"}, at="at")
    assert list(empty.columns) == ["cust", "at", "label", "plan"] and len(empty) == 0


def test_events_before_a_tables_first_version_read_nulls_and_are_counted(db: rowver.Database) -> None:
    db.conn.execute("create table early (id int primary key, x int)")
    db.conn.execute("insert into early values (1, 10)")
    before = db.conn.execute("select clock_timestamp()").fetchone()[0]
    db.publish_head()
    db.conn.execute("create table later (id int primary key, y int)")
    db.conn.execute("insert into later values (1, 20)")
    db.enable("early")
    db.publish_head()
    between = db.conn.execute("select clock_timestamp()").fetchone()[0]
    db.enable("later")
    db.publish_head()
    after = db.conn.execute("select clock_timestamp()").fetchone()[0]
    events = pd.DataFrame({"id": [1, 1, 1], "t": pd.to_datetime([before, between, after], utc=True)})
    found = db.training_set(events, {"early": ["x"], "later": ["y"]}, on={"early": "id", "later": "id"}, at="t")
    assert [plain(v) for v in found["x"]] == [None, 10, 10]
    assert [plain(v) for v in found["y"]] == [None, None, 20]
    assert found.attrs["rowver_before_first"] == {"public.early": 1, "public.later": 2}
    first = {t: int(db.scalar("select (rowver.registered(%s::regclass)).enabled_version", (t,))) for t in ("early", "later")}
    by_version = events.assign(t=[0, first["early"], first["later"]])  # versions, not times: the same rule
    found = db.training_set(by_version, {"early": ["x"], "later": ["y"]}, on={"early": "id", "later": "id"}, at="t")
    assert [plain(v) for v in found["x"]] == [None, 10, 10] and [plain(v) for v in found["y"]] == [None, None, 20]
    assert found.attrs["rowver_before_first"] == {"public.early": 1, "public.later": 2}
    long_before = events.assign(t=pd.Timestamp("2000-01-01", tz="UTC"))  # before any head was published
    assert db.training_set(long_before, {"early": ["x"]}, on={"early": "id"}, at="t").attrs[
        "rowver_before_first"] == {"public.early": 3}


def test_times_without_a_zone_are_read_in_the_sessions_zone(db: rowver.Database, shop: dict[str, int]) -> None:
    t = published(db)[-1]
    naive = pd.DataFrame({"cust": [1], "t": [t.astimezone(dt.timezone.utc).replace(tzinfo=None)]})
    db.conn.execute("set timezone = 'UTC'")
    assert db.training_set(naive, {"customers": ["plan"]}, on={"customers": "cust"}, at="t")["plan"].tolist() == ["pro"]
    db.conn.execute("set timezone = 'America/New_York'")  # the same wall time is five hours later there
    assert db.training_set(naive.assign(t=naive["t"] - pd.Timedelta(hours=5)), {"customers": ["plan"]},
                           on={"customers": "cust"}, at="t")["plan"].tolist() == ["pro"]


def test_a_model_saved_with_a_training_set_keeps_its_lineage(db: rowver.Database, shop: dict[str, int]) -> None:
    events = pd.DataFrame({"cust": [1, 1, 2], "v": [shop["load"], shop["upgrade"], shop["upgrade"]]})
    found = db.training_set(events, {"customers": ["plan"]}, on={"customers": "cust"}, at="v")
    saved = db.models.save("churn", params={"depth": 2}, data_version=found)
    assert saved.data_version == shop["upgrade"]  # the newest version any row was read from
    assert json.loads(saved.data_ref) == {"training_set": {"public.customers": [shop["load"], shop["upgrade"]]}}
    assert db.resolve("model:churn/1") == shop["upgrade"]
    again = db.models.save("churn", data_version=found.attrs)
    assert (again.data_version, again.data_ref) == (saved.data_version, saved.data_ref)
    with pytest.raises(InvalidInputError, match="read no feature row"):
        db.models.save("churn", data_version={"rowver_lineage": {"public.customers": []}})
    with pytest.raises(InvalidInputError, match="training set"):
        db.models.save("churn", data_version=pd.DataFrame({"a": [1]}))


def test_pruned_versions_are_refused(db: rowver.Database, shop: dict[str, int]) -> None:
    db.untag("loaded")
    db.prune("customers", before=shop["churn"])
    events = pd.DataFrame({"cust": [1], "v": [shop["load"]]})
    with pytest.raises(InvalidInputError, match="pruned"):
        db.training_set(events, {"customers": ["plan"]}, on={"customers": "cust"}, at="v")
    ok = db.training_set(events.assign(v=shop["churn"]), {"customers": ["plan"]}, on={"customers": "cust"}, at="v")
    assert ok["plan"].tolist() == ["pro"]


# -- bad input: one clear error, nothing read --------------------------------------------------

@pytest.mark.parametrize(("events", "features", "on", "at", "error", "match"), [
    ({"cust": [1], "v": [1]}, {"nope": ["plan"]}, {"nope": "cust"}, "v", UnknownTableError, "nope"),
    ({"cust": [1], "v": [1]}, {"plain_table": ["x"]}, {"plain_table": "cust"}, "v", NotVersionedError, "not versioned"),
    ({"cust": [1], "v": [1]}, {"customers": ["fax"]}, {"customers": "cust"}, "v", InvalidInputError, "no column 'fax'"),
    ({"cust": [1], "v": [1]}, {"customers": ["plan"]}, {}, "v", InvalidInputError, "on has no entry for 'customers'"),
    ({"cust": [1], "v": [1]}, {"customers": ["plan"]}, {"customers": "client"}, "v", InvalidInputError,
     "no column 'client'"),
    ({"cust": [1], "v": [1]}, {"customers": ["plan"]}, {"customers": "cust"}, "when", InvalidInputError,
     "no column 'when'"),
    ({"cust": [1], "v": [1]}, {"usage": ["calls_7d"]}, {"usage": "cust"}, "v", InvalidInputError,
     r"keyed by \(customer, region\)"),
    ({"cust": [1], "plan": ["x"], "v": [1]}, {"customers": ["plan"]}, {"customers": "cust"}, "v", InvalidInputError,
     "rename it"),
    ({"cust": [1, 2], "v": [1.0, float("nan")]}, {"customers": ["plan"]}, {"customers": "cust"}, "v",
     InvalidInputError, "event 1 has no v"),
    ({"cust": [1], "v": [1.5]}, {"customers": ["plan"]}, {"customers": "cust"}, "v", InvalidInputError,
     "must hold times"),
    ({"cust": [1], "v": [10**9]}, {"customers": ["plan"]}, {"customers": "cust"}, "v", InvalidInputError,
     "above head"),
    ({"cust": [1], "v": [-1]}, {"customers": ["plan"]}, {"customers": "cust"}, "v", InvalidInputError, "negative"),
    ({"cust": [1], "v": ["no-such-tag"]}, {"customers": ["plan"]}, {"customers": "cust"}, "v", InvalidInputError,
     "unknown ref"),
    ({"cust": [1], "v": [1]}, {}, {}, "v", InvalidInputError, "at least one table"),
])
def test_bad_input_is_one_clear_error(db: rowver.Database, shop: dict[str, int], events: dict[str, list[Any]],
                                      features: dict[str, Any], on: dict[str, Any], at: str,
                                      error: type[RowverError], match: str) -> None:
    db.conn.execute("create table if not exists plain_table (id int primary key, x int)")
    with pytest.raises(error, match=match):
        db.training_set(pd.DataFrame(events), features, on=on, at=at)
    assert db.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# -- security: a training set reads no more than the caller may -------------------------------

@pytest.fixture
def tenant(db: rowver.Database) -> Iterator[str]:
    role = f"rv_training_tenant_{next(_tables)}"
    db.conn.execute(psycopg.sql.SQL("create role {}").format(psycopg.sql.Identifier(role)))
    yield role
    db.conn.execute("reset role")
    db.conn.execute(psycopg.sql.SQL("drop owned by {}; drop role {}").format(
        psycopg.sql.Identifier(role), psycopg.sql.Identifier(role)))


def test_a_tenant_reads_only_its_own_rows_past_and_present(db: rowver.Database, tenant: str) -> None:
    db.conn.execute("create table accounts (id int primary key, owner name, balance int)")
    db.conn.execute("alter table accounts enable row level security")
    db.conn.execute("create policy mine on accounts using (owner = current_user)")
    db.conn.execute(psycopg.sql.SQL("grant select on accounts to {}").format(psycopg.sql.Identifier(tenant)))
    db.conn.execute("insert into accounts values (1, %s, 10), (2, 'someone_else', 20)", (tenant,))
    first = db.enable("accounts")
    db.publish_head()
    run(db, ("update accounts set balance = balance + 1", ()))
    events = pd.DataFrame({"id": [1, 2, 1, 2], "v": [first, first, db.head(), db.head()]})
    db.conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(tenant)))
    found = db.training_set(events, {"accounts": ["balance"]}, on={"accounts": "id"}, at="v")
    assert [plain(v) for v in found["balance"]] == [10, None, 11, None]
    db.conn.execute("reset role")
    db.conn.execute(psycopg.sql.SQL("revoke select on accounts from {}").format(psycopg.sql.Identifier(tenant)))
    db.conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(tenant)))
    with pytest.raises(PermissionDeniedError):
        db.training_set(events, {"accounts": ["balance"]}, on={"accounts": "id"}, at="v")


def test_odd_names_are_quoted_not_pasted(db: rowver.Database) -> None:
    db.conn.execute('create schema "Sales Dept"')
    db.conn.execute('create table "Sales Dept"."Order Items" ("Item Id" int primary key, "Price; drop" numeric)')
    db.conn.execute('insert into "Sales Dept"."Order Items" values (1, 9.5)')
    db.enable('"Sales Dept"."Order Items"')
    events = pd.DataFrame({"item": [1, 2], "v": [db.head(), db.head()]})
    found = db.training_set(events, {'"Sales Dept"."Order Items"': ["Price; drop"]},
                            on={'"Sales Dept"."Order Items"': "item"}, at="v")
    assert [plain(v) for v in found["Price; drop"]] == [pytest.approx(9.5), None]
    assert found.attrs["rowver_lineage"] == {'"Sales Dept"."Order Items"': [db.head()]}
