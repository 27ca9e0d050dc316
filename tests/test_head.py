"""Head and conflicts: head never passes a version still in flight (live or prepared),
writers that would supersede a newer version get SQLSTATE 40001, and as-of reads of any
version at or below head never change afterwards."""

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
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="above head"):
        items.execute("select rowver.resolve(%s)", (str(v_fast),))
    slow.commit()
    assert head(items) == v_fast
    slow.close(), fast.close()


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


def test_a_writer_cancelled_while_allocating_releases_the_mutex(items: psycopg.Connection, db_url: str) -> None:
    """A statement timeout inside allocation (here: waiting for its version's lock, which
    another session holds) must not leave the session-level mutex held: head() and the
    same session's next write would wait on it."""
    last, called = items.execute("select last_value, is_called from rowver.version_seq").fetchone()
    v = last + 1 if called else last
    key1, key2 = items.execute("select rowver.lock_key1(%s), rowver.lock_key2(%s)", (v, v)).fetchone()
    blocker = psycopg.connect(db_url, autocommit=True)
    blocker.execute("select pg_advisory_lock(%s, %s)", (key1, key2))
    writer = psycopg.connect(db_url, autocommit=True)
    writer.execute("set statement_timeout = '300ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        writer.execute("update items set n = 5 where id = 5")
    # released here, not by close(): a closed session's backend lets go of its locks a moment later
    blocker.execute("select pg_advisory_unlock(%s, %s)", (key1, key2))
    blocker.close()
    items.execute("set statement_timeout = '5s'")
    assert head(items) >= v  # would time out waiting for the mutex
    writer.execute("update items set n = 5 where id = 5")  # and so would this
    assert head(items) > v
    writer.close()


def test_update_of_a_row_a_newer_version_wrote_is_a_serialization_failure(items: psycopg.Connection, db_url: str) -> None:
    older, v_old = open_writer(db_url, "insert into other values (1)")
    newer, v_new = open_writer(db_url, "update items set n = 7 where id = 7")
    newer.commit()
    with pytest.raises(psycopg.errors.SerializationFailure, match="newer version"):
        older.execute("update items set n = 8 where id = 7")
    older.rollback()
    assert items.execute("select n from items where id = 7").fetchone()[0] == 7
    older.close(), newer.close()


def test_delete_and_reinsert_race_is_a_serialization_failure(items: psycopg.Connection, db_url: str) -> None:
    older, _ = open_writer(db_url, "insert into other values (3)")
    newer, _ = open_writer(db_url, "delete from items where id = 9")
    newer.commit()
    with pytest.raises(psycopg.errors.SerializationFailure):
        older.execute("insert into items values (9, 99)")
    older.rollback()
    older.close(), newer.close()
    assert items.execute("select count(*) from items where id = 9").fetchone()[0] == 0


def test_write_layer_retries_serialization_failures(items: psycopg.Connection, db_url: str) -> None:
    db = rowver.connect(db_url)
    with db.changeset(message="retried") as cs:
        cs.upsert("other", [{"id": 10}])  # allocates this changeset's version
        first = cs.version
        newer, v_new = open_writer(db_url, "update items set n = 11 where id = 11")
        newer.commit()
        newer.close()
        result = cs.upsert("items", [{"id": 11, "n": 12}])  # 40001 inside, replayed
    assert result.updated == 1 and result.version > v_new > first
    assert items.execute("select n, rv_version from items where id = 11").fetchone() == (12, result.version)
    assert items.execute("select count(*) from other where id = 10").fetchone()[0] == 1
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
