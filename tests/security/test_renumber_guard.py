"""A renumbered writer cannot keep its rows under the version it gave up (DESIGN §3, §6).

A transaction that meets a newer version takes a higher one, and its rows get that one at
commit. An application role with DML alone tries to skip that: it clears the setting that
used to list what it gave up, and points the setting that names its allocation at the
allocation it gave up, or at nothing. Its rows would then sit below the state they
superseded, and the past would read two states of one key at once. The past reads as it
happened, and check is clean."""

from __future__ import annotations

import psycopg
import pytest
from logins import Logins, violations


def _accounts(logins: Logins) -> tuple[str, str]:
    """A versioned table of two rows, its owner's, and an application role with DML on it."""
    owner, app = logins.owner("owner"), logins.role("app")
    own = logins.login(owner)
    table = f"{owner}.acct"
    own.execute(f"create table {table} (id integer primary key, n integer not null)")
    own.execute(f"insert into {table} values (1, 0), (2, 0)")
    own.execute(f"grant usage on schema {owner} to {app}; grant select, insert, update, delete on {table} to {app}")
    own.execute(f"select rowver.enable('{table}')")
    return table, app


def test_a_renumbered_writer_cannot_keep_its_abandoned_version(logins: Logins) -> None:
    table, app = _accounts(logins)

    late = psycopg.connect(logins.url, user=app)  # a transaction of its own, left open
    logins.conns.append(late)
    late.execute(f"update {table} set n = 1 where id = 2")  # its version comes first ...
    first = late.execute("select rowver.current_version()").fetchone()[0]
    other = logins.login(app)
    other.execute(f"update {table} set n = 10 where id = 1")  # ... another commits a later one
    late.execute(f"update {table} set n = 20 where id = 1")  # meets it: renumbered
    final = late.execute("select rowver.current_version()").fetchone()[0]
    assert final > first
    # hide the renumbering: no list of given-up versions, and the allocation it gave up
    late.execute("select set_config('rowver.abandoned', '', true)")
    gave_up = logins.su.execute("select ctid::text from rowver.allocation where version = %s", (first,)).fetchone()
    late.execute("select set_config('rowver.allocation', %s, true)", gave_up or ("",))
    late.commit()

    head = logins.su.execute("select rowver.publish_head()").fetchone()[0]
    states = [logins.su.execute(f"select id, n from {table}__as_of(%s) order by id", (v,)).fetchall()
              for v in range(first - 1, head + 1)]
    # every version reads one state per key, and key 1 goes 0 -> 10 -> 20 in commit order
    assert all(len({k for k, _ in s}) == len(s) == 2 for s in states), states
    ones = [dict(s)[1] for s in states]
    assert ones == sorted(ones, key=[0, 10, 20].index), ones
    assert logins.su.execute(f"select n from {table}__as_of(%s) where id = 1", (final - 1,)).fetchone() == (10,)
    assert logins.su.execute(f"select rv_version from {table} where id = 1").fetchone() == (final,)
    assert violations(logins.su) == []


def test_a_renumbered_writer_cannot_hide_the_keys_it_wrote(logins: Logins) -> None:
    """The keys each statement wrote are what the restamp at commit finds rows by. They are
    kept where only the table's owner writes and reads (rowver.tracked): the writer cannot
    delete, add or read them, and the setting that once held them changes nothing."""
    table, app = _accounts(logins)
    oid = logins.su.execute("select %s::regclass::oid", (table,)).fetchone()[0]

    late = psycopg.connect(logins.url, user=app)
    logins.conns.append(late)
    late.execute(f"insert into {table} values (3, 3)")
    first = late.execute("select rowver.current_version()").fetchone()[0]
    logins.login(app).execute(f"update {table} set n = 10 where id = 1")
    late.execute(f"update {table} set n = 20 where id = 1")  # renumbered
    late.execute(f"select set_config('rowver.w{oid}', '', true)")  # where keys were once kept
    late.execute("savepoint s")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        late.execute("delete from rowver.tracked")
    late.execute("rollback to s")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # a key list of its own
        late.execute("insert into rowver.tracked values (pg_current_xact_id(), %s, '*')", (oid,))
    late.execute("rollback to s")
    assert late.execute("select count(*) from rowver.tracked").fetchone() == (0,)  # not its to read
    late.commit()

    head = logins.su.execute("select rowver.publish_head()").fetchone()[0]
    states = [logins.su.execute(f"select id, n from {table}__as_of(%s) order by id", (v,)).fetchall()
              for v in range(first, head + 1)]
    assert states[0] == [(1, 0), (2, 0)] and states[-1] == [(1, 20), (2, 0), (3, 3)], states
    assert states == [s for s in states if len({k for k, _ in s}) == len(s)], states  # one state per key
    assert logins.su.execute(f"select rv_version from {table} where id = 3").fetchone() == (head,)
    assert violations(logins.su) == []
    # what finished transactions tracked goes when head is published
    assert logins.su.execute("select count(*) from rowver.tracked where rel = %s", (oid,)).fetchone() == (0,)
