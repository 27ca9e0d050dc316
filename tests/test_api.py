"""The Python surface: changesets and their counts, as-of reads by number, tag and time,
row history, diffs, revert, and clear errors that change nothing."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal

import pandas as pd
import psycopg
import pytest
from psycopg import sql

import rowver


@pytest.fixture
def db(db_url: str) -> Iterator[rowver.Database]:
    with rowver.connect(db_url) as handle:
        yield handle


@pytest.fixture
def prices(db: rowver.Database) -> rowver.Database:
    db.conn.execute("create table prices (sku text, region text, price numeric not null, note jsonb,"
                    " primary key (sku, region))")
    db.enable("prices")
    with db.changeset(message="first load", author="etl") as cs:
        cs.insert("prices", pd.DataFrame({
            "sku": ["a", "a", "b"], "region": ["eu", "us", "eu"],
            "price": [Decimal("1.10"), Decimal("1.20"), Decimal("2.00")],
            "note": [{"src": "x"}, None, ["l", 1]],
        }))
    return db


def rows(frame: pd.DataFrame, *cols: str) -> list[tuple]:
    return [tuple(r) for r in frame[list(cols)].itertuples(index=False)]


def test_changeset_counts_and_metadata(prices: rowver.Database) -> None:
    with prices.changeset(message="nightly", author="alice") as cs:
        r = cs.sync("prices", [{"sku": "a", "region": "eu", "price": Decimal("1.10"), "note": {"src": "x"}},
                               {"sku": "a", "region": "us", "price": Decimal("1.25"), "note": None},
                               {"sku": "c", "region": "eu", "price": Decimal("3"), "note": None}])
    assert (r.inserted, r.updated, r.deleted, r.unchanged) == (1, 1, 1, 1)
    log = prices.log()
    top = log.iloc[0]
    assert (top.version, top.author, top.message, top.tables, top.rows) == (r.version, "alice", "nightly", ["public.prices"], 3)
    # the same snapshot again is a no-op: no version
    with prices.changeset() as cs:
        again = cs.sync("prices", prices.as_of("prices", "head").drop(columns=["rv_version"]))
    assert (again.inserted, again.updated, again.deleted, again.version) == (0, 0, 0, None)
    assert len(prices.log()) == len(log)


def test_as_of_by_number_tag_and_time(prices: rowver.Database) -> None:
    v1 = prices.head()
    prices.tag("launch", v1)
    time.sleep(0.05)
    stamp = prices.conn.execute("select clock_timestamp()").fetchone()[0]
    time.sleep(0.05)
    with prices.changeset() as cs:
        cs.upsert("prices", [{"sku": "b", "region": "eu", "price": Decimal("9.99")}])
    for ref in (v1, str(v1), "launch", stamp.isoformat()):
        assert rows(prices.as_of("prices", ref), "sku", "price")[-1] == ("b", Decimal("2.00")), ref
    assert rows(prices.as_of("prices", "head"), "sku", "price")[-1] == ("b", Decimal("9.99"))
    assert list(prices.tags().name) == ["launch"]
    # the SQL convenience gives the same rows, shaped like the table
    got = prices.conn.execute("select sku, price from rowver.as_of(null::prices, 'launch') order by 1, 2").fetchall()
    assert got == [("a", Decimal("1.10")), ("a", Decimal("1.20")), ("b", Decimal("2.00"))]


@pytest.mark.parametrize("ref", ["99999", "-1", "nope", "'; drop table prices; --", "2001-01-01", "model:churn@prod", ""])
def test_bad_refs_are_refused(prices: rowver.Database, ref: str) -> None:
    with pytest.raises(rowver.InvalidInputError):
        prices.as_of("prices", ref)
    assert prices.conn.execute("select count(*) from prices").fetchone()[0] == 3


def test_history_of_a_composite_key(prices: rowver.Database) -> None:
    with prices.changeset(message="raise") as cs:
        cs.upsert("prices", [{"sku": "a", "region": "us", "price": Decimal("1.50")}])
    with prices.changeset(message="drop") as cs:
        cs.delete("prices", [{"sku": "a", "region": "us"}])
    h = prices.history("prices", ("a", "us"))
    assert rows(h, "price", "rv_deleted", "message") == [
        (Decimal("1.20"), False, "first load"), (Decimal("1.50"), False, "raise"), (None, True, "drop")]
    assert prices.history("prices", {"sku": "a", "region": "us"}).shape == h.shape
    with pytest.raises(rowver.InvalidInputError, match="keyed by"):
        prices.history("prices", "a")


def test_diff_and_revert(prices: rowver.Database) -> None:
    good = prices.head()
    with prices.changeset(message="bad load") as cs:
        cs.sync("prices", [{"sku": "a", "region": "eu", "price": Decimal("0"), "note": {"src": "x"}},
                           {"sku": "z", "region": "eu", "price": Decimal("5")}])
    bad = prices.head()
    d = prices.diff("prices", good, bad)
    assert sorted(d.op) == ["added", "changed", "removed", "removed"]
    changed = d[d.op == "changed"].iloc[0]
    assert changed.key == {"sku": "a", "region": "eu"} and changed.changed == ["price"]
    assert (changed.old_price, changed.new_price) == (Decimal("1.10"), Decimal(0))
    result = prices.revert("prices", to=good, message="undo bad load")
    assert (result.inserted, result.updated, result.deleted) == (2, 1, 1)
    current = prices.as_of("prices", "head").drop(columns=["rv_version"])
    before = prices.as_of("prices", good).drop(columns=["rv_version"])
    pd.testing.assert_frame_equal(current, before)
    # nothing was erased: the bad state is still readable
    assert rows(prices.as_of("prices", bad), "sku") == [("a",), ("z",)]
    assert prices.log().iloc[0].message == "undo bad load"


def test_bad_rows_are_refused_before_anything_is_written(prices: rowver.Database) -> None:
    before = prices.as_of("prices", "head")
    changesets = len(prices.log())
    bad_inputs = [
        ([{"sku": "q", "region": "eu", "price": 1, "nope": 1}], "no column 'nope'"),
        ([{"sku": "q", "price": 1}], "lack key column 'region'"),
        ([{"sku": "q", "region": "eu", "price": 1}, {"sku": "q", "region": "eu", "price": 2}], "duplicate key"),
        ([{"sku": None, "region": "eu", "price": 1}], "NULL key"),
        ([{"sku": "q", "region": "eu", "price": "lots"}], "price"),
        ([{"sku": "q", "region": "eu", "price": None}], "null value"),
        ("not rows", "DataFrame or an iterable"),
    ]
    for data, message in bad_inputs:
        with pytest.raises(rowver.RowverError, match=message):
            with prices.changeset() as cs:
                cs.insert("prices", data)
    with pytest.raises(rowver.UnknownTableError):
        with prices.changeset() as cs:
            cs.insert("missing_table", [{"a": 1}])
    assert len(prices.log()) == changesets
    pd.testing.assert_frame_equal(prices.as_of("prices", "head"), before)


def test_a_failed_call_inside_a_changeset_changes_nothing_else(prices: rowver.Database) -> None:
    with prices.changeset(message="partly bad") as cs:
        cs.upsert("prices", [{"sku": "a", "region": "eu", "price": Decimal("7")}])
        with pytest.raises(rowver.InvalidInputError):
            cs.upsert("prices", [{"sku": "a", "region": "eu", "price": "x"}])
    assert rows(prices.as_of("prices", "head"), "price")[0] == (Decimal("7"),)


def test_dtypes_round_trip(db: rowver.Database) -> None:
    db.conn.execute("create table kinds (id bigint primary key, f float8, i int, ts timestamptz, d date,"
                    " b boolean, t text, raw bytea, tags text[])")
    db.enable("kinds")
    frame = pd.DataFrame({
        "id": [1, 2], "f": [1.5, float("nan")], "i": pd.array([3, None], dtype="Int64"),
        "ts": pd.to_datetime(["2026-01-01T00:00:00Z", None], utc=True),
        "d": [dt.date(2026, 1, 2), None], "b": [True, None], "t": ["x", None],
        "raw": [b"\x00\x01", None], "tags": [["a", "b"], None]})
    with db.changeset() as cs:
        cs.insert("kinds", frame)
    got = db.as_of("kinds", "head")
    assert got.loc[0, "f"] == 1.5 and pd.isna(got.loc[1, "f"])
    assert got.loc[0, "ts"] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert bytes(got.loc[0, "raw"]) == b"\x00\x01" and got.loc[0, "tags"] == ["a", "b"]
    # the same frame again changes nothing: NULL equals NULL for change detection
    with db.changeset() as cs:
        r = cs.upsert("kinds", frame)
    assert (r.updated, r.inserted, r.unchanged) == (0, 0, 2)


def test_closed_changeset_refuses_writes(prices: rowver.Database) -> None:
    with prices.changeset() as cs:
        pass
    with pytest.raises(rowver.RowverError, match="closed"):
        cs.insert("prices", [{"sku": "q", "region": "eu", "price": 1}])


def test_not_versioned_and_not_installed(db: rowver.Database, server_url: str) -> None:
    db.conn.execute("create table plain (id int primary key)")
    with pytest.raises(rowver.NotVersionedError, match="not versioned"):
        db.as_of("plain", "head")
    bare = rowver.Database(server_url)
    if bare.catalog_version() is None:
        with pytest.raises(rowver.NotInstalledError, match="rowver init"):
            bare.head()
    bare.close()


def test_unreachable_server_names_the_url() -> None:
    db = rowver.Database("postgresql://postgres:secret@127.0.0.1:1/nowhere")
    with pytest.raises(rowver.ServerError, match=r"127\.0\.0\.1:1/nowhere") as err:
        db.head()
    assert "secret" not in str(err.value)


def test_sql_surface_errors_are_clear(db: rowver.Database) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid tag name"):
        db.conn.execute("select rowver.tag('head', '0')")


def test_write_layer_only_capture(db: rowver.Database) -> None:
    db.conn.execute("create table fast (id int primary key, x int)")
    db.conn.execute("insert into fast values (1, 1)")
    with pytest.warns(UserWarning, match="Use this mode only where every writer of the table is trusted"):
        db.enable("fast", triggers=False)
    with db.changeset(message="tracked") as cs:
        r = cs.upsert("fast", [{"id": 1, "x": 2}, {"id": 2, "x": 2}])
    assert (r.inserted, r.updated) == (1, 1)
    assert rows(db.as_of("fast", 1), "id", "x") == [(1, 1)]
    assert rows(db.as_of("fast", r.version), "id", "x") == [(1, 2), (2, 2)]
    # writers outside the write layer are not tracked: an update changes the row in place
    db.conn.execute("update fast set x = 3 where id = 2")
    assert db.conn.execute("select rv_version from fast where id = 2").fetchone()[0] == r.version
    assert len(db.log()) == 2
    # and an insert that does not name its version is refused rather than silently untracked
    with pytest.raises(psycopg.errors.NotNullViolation, match="rv_version"):
        db.conn.execute("insert into fast (id, x) values (3, 3)")
    assert db.status().triggers.tolist() == [False]


def test_change_feed_in_version_order_and_clamped_to_head(prices: rowver.Database, db_url: str) -> None:
    start = prices.head()
    with prices.changeset() as cs:
        cs.upsert("prices", [{"sku": "a", "region": "eu", "price": Decimal("1.11")},
                             {"sku": "n", "region": "eu", "price": Decimal("4")}])
    with prices.changeset() as cs:
        cs.delete("prices", [{"sku": "b", "region": "eu"}])
    feed = prices.changes("prices", since=start)
    assert [(r.op, r.sku) for r in feed.itertuples()] == [("update", "a"), ("insert", "n"), ("delete", "b")]
    assert feed.rv_version.is_monotonic_increasing
    # a lower version still in flight holds the feed's upper bound back
    slow = psycopg.connect(db_url)
    slow.execute("insert into prices values ('s', 'eu', 1)")
    with prices.changeset() as cs:
        cs.upsert("prices", [{"sku": "f", "region": "eu", "price": Decimal("2")}])
    seen = prices.changes("prices", since=start, until="head")
    assert "f" not in set(seen.sku)  # committed, but above head while 's' is in flight
    slow.commit()
    slow.close()
    later = prices.changes("prices", since=int(seen.rv_version.max()))
    assert sorted(later.sku) == ["f", "s"]
    assert len(prices.changes("prices", since="head")) == 0


def test_as_of_in_chunks_equals_the_whole(db: rowver.Database) -> None:
    db.conn.execute("create table big (id int primary key, n int)")
    db.conn.execute("insert into big select g, g % 7 from generate_series(1, 2500) g")
    db.enable("big")
    db.conn.execute("update big set n = -1 where id % 3 = 0")
    whole = db.as_of("big", 1)
    chunks = list(db.as_of("big", 1, chunksize=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    with pytest.raises(rowver.InvalidInputError, match="chunksize"):
        next(iter(db.as_of("big", 1, chunksize=0)))
    # a diff streams the same way, in the same types
    db.conn.execute("delete from big where id > 2400")
    whole = db.diff("big", 1, "head")
    assert whole.attrs["versions"] == (1, db.head())  # what was read, for a caller's header
    chunks = list(db.diff("big", 1, "head", chunksize=400))
    assert [len(c) for c in chunks] == [400, 400, 100]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    assert whole.op.value_counts().to_dict() == {"changed": 800, "removed": 100}


ODD = sql.Identifier('Odd "Ünï" t')


def test_diff_values_keep_the_tables_types(db: rowver.Database) -> None:
    """Old and new values come back as the columns' own types (ints stay exact ints, numerics
    Decimals, timestamps timestamps), under a quoted name with a composite key."""
    db.conn.execute(sql.SQL(
        'create table {} ("Region Ü" text, n int, big int8, price numeric(12, 4), at timestamptz, day date,'
        ' ok boolean, raw bytea, doc jsonb, j json, tags int[], primary key ("Region Ü", n))').format(ODD))
    table = db.conn.execute("select %s::regclass::text", ('"Odd ""Ünï"" t"',)).fetchone()[0]
    at = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    db.conn.execute(sql.SQL("insert into {} values ('eu', 1, 9007199254740993, 1.2345, %s, '2026-03-01', true,"
                            " '\\x0001', '{{\"a\": 1.50}}', '{{\"b\": 1}}', '{{1,2}}'),"
                            " ('eu', 2, 2, 2, null, null, null, null, null, null, null)").format(ODD), (at,))
    v1 = db.enable(table)
    db.conn.execute(sql.SQL("update {} set big = big + 2, price = 1.2346, at = at + interval '1 day',"
                            " j = '{{\"b\": 2}}', tags = '{{3}}' where n = 1").format(ODD))
    db.conn.execute(sql.SQL("delete from {} where n = 2").format(ODD))
    db.conn.execute(sql.SQL("insert into {} (\"Region Ü\", n, big) values ('us', 3, 3)").format(ODD))
    db.publish_head()
    d = db.diff(table, v1, "head")
    assert list(d.columns[:5]) == ["op", "key", "changed", 'old_Region Ü', "old_n"]
    assert list(d.op) == ["changed", "removed", "added"]
    assert list(d.key) == [{"Region Ü": "eu", "n": 1}, {"Region Ü": "eu", "n": 2}, {"Region Ü": "us", "n": 3}]
    assert d.changed[0] == ["at", "big", "j", "price", "tags"]
    changed = d.iloc[0]
    assert (changed.old_big, changed.new_big) == (9007199254740993, 9007199254740995)  # exact, not floats
    assert str(d.old_big.dtype) == "Int64" and pd.isna(d.old_big[2])  # an added row has no old values
    assert (changed.old_price, changed.new_price) == (Decimal("1.2345"), Decimal("1.2346"))
    assert changed.old_at == pd.Timestamp(at) and changed.new_at == pd.Timestamp(at + dt.timedelta(days=1))
    assert str(d.new_at.dtype).startswith("datetime64") and pd.isna(d.new_at[2])
    assert (changed.old_day, changed.old_ok, bytes(changed.old_raw)) == (dt.date(2026, 3, 1), True, b"\x00\x01")
    assert (changed.old_doc, changed.old_j, changed.new_j) == ({"a": Decimal("1.50")}, {"b": 1}, {"b": 2})
    assert (changed.old_tags, changed.new_tags) == ([1, 2], [3])
    assert d.iloc[1].old_big == 2 and pd.isna(d.iloc[1].new_big)  # a removed row has no new values
    # as_of reads the same types: a diff's new side equals the table as of head
    new = d[d.op != "removed"].filter(like="new_").rename(columns=lambda c: c.removeprefix("new_"))
    head = db.as_of(table, "head").drop(columns="rv_version")
    assert new.to_dict("records") == head.to_dict("records")


def test_diff_across_schema_changes(db: rowver.Database) -> None:
    """A column added after ref_a reads NULL on the old side; a dropped column is gone."""
    c = db.conn
    c.execute("create table acct (id int primary key, owner text, fax text)")
    c.execute("insert into acct values (1, 'ann', '555'), (2, 'bob', null)")
    v1 = db.enable("acct")
    with c.transaction():
        c.execute("alter table acct add column tier int")
        db.refresh("acct")
    c.execute("update acct set tier = 3 where id = 2")
    db.alter("acct", "drop column fax")
    db.publish_head()
    d = db.diff("acct", v1, "head")
    assert list(d.columns) == ["op", "key", "changed", "old_id", "old_owner", "old_tier",
                               "new_id", "new_owner", "new_tier"]
    assert list(d.op) == ["changed"] and d.changed[0] == ["tier"]
    assert pd.isna(d.old_tier[0]) and d.new_tier[0] == 3 and str(d.old_tier.dtype) == "Int64"
    # nothing changed: no rows, the same columns
    same = db.diff("acct", "head", "head")
    assert same.empty and list(same.columns) == list(d.columns)


def test_diff_skips_changes_to_ignored_columns_alone(db: rowver.Database) -> None:
    db.conn.execute("create table seen (id int primary key, n int, at timestamptz)")
    db.conn.execute("insert into seen values (1, 1, null), (2, 2, null)")
    v1 = db.enable("seen", ignore=["at"])
    db.conn.execute("update seen set at = now()")  # in place: no version
    db.conn.execute("update seen set n = 3 where id = 2")
    db.publish_head()
    d = db.diff("seen", v1, "head")
    assert list(d.key) == [{"id": 2}] and (d.old_n[0], d.new_n[0]) == (2, 3)


def test_a_dry_run_changeset_counts_and_writes_nothing(db: rowver.Database) -> None:
    """db.changeset(dry_run=True): each call runs and returns its exact counts, and the whole rolls back."""
    db.conn.execute("create table shelf (id int primary key, qty int)")
    db.conn.execute("insert into shelf values (1, 1), (2, 2)")
    db.enable("shelf")
    log_before, mark_before = len(db.log()), db.conn.execute("select head from rowver.head_mark").fetchone()
    with db.changeset(message="try", dry_run=True) as cs:
        r = cs.sync("shelf", [{"id": 1, "qty": 1}, {"id": 3, "qty": 3}])
    assert (r.inserted, r.updated, r.deleted, r.unchanged) == (1, 0, 1, 1)
    assert db.as_of("shelf")[["id", "qty"]].to_dict("records") == [{"id": 1, "qty": 1}, {"id": 2, "qty": 2}]
    assert len(db.log()) == log_before
    assert db.conn.execute("select head from rowver.head_mark").fetchone() == mark_before
    assert db.conn.execute("select count(*) from shelf__history").fetchone() == (0,)
