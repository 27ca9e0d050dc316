"""Head and renumbering: head never passes a version still in flight (live or prepared), a
writer that would supersede a newer version takes a version above it instead of failing (and
its earlier rows follow it), and as-of reads of any version at or below head never change."""

from __future__ import annotations

import random
import threading
import time
import uuid

import psycopg
import pytest

import rowver


@pytest.fixture
def items(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("create table items (id int primary key, n int not null)")
    conn.execute("create table other (id int primary key)")
    conn.execute("insert into items select g, 0 from generate_series(1, 20) g")
    conn.execute("select rowver.enable('items'), rowver.enable('other')")
    return conn


def head(conn: psycopg.Connection) -> int:
    return conn.execute("select rowver.head()").fetchone()[0]


def open_writer(db_url: str, statement: str) -> tuple[psycopg.Connection, int]:
    """A connection inside a transaction that has written, and the version it holds."""
    c = psycopg.connect(db_url)
    c.execute(statement)
    return c, c.execute("select rowver.current_version()").fetchone()[0]


def test_head_waits_for_an_older_writer(items: psycopg.Connection, db_url: str) -> None:
    slow, v_slow = open_writer(db_url, "update items set n = 1 where id = 1")
    fast, v_fast = open_writer(db_url, "update items set n = 1 where id = 2")
    fast.commit()
    assert v_fast > v_slow
    assert head(items) == v_slow - 1
    with pytest.raises(psycopg.DatabaseError, match="above head") as refused:
        items.execute("select rowver.resolve(%s)", (str(v_fast),))
    assert refused.value.sqlstate == "RV004"  # rowver's own code (rowver/errors.py)
    slow.commit()
    assert head(items) == v_fast
    slow.close(), fast.close()


def test_head_is_exact_long_after_it_was_last_published(items: psycopg.Connection, db_url: str) -> None:
    # transactions that take a version and write nothing never publish head: thousands of
    # versions later, a writer in flight
    # holds head back exactly to below its own version (not to an older version that shares
    # its slot), and the oldest of several is the one that counts
    published = items.execute("select rowver.publish_head()").fetchone()[0]
    items.execute("do $$ begin for i in 1..5000 loop perform rowver.xact_version(); commit; end loop; end $$")
    assert items.execute("select head from rowver.head_mark").fetchone()[0] == published
    rolled = psycopg.connect(db_url)  # a rolled-back writer holds nothing
    rolled.execute("select rowver.xact_version()")
    rolled.rollback()
    older, v_older = open_writer(db_url, "update items set n = 1 where id = 1")
    items.execute("do $$ begin for i in 1..100 loop perform rowver.xact_version(); commit; end loop; end $$")
    newer, v_newer = open_writer(db_url, "update items set n = 1 where id = 2")
    assert v_older > published + 5000 and v_newer > v_older + 100
    assert head(items) == v_older - 1
    assert [r[0] for r in items.execute("select version from rowver.in_flight()")] == [v_older, v_newer]
    older.commit()
    assert head(items) == v_newer - 1
    newer.commit()
    assert head(items) == v_newer
    rolled.close(), older.close(), newer.close()


def test_plain_sql_writers_publish_head_as_they_commit(items: psycopg.Connection, db_url: str) -> None:
    # writers that never call publish_head (an application's own SQL) still move the published
    # head, and so timestamps, along; and finished transactions leave no allocation rows or
    # tracked keys behind (they would pile up with every transaction)
    mark = items.execute("select head from rowver.head_mark").fetchone()[0]
    with psycopg.connect(db_url, autocommit=True) as writer:
        for i in range(300):
            writer.execute("update items set n = n + 1 where id = %s", (i % 20 + 1,))
    now = head(items)
    published = items.execute("select head from rowver.head_mark").fetchone()[0]
    assert now - 64 <= published <= now and published > mark
    assert items.execute("select rowver.resolve(clock_timestamp()::text)").fetchone()[0] == published
    assert items.execute("select count(*) from rowver.allocation where version <= %s", (published,)).fetchone()[0] == 0
    assert items.execute("select count(*) from rowver.tracked").fetchone()[0] <= 2 * 64


def test_the_published_head_catches_up_after_a_long_writer(items: psycopg.Connection, db_url: str) -> None:
    # a writer that stays open holds head back while hundreds of others commit; once it ends,
    # publishing at commit catches up with head (256 versions at a time) and clears the rest
    long, v_long = open_writer(db_url, "update items set n = 9 where id = 9")
    with psycopg.connect(db_url, autocommit=True) as writer:
        for i in range(700):
            writer.execute("update items set n = n + 1 where id = %s", (i % 8 + 1,))
        assert items.execute("select head from rowver.head_mark").fetchone()[0] == v_long - 1
        long.commit()
        long.close()
        for i in range(400):
            writer.execute("update items set n = n + 1 where id = %s", (i % 8 + 1,))
    now = head(items)
    published = items.execute("select head from rowver.head_mark").fetchone()[0]
    assert now - 64 <= published <= now and now > v_long + 1000
    assert items.execute("select count(*) from rowver.allocation where version <= %s", (published,)).fetchone()[0] == 0


def test_a_publish_at_commit_that_fails_never_fails_the_commit(items: psycopg.Connection, db_url: str) -> None:
    # publishing is housekeeping: if it fails (here head_log refuses every row), the writer's
    # commits still go through, and it says so in a warning
    items.execute("alter table rowver.head_log add constraint refuse_all check (head < 0) not valid")
    warnings: list[str] = []
    with psycopg.connect(db_url, autocommit=True) as writer:
        writer.add_notice_handler(lambda d: warnings.append(d.message_primary or ""))
        for _ in range(130):
            writer.execute("update items set n = n + 1 where id = 1")
    assert items.execute("select n from items where id = 1").fetchone()[0] == 130
    assert any(w.startswith("rowver: publishing head at commit failed") for w in warnings)
    items.execute("alter table rowver.head_log drop constraint refuse_all")


def test_a_prepared_transaction_that_published_holds_publish_head_a_second_at_most(
        items: psycopg.Connection, db_url: str, needs_prepared: None) -> None:
    # a commit that publishes holds head_mark until it ends, which for a prepared
    # transaction is at COMMIT PREPARED: publish_head and tag do not wait for it (a second at most),
    # and meanwhile the published head is the one committed before
    gid = f"rv-{uuid.uuid4().hex[:8]}"
    mark = items.execute("select rowver.publish_head()").fetchone()[0]
    for _ in range(200):  # a writer whose version publishes as it commits (every 64th)
        c, v = open_writer(db_url, "update items set n = 7 where id = 7")
        if v % 64 == 0 and v - 1 > mark:
            break
        c.rollback()
        c.close()
    assert v % 64 == 0
    c.execute(f"prepare transaction '{gid}'")
    c.close()
    try:
        t = time.monotonic()
        assert items.execute("select rowver.publish_head()").fetchone()[0] == mark < v - 1
        assert items.execute("select rowver.tag('during-prepared')").fetchone()[0] == v - 1  # (live head)
        assert time.monotonic() - t < 5
    finally:
        items.execute(f"commit prepared '{gid}'")
    assert items.execute("select rowver.publish_head()").fetchone()[0] == v


def test_rolled_back_versions_do_not_hold_head(items: psycopg.Connection, db_url: str) -> None:
    c, v = open_writer(db_url, "update items set n = 1 where id = 1")
    c.rollback()
    c.close()
    assert head(items) == v


def test_prepared_transaction_holds_head(items: psycopg.Connection, db_url: str, needs_prepared: None) -> None:
    gid = f"rv-{uuid.uuid4().hex[:8]}"
    c, v = open_writer(db_url, "update items set n = 2 where id = 3")
    c.execute(f"prepare transaction '{gid}'")
    c.close()
    try:
        later, v_later = open_writer(db_url, "update items set n = 2 where id = 4")
        later.commit()
        later.close()
        assert head(items) == v - 1
        assert items.execute("select rowver.publish_head()").fetchone()[0] == v - 1
    finally:
        items.execute(f"commit prepared '{gid}'")
    assert head(items) == v_later
    assert items.execute("select n from items__as_of(%s) where id = 3", (v,)).fetchone()[0] == 2


def test_own_version_is_not_past_head(items: psycopg.Connection, db_url: str) -> None:
    c, v = open_writer(db_url, "update items set n = 5 where id = 5")
    assert c.execute("select rowver.head()").fetchone()[0] == v - 1
    c.rollback()
    c.close()


def test_a_cancelled_writer_holds_head_back_no_longer(items: psycopg.Connection, db_url: str) -> None:
    """A writer whose statement is cancelled (a timeout) holds nothing from then on, not even
    before its client rolls back: slot locks end with the transaction, whatever ends it."""
    writer, v = open_writer(db_url, "update items set n = 5 where id = 5")
    assert head(items) < v
    writer.execute("set local statement_timeout = '200ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        writer.execute("select pg_sleep(2)")
    assert head(items) >= v  # the transaction is over (aborted), its block not yet closed
    writer.rollback()
    writer.execute("update items set n = 5 where id = 5")
    writer.commit()
    assert head(items) > v
    writer.close()


def test_a_writer_that_meets_a_newer_version_renumbers(items: psycopg.Connection, db_url: str) -> None:
    """The TPC-B race: a writer allocates (its own row first), a later one commits a hot row,
    then the first updates that row. It does not fail: it commits above the newer version, and
    the row it wrote first carries its final version too."""
    older, v_old = open_writer(db_url, "update items set n = 1 where id = 1")
    newer, v_new = open_writer(db_url, "update items set n = 7 where id = 7")
    newer.commit()
    older.execute("update items set n = 8 where id = 7")
    v_final = older.execute("select rowver.current_version()").fetchone()[0]
    assert v_final > v_new > v_old
    older.commit()
    assert items.execute("select id, n, rv_version from items where id in (1, 7) order by id").fetchall() == \
        [(1, 1, v_final), (7, 8, v_final)]
    items.execute("select rowver.publish_head()")
    assert items.execute("select n from items__as_of(%s) where id = 7", (v_new,)).fetchone()[0] == 7
    assert items.execute("select n from items__as_of(%s) where id = 1", (v_new,)).fetchone()[0] == 0
    assert items.execute("select version from rowver.changeset where version in (%s, %s, %s) order by 1",
                         (v_old, v_new, v_final)).fetchall() == [(v_new,), (v_final,)]
    older.close(), newer.close()


def test_a_reinsert_after_a_newer_delete_renumbers(items: psycopg.Connection, db_url: str) -> None:
    older, _ = open_writer(db_url, "insert into other values (3)")
    newer, v_delete = open_writer(db_url, "delete from items where id = 9")
    newer.commit()
    older.execute("insert into items values (9, 99)")
    v_final = older.execute("select rowver.current_version()").fetchone()[0]
    older.commit()
    older.close(), newer.close()
    assert v_final > v_delete
    assert items.execute("select n, rv_version from items where id = 9").fetchone() == (99, v_final)
    assert items.execute("select rv_version from other where id = 3").fetchone() == (v_final,)


def test_the_write_layer_renumbers_without_replaying(items: psycopg.Connection, db_url: str) -> None:
    db = rowver.connect(db_url)
    with db.changeset(message="renumbered", retries=0) as cs:
        cs.upsert("other", [{"id": 10}])  # allocates this changeset's version
        first = cs.version
        newer, v_new = open_writer(db_url, "update items set n = 11 where id = 11")
        newer.commit()
        newer.close()
        result = cs.upsert("items", [{"id": 11, "n": 12}])
    assert result.updated == 1 and result.version > v_new > first
    assert items.execute("select n, rv_version from items where id = 11").fetchone() == (12, result.version)
    assert items.execute("select rv_version from other where id = 10").fetchone() == (result.version,)
    db.close()


def test_as_of_reads_are_repeatable_under_concurrent_writers(items: psycopg.Connection, db_url: str) -> None:
    stop = time.monotonic() + 3.0
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        with psycopg.connect(db_url) as c:
            while time.monotonic() < stop:
                try:
                    for _ in range(rnd.randint(1, 3)):
                        key = rnd.randint(1, 30)
                        op = rnd.random()
                        if op < 0.6:
                            c.execute("insert into items values (%s, %s) on conflict (id) do update set n = excluded.n",
                                      (key, rnd.randint(0, 9)))
                        else:
                            c.execute("delete from items where id = %s", (key,))
                        time.sleep(rnd.random() * 0.01)
                    if rnd.random() < 0.2:
                        c.rollback()
                    else:
                        c.commit()
                except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                    c.rollback()
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    seen: dict[int, list[tuple]] = {}
    with psycopg.connect(db_url, autocommit=True) as reader:
        while time.monotonic() < stop:
            v = reader.execute("select rowver.head()").fetchone()[0]
            seen[v] = reader.execute("select id, n from items__as_of(%s) order by id", (v,)).fetchall()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) > 3
    for v, rows in seen.items():
        assert items.execute("select id, n from items__as_of(%s) order by id", (v,)).fetchall() == rows
