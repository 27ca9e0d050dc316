"""The change stream (rowver changes --follow, db.follow): each committed changeset once, in
version order, never above head; woken by the NOTIFY a commit sends, found by polling when
that is lost; resumable from the last version seen, across a killed consumer (a real
`rowver changes --follow` process, SIGKILLed) and a restarted server (a throwaway one)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgserver import server_major, throwaway
from psycopg import sql
from psycopg.conninfo import make_conninfo

import rowver
from rowver import _follow, _install
from rowver._follow import Committed

ROWVER = str(Path(sys.executable).parent / "rowver")


def make_items(conn: psycopg.Connection) -> None:
    conn.execute("create table items (id int primary key, name text, price numeric(8,2))")
    conn.execute("create table tags (id int primary key, label text)")
    conn.execute("select rowver.enable('items'); select rowver.enable('tags')")


def changesets(conn: psycopg.Connection, after: int = 0) -> list[int]:
    """Every committed changeset's version after ``after`` touching items or tags, oldest first."""
    return [v for (v,) in conn.execute(
        "select distinct ct.version from rowver.changeset_table ct join rowver.versioned r on r.id = ct.table_id"
        " where r.relid in ('items'::regclass, 'tags'::regclass) and ct.version > %s order by 1", (after,))]


class Collector:
    """db.follow in a thread, its changesets in a queue. (The thread ends when the test's
    database goes: its stream stops trying to connect again after ``reconnect`` seconds.)"""

    def __init__(self, stream: Iterator[Committed]):
        self.got: queue.Queue[Committed | BaseException] = queue.Queue()
        self.stream = stream
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for committed in self.stream:
                self.got.put(committed)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            self.got.put(exc)

    def take(self, n: int, timeout: float = 20.0) -> list[Committed]:
        out: list[Committed] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.got.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def nothing_for(self, seconds: float) -> bool:
        try:
            item = self.got.get(timeout=seconds)
        except queue.Empty:
            return True
        self.got.put(item)
        return False


