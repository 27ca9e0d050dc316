"""The one retry policy (rowver/_retry.py): a changeset that meets a real deadlock or
serialization failure with concurrent sessions is rolled back, begun again and replayed, and
commits; with retries=0 the same collision is the caller's ConflictError, keeping its SQLSTATE.
What is retried is said by the write, a value (WriteOp), never by a function's name."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

import rowver
from rowver import _retry
from rowver._write import WriteOp, WriteResult


@pytest.fixture
def two_rows(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    conn.execute("create table t (id int primary key, v text not null)")
    conn.execute("insert into t values (1, 'init'), (2, 'init')")
    conn.execute("select rowver.enable('t')")
    yield conn


def _crossing(db_url: str, retries: int) -> dict[int, str]:
    """Two changesets, each updating one row and then the other's: a deadlock, every time (both
    hold a row the other waits for before either can go on). What each ended with, by the row
    it took first: "ok" or the SQLSTATE of its ConflictError."""
    both_hold = threading.Barrier(2, timeout=30)
    ended: dict[int, str] = {}

    def writer(first: int, second: int) -> None:
        with rowver.connect(db_url) as db:
            try:
                with db.changeset(message=f"w{first}", retries=retries) as cs:
                    cs.upsert("t", [{"id": first, "v": f"w{first}"}])
                    both_hold.wait()  # (in the caller's code: a replay does not wait here again)
                    cs.upsert("t", [{"id": second, "v": f"w{first}"}])
                ended[first] = "ok"
            except rowver.ConflictError as exc:
                ended[first] = str(exc.sqlstate)

    threads = [threading.Thread(target=writer, args=(a, b)) for a, b in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return ended


def test_a_deadlock_is_the_callers_error_without_retries(two_rows: psycopg.Connection, db_url: str) -> None:
    ended = _crossing(db_url, retries=0)
    assert sorted(ended.values()) == ["40P01", "ok"]  # PostgreSQL broke it: one went on, one failed
    winner = next(k for k, said in ended.items() if said == "ok")
    assert two_rows.execute("select v from t order by id").fetchall() == [(f"w{winner}",)] * 2


def test_a_deadlock_is_replayed_and_both_changesets_commit(two_rows: psycopg.Connection, db_url: str) -> None:
    ended = _crossing(db_url, retries=5)
    assert ended == {1: "ok", 2: "ok"}
    # one changeset each, each wrote both rows; the one replayed wrote last
    log = two_rows.execute("select c.message from rowver.changeset c where c.message like 'w%' order by c.version"
                           ).fetchall()
    assert sorted(log) == [("w1",), ("w2",)]
    last = log[-1][0]
    assert two_rows.execute("select v from t order by id").fetchall() == [(last,)] * 2
    history = two_rows.execute("select id, v from t__versions where v <> 'init' order by rv_version, id").fetchall()
    assert history == [(1, log[0][0]), (2, log[0][0]), (1, last), (2, last)]


def test_a_serialization_failure_is_replayed_on_a_fresh_snapshot(two_rows: psycopg.Connection, db_url: str) -> None:
    """Under REPEATABLE READ a row changed after the changeset's snapshot fails its update
    (40001, tests/test_stress.py shows it with retries=0); replayed, the calls so far run again in a
    new transaction, which sees that change, and the changeset commits."""
    two_rows.execute("create table side (id int primary key)")
    two_rows.execute("select rowver.enable('side')")
    with rowver.connect(db_url) as db:
        db.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with db.changeset(message="older", retries=3) as cs:
            cs.upsert("side", [{"id": 1}])  # this changeset's snapshot is taken
            with psycopg.connect(db_url) as newer:
                newer.execute("update t set v = 'newer' where id = 1")
            result = cs.upsert("t", [{"id": 1, "v": "older"}])
        assert result.updated == 1 and cs.version == db.head()
    assert two_rows.execute("select v from t where id = 1").fetchone() == ("older",)
    assert two_rows.execute("select count(*) from side").fetchone() == (1,)  # the replayed first call, once
    assert two_rows.execute("select v from t__versions where id = 1 order by rv_version").fetchall() == [
        ("init",), ("newer",), ("older",)]


# -- no server: what is retried, how often ------------------------------------------------------


class _Failed(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _op(kind: str) -> WriteOp:
    return WriteOp(kind, "t", lambda: WriteResult())


def test_what_a_write_replays_is_said_by_the_write() -> None:
    for kind in ("insert", "upsert", "delete", "sync", "publish", "revert", "truncate"):
        assert _op(kind).retryable(_Failed("40001")) and _op(kind).retryable(_Failed("40P01"))
        assert _op(kind).retryable(rowver.ConflictError("x", sqlstate="40P01"))
        assert not _op(kind).retryable(_Failed("23503")) and not _op(kind).retryable(ValueError())
    assert [k for k in ("insert", "upsert", "delete", "sync", "revert") if _op(k).retryable(_Failed("23505"))] == [
        "upsert", "sync"]


def test_the_policy_tries_retries_plus_one_times_then_raises_the_last_error() -> None:
    policy = _retry.Policy(retries=3, base=0.001, cap=0.002)
    tries: list[int] = []
    waits: list[int] = []

    def failing(n: int) -> None:
        tries.append(n)
        raise _Failed("40001")

    with pytest.raises(_Failed):
        policy.run(failing, _retry.transient, before_wait=lambda: waits.append(len(tries)))
    assert tries == [0, 1, 2, 3] and waits == [1, 2, 3]
    tries.clear()
    with pytest.raises(_Failed):  # an error no replay cures: one try
        policy.run(failing, lambda exc: False)
    assert tries == [0]
    assert policy.run(lambda n: n if n == 2 else failing(n), _retry.transient) == 2
    assert all(0 <= _retry.Policy(base=0.02, cap=1.0).delay(k) <= min(0.02 * 2 ** (k - 1), 1.0) for k in range(1, 12))