def test_each_changeset_once_in_order_with_its_rows(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    db = rowver.connect(db_url)
    start = db.head()
    stream = db.follow("items", "tags", since=start, poll=30, reconnect=1)  # (a NOTIFY must wake it: polls are far apart)
    collector = Collector(stream)
    conn.execute("insert into items values (1, 'one', 1.50), (2, 'two', null)")
    with conn.transaction():  # one changeset, two tables
        conn.execute("update items set price = 2.25 where id = 1")
        conn.execute("insert into tags values (1, 'x')")
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():  # rolled back: no changeset
        conn.execute("delete from items where id = 2")
        conn.execute("select 1 / 0")
    conn.execute("delete from items where id = 2")
    got = collector.take(3, timeout=10)
    assert [c.version for c in got] == changesets(conn, start)
    assert [[(ch.table, ch.op, ch.row) for ch in c.changes] for c in got] == [
        [("items", "insert", {"id": 1, "name": "one", "price": Decimal("1.50")}),
         ("items", "insert", {"id": 2, "name": "two", "price": None})],
        [("items", "update", {"id": 1, "name": "one", "price": Decimal("2.25")}),
         ("tags", "insert", {"id": 1, "label": "x"})],
        [("items", "delete", {"id": 2, "name": None, "price": None})],
    ]
    assert collector.nothing_for(0.5)


def test_a_changeset_waits_for_head_and_none_is_skipped(db_url: str, conn: psycopg.Connection) -> None:
    """A later commit is held until the lower writer ends (head), then both come, in version
    order; the lower writer's rollback (which sends no NOTIFY) releases it without a poll."""
    make_items(conn)
    db = rowver.connect(db_url)
    collector = Collector(db.follow("items", poll=30, reconnect=1))
    with psycopg.connect(db_url, autocommit=True) as slow:
        slow.execute("begin")
        slow.execute("insert into items values (10, 'slow', 1)")  # takes the lower version
        conn.execute("insert into items values (11, 'fast', 1)")  # commits first, above it
        assert collector.nothing_for(1.0)  # above head: not yet
        slow.execute("commit")
        got = collector.take(2, timeout=10)
        assert [c.changes[0].row["id"] for c in got] == [10, 11]
        assert got[0].version < got[1].version
        slow.execute("begin")
        slow.execute("insert into items values (12, 'rolled back', 1)")
        conn.execute("insert into items values (13, 'kept', 1)")
        assert collector.nothing_for(0.5)
        slow.execute("rollback")
        t0 = time.monotonic()
        (got13,) = collector.take(1, timeout=10)
        assert got13.changes[0].row["id"] == 13
        assert time.monotonic() - t0 < 5  # well before the 30 s poll


def test_a_lost_notify_is_found_by_polling(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    conn.execute("alter table rowver.changeset disable trigger notify_changeset")  # every NOTIFY lost
    db = rowver.connect(db_url)
    collector = Collector(db.follow("items", poll=0.3, reconnect=1))
    conn.execute("insert into items values (1, 'one', 1)")
    (got,) = collector.take(1, timeout=10)
    assert got.version == changesets(conn)[-1]


def test_a_commit_sends_one_notify_while_a_stream_follows(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    conn.execute("listen rowver_changes")

    def notifies_of_one_commit() -> int:
        with psycopg.connect(db_url, autocommit=True) as writer:
            with writer.transaction():
                writer.execute("insert into items values (1, 'a', 1) on conflict (id) do update set name = 'b'")
                writer.execute("update items set name = name || '!'")
                writer.execute("insert into tags values (1, 'x') on conflict do nothing")
            writer.execute("begin; insert into items values (2, 'gone', 1); rollback")
        return len(list(conn.notifies(timeout=1.0)))

    # no stream: commits take no cluster-wide NOTIFY lock
    assert notifies_of_one_commit() == 0
    follower = uuid.uuid4()
    conn.execute("select rowver.follower_seen(%s)", (follower,))
    assert notifies_of_one_commit() == 1
    conn.execute("select rowver.follower_gone(%s)", (follower,))
    assert notifies_of_one_commit() == 0
    # a stream not seen for a minute (it was killed) no longer counts
    conn.execute("insert into rowver.follower values (%s, now() - interval '61 s')", (uuid.uuid4(),))
    assert notifies_of_one_commit() == 0
    stream = rowver.connect(db_url).follow("items", poll=30)
    assert notifies_of_one_commit() == 1
    assert conn.execute("select count(*) from rowver.follower where seen_at > now() - interval '1 minute'"
                        ).fetchone() == (1,)
    del stream


def test_bad_input(db_url: str, conn: psycopg.Connection) -> None:
    conn.execute("create table plain (id int primary key)")
    db = rowver.connect(db_url)
    with pytest.raises(rowver.NotVersionedError):
        next(db.follow("plain"))
    with pytest.raises(rowver.InvalidInputError):
        next(db.follow())
    with pytest.raises(rowver.InvalidInputError):
        next(db.follow("plain", poll=0))
    out = subprocess.run([ROWVER, "changes", "items", "--follow", "--url", db_url], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "--format jsonl" in out.stderr
    for extra in (["--until", "3"], ["--limit", "5"]):
        out = subprocess.run([ROWVER, "changes", "items", "--follow", "--format", "jsonl", *extra, "--url", db_url],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "do not apply" in out.stderr
    out = subprocess.run([ROWVER, "changes", "items", "plain", "--since", "0", "--url", db_url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "need --follow" in out.stderr


# -- a consumer killed and restarted ----------------------------------------------------


def read_lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.endswith("\n"):  # (a line cut short by the kill is not a line)
            into.put(line)


def start_consumer(url: str, since: int) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen([ROWVER, "changes", "items", "tags", "--follow", "--since", str(since),
                             "--format", "jsonl", "--poll", "1", "--url", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_lines, args=(proc, lines), daemon=True).start()
    return proc, lines


def test_a_killed_consumer_resumes_without_loss_or_repeat(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    start = int(conn.execute("select rowver.head()").fetchone()[0])
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(db_url, autocommit=True) as w:
            i = 0
            while not stop.is_set():
                i += 1
                with w.transaction():
                    w.execute("insert into items values (%s, %s, %s)", (i, f"n{i}", i))
                    if i % 3 == 0:
                        w.execute("insert into tags values (%s, 'every third')", (i,))
                time.sleep(0.01)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    seen: list[dict[str, Any]] = []
    since = start
    try:
        for _ in range(3):  # run, kill -9 mid-stream, resume from the last line read
            proc, lines = start_consumer(db_url, since)
            deadline = time.monotonic() + 30
            got = 0
            while got < 15 and time.monotonic() < deadline:
                try:
                    seen.append(json.loads(lines.get(timeout=1)))
                    got += 1
                except queue.Empty:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            while not lines.empty():  # lines it wrote before it died
                seen.append(json.loads(lines.get()))
            assert got >= 15
            since = seen[-1]["version"]
    finally:
        stop.set()
        writer.join(timeout=10)
    proc, lines = start_consumer(db_url, since)  # the tail, after the writer stopped
    try:
        expected = changesets(conn, start)
        deadline = time.monotonic() + 30
        while (not seen or seen[-1]["version"] < expected[-1]) and time.monotonic() < deadline:
            try:
                seen.append(json.loads(lines.get(timeout=1)))
            except queue.Empty:
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert [s["version"] for s in seen] == expected
    for s in seen:  # every changeset whole: its items row, and a tags row every third one
        ids = {c["row"]["id"] for c in s["changes"] if c["table"] == "items"}
        assert len(ids) == 1 and all(c["op"] == "insert" for c in s["changes"])
        (i,) = ids
        assert [c["table"] for c in s["changes"]] == ["items"] + (["tags"] if i % 3 == 0 else [])
        assert s["changes"][0]["row"] == {"id": i, "name": f"n{i}", "price": f"{i}.00"}


# -- a server restarted mid-stream ------------------------------------------------------


def test_a_server_restart_mid_stream_loses_and_repeats_nothing(server_url: str) -> None:
    with throwaway(major=server_major(server_url)) as server:
        with server.connect() as su:
            _install.install(su)
            make_items(su)
        db = rowver.connect(server.url())
        start = db.head()
        collector = Collector(db.follow("items", since=start, poll=0.5, reconnect=60))
        got: list[Committed] = []

        def write(ids: range) -> None:
            with server.connect() as w:
                for i in ids:
                    w.execute("insert into items values (%s, 'x', 1)", (i,))

        write(range(1, 21))
        got += collector.take(20)
        server.stop("fast")  # the stream's connections go
        server.start()
        write(range(21, 41))
        got += collector.take(20, timeout=60)
        server.stop("immediate")  # a crash this time
        server.start()
        write(range(41, 61))
        got += collector.take(20, timeout=60)
        assert collector.nothing_for(1.5)
        with server.connect() as check:
            assert [c.version for c in got] == changesets(check, start)
        assert [c.changes[0].row["id"] for c in got] == list(range(1, 61))
        db.close()


def test_a_backlog_comes_in_steps_whole_and_in_order(db_url: str, conn: psycopg.Connection,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn)
    start = int(conn.execute("select rowver.head()").fetchone()[0])
    for i in range(10):
        with conn.transaction():
            conn.execute("insert into items values (%s, 'x', 1)", (i,))
            conn.execute("insert into tags values (%s, 'y')", (i,))
    monkeypatch.setattr(_follow, "STEP", 3)  # 10 changesets: 4 reads
    got = Collector(rowver.connect(db_url).follow("items", "tags", since=start, poll=30, reconnect=1)).take(10)
    assert [c.version for c in got] == changesets(conn, start)
    assert [[(ch.table, ch.row["id"]) for ch in c.changes] for c in got] == [[("items", i), ("tags", i)]
                                                                             for i in range(10)]


def test_jsonl_is_json_one_object_a_line(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    conn.execute("insert into items values (1, 'a\\nb', 1.10), (2, null, null)")

    def run(fmt: str) -> str:
        out = subprocess.run([ROWVER, "changes", "items", "--since", "0", "--format", fmt, "--url", db_url],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    lines = run("jsonl").splitlines()
    assert [json.loads(line) for line in lines] == json.loads(run("json"))
    assert len(lines) == 2 and json.loads(lines[0])["price"] == "1.10"


def test_a_role_without_rowver_privileges_follows_and_wakes_the_stream(db_url: str, conn: psycopg.Connection) -> None:
    """A least-privilege role that may read and write one table: its commits send the NOTIFY,
    and it follows the table (head, the changeset list and the change feed are open to it)."""
    role = f"rv_follow_{uuid.uuid4().hex[:8]}"
    make_items(conn)
    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("grant select, insert, update on items to {}").format(sql.Identifier(role)))
        conn.execute("select rowver.refresh('items')")  # (the grant onto history)
        url = make_conninfo(db_url, user=role)
        collector = Collector(rowver.connect(url).follow("items", poll=30, reconnect=1))
        with psycopg.connect(url, autocommit=True) as app:
            app.execute("insert into items values (1, 'mine', 1)")
            app.execute("update items set name = 'still mine'")
        got = collector.take(2, timeout=10)
        assert [(c.changes[0].op, c.changes[0].row["name"]) for c in got] == [("insert", "mine"),
                                                                               ("update", "still mine")]
    finally:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_reader_that_stops_reading_stops_the_stream_quietly(db_url: str, conn: psycopg.Connection) -> None:
    make_items(conn)
    conn.execute("insert into items values (0, 'x', 1)")
    pipeline = subprocess.Popen(f"{ROWVER} changes items --follow --since 0 --format jsonl --poll 0.2 --url '{db_url}'"
                                " | head -n 1; echo \"status ${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert pipeline.stdout is not None
    first = pipeline.stdout.readline()  # head has it, and has gone
    assert json.loads(first)["changes"][0]["row"]["id"] == 0
    conn.execute("insert into items values (1, 'x', 1)")  # the next line meets the closed pipe
    out, err = pipeline.communicate(timeout=30)
    assert out == "status 0\n" and err == ""
