-- Versions: allocation, the live and published head, refs and tags.
--
-- A transaction gets one version, at its first write to a versioned table. Version v is
-- "in flight" while its transaction holds a row lock on slot v % 4096 (rowver.slot); head
-- is the newest version at or below which nothing is in flight. Row locks on rowver's rows
-- need privileges no other role has, so no one else can hold head or the writers back
-- (advisory locks, used before, carry no privileges at all); and head sees them from any
-- transaction, read-only ones included, through the locker's transaction status.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Functions without a SET clause (on the write path, where a SET costs) qualify every
-- function and operator: they run under their caller's search_path.

-- The role a session acts as: its SET ROLE, else its login. Changesets and tag changes record
-- it beside session_user (inside a SECURITY DEFINER function current_user is the owner).
create or replace function rowver.session_role() returns name
language sql stable
return case when current_setting('role') = 'none' then session_user else current_setting('role')::name end;

drop function if exists rowver.lock_key1(bigint);
drop function if exists rowver.lock_key2(bigint);
drop function if exists rowver.mutex();

create or replace function rowver.slots() returns integer
language sql immutable parallel safe
return 4096;

-- Whether transaction x (a row's xmax) is still running, live or prepared, given the
-- current snapshot's xmax n (as a bigint; callers read it once). pg_xact_status takes a full
-- 64-bit id: x is within 2^31 of n, which gives its epoch. At or above n it counts as
-- running (it may have ended since: head then waits a moment longer for it).
-- x's full 64-bit id, given a full id n within 2^31 of it.
create or replace function rowver.full_xid(x xid, n bigint) returns bigint
language sql immutable
return (n & ~4294967295::bigint) + x::text::bigint
       + case when x::text::bigint - (n & 4294967295) > 2147483648 then -4294967296
              when (n & 4294967295) - x::text::bigint > 2147483648 then 4294967296
              else 0 end;

-- (VOLATILE, as pg_xact_status is: PostgreSQL inlines a SQL function only if its body is no
-- more volatile than it says, and a call not inlined cost 55 us where the inlined check costs 6.)
drop function if exists rowver.running(xid);
create or replace function rowver.running(x xid, n bigint) returns boolean
language sql volatile
return case when x = '0'::xid then false
            when rowver.full_xid(x, n) >= n then true
            when rowver.full_xid(x, n) < 3 then false  -- (bootstrap and frozen ids)
            else pg_xact_status(rowver.full_xid(x, n)::text::xid8) = 'in progress' end;

-- The current snapshot's xmax, for rowver.running.
create or replace function rowver.snapshot_xmax() returns bigint
language sql stable
return pg_snapshot_xmax(pg_current_snapshot())::text::bigint;

-- Where this transaction's allocation row is (set by allocate and renumber; transaction-local).
create or replace function rowver.allocation_tid() returns tid
language sql stable
return nullif(current_setting('rowver.allocation', true), '')::tid;

-- The version this transaction has allocated, or null: the allocation row the setting points
-- at, if it carries this transaction's id. (A setting can only point: a forged one finds no
-- row of ours. A row with our transaction id that this session did not write came with a
-- dump from another cluster; rowver.check reads those as evidence of a restamp.) Read by row
-- address, not through the index, which under SERIALIZABLE would conflict with every other
-- writer's allocation (a row this transaction wrote is no read dependency; an index page is).
create or replace function rowver.allocated() returns bigint
language plpgsql stable
as $$
declare
  at text := pg_catalog.current_setting('rowver.allocation', true);
  v  bigint;
begin
  if at is null or at operator(pg_catalog.=) '' then
    return null;
  end if;
  select a.version into v from rowver.allocation a
   where a.ctid operator(pg_catalog.=) at::pg_catalog.tid
     and a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned();
  return v;
end $$;

drop function if exists rowver.record_allocation(bigint);

-- Allocate a version to this transaction (callers check rowver.allocated() first). Runs
-- as rowver_owner, the sequence's only user: called from xact_version and begin_statement.
-- The slot of the next version is locked before the sequence hands it out, so that head,
-- which reads the sequence and then walks the slots, can never pass a version whose slot is
-- not yet held: every version at or below what head read is held by its own slot, or by
-- the slot its allocator locked first (which is lower). Row locks last until the transaction
-- ends; an extra one only holds head a little lower meanwhile. (No SET clause: its only
-- callers, begin_statement and xact_version, pin the search path already.)
create or replace function rowver.allocate() returns bigint
language plpgsql
as $$
declare
  p     bigint;
  v     bigint;
  spins integer := 0;
  at    tid;
  done  text;
begin
  -- a transaction that has an allocation but lost the settings that point at it (RESET ALL, or
  -- a set_config of its own) keeps it: one version per transaction. Only one that wrote before
  -- can have one, found by a scan of the few allocations of running transactions, and written
  -- by this transaction (still running: a restore's rows can carry its id too, from another
  -- cluster); not under SERIALIZABLE, where reading the allocations other writers insert would
  -- make them conflict (there such a transaction takes a second version, as README says)
  if pg_current_xact_id_if_assigned() is not null and current_setting('transaction_isolation') <> 'serializable' then
    select a.ctid, a.version into at, v from rowver.allocation a
     where a.xid = pg_current_xact_id_if_assigned() and rowver.running(a.xmin, rowver.snapshot_xmax())
     order by a.version desc limit 1;
    if found then
      done := set_config('rowver.allocation', at::text, true);
      done := set_config('rowver.allocated', v::text, true);
      return v;
    end if;
  end if;
  loop
    select case when s.is_called then s.last_value else s.last_value - 1 end into p from rowver.version_seq s;
    perform from rowver.slot s where s.id = (p + 1) % rowver.slots() for update skip locked;
    if found then
      v := nextval('rowver.version_seq');
      exit when v = p + 1;
      -- another allocation came between: ours is v, whose own slot we still need
      perform from rowver.slot s where s.id = v % rowver.slots() for update skip locked;
      exit when found;  -- (else v is burnt, and we go on)
    else
      -- another allocator holds it and is about to take p + 1: look again. Held for longer,
      -- it belongs to a transaction 4096 versions back that is still running: pass over it.
      spins := spins + 1;
      if spins % 64 = 0 then
        if not exists (select from rowver.slot s where s.id = (p + 1) % rowver.slots()) then
          raise exception 'rowver: rowver.slot has no row %', (p + 1) % rowver.slots() using errcode = '55000',
            hint = 'the catalog was restored without its data (a data-only restore without --disable-triggers?); '
                   'run rowver init';
        end if;
        v := nextval('rowver.version_seq');
      end if;
    end if;
  end loop;
  -- (its row, and where it is: rowver.allocated reads it by address; and its version, which
  -- tells rowver_begin when currval no longer is it: see rowver.begin_statement)
  insert into rowver.allocation (version, xid) values (v, pg_current_xact_id()) returning ctid into at;
  done := set_config('rowver.allocation', at::text, true);
  done := set_config('rowver.allocated', v::text, true);
  return v;
end $$;

-- This transaction's version, allocated on first use: one of the two ways to move the
-- sequence (the other is a write to a versioned table). Open to all: a version grants
-- nothing but a number for one's own transaction (and holds head while it runs, as any
-- writer does); what a changeset records about a table only that table's owner writes.
create or replace function rowver.xact_version() returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  return coalesce(rowver.allocated(), rowver.allocate());
end $$;

-- The lowest version that a running holder of slot `id` can stand for, given the published
-- head and the sequence's last value: the first version above head that maps to the slot and
-- whose allocation row is not visible (a committed holder's is, until head passes it). Below
-- it, every version sharing the slot committed, rolled back or was never handed out.
create or replace function rowver.held_version(id integer, mark bigint, top bigint) returns bigint
language sql stable
begin atomic
  select min(v) from generate_series(mark + 1 + ((id - mark - 1) % rowver.slots() + rowver.slots()) % rowver.slots(),
                                     top + 1, rowver.slots()) v
   where not exists (select from rowver.allocation a where a.version = v);
end;

-- The highest version head can be for this transaction: the sequence's last value, or below
-- this transaction's own versions (our own slots look free to us: we see our own update of
-- them). (Called only by functions that pin the search path.)
create or replace function rowver.head_top() returns bigint
language plpgsql volatile
as $$
begin
  return least((select case when s.is_called then s.last_value else s.last_value - 1 end from rowver.version_seq s),
               rowver.allocated() - 1, (select min(a) - 1 from unnest(rowver.abandoned()) a));
end $$;

-- Head walked up from `mark`, a version at a time, to `top` or `steps` versions at most. It
-- stops below the first version whose slot a running transaction holds, which may hold it for a
-- later version: then it stops short of head, never past it. (One statement: a loop of lookups
-- cost 12 us a version.)
create or replace function rowver.walk_head(mark bigint, top bigint, steps integer) returns bigint
language sql volatile
begin atomic
  select coalesce(min(v) - 1, greatest(mark, least(top, mark + steps)))
    from (select rowver.snapshot_xmax() as n) x,
         pg_catalog.generate_series(mark + 1, least(top, mark + steps)) v
   where (select rowver.running(s.xmax, x.n) from rowver.slot s where s.id = v % rowver.slots());
end;

-- The live head (primary only): the sequence's last value, or just below the oldest version
-- whose slot a running transaction holds (live or prepared), or below this transaction's own
-- versions, whichever is lowest. No waiting, no lock of its own: it works in read-only
-- transactions, and nothing another role can lock slows it down.
create or replace function rowver.head() returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  mark bigint := (select m.head from rowver.head_mark m);
  n    bigint := rowver.snapshot_xmax();
  top  bigint;
  old  integer;
begin
  if pg_is_in_recovery() then
    return mark;  -- a standby knows only the published head (row locks are not replayed)
  end if;
  top := rowver.head_top();
  if top - mark <= 64 then
    return rowver.walk_head(mark, top, 64);  -- published a moment ago: walk up from it
  end if;
  -- long ago (nothing published for a while): one pass over the slots, and for each held
  -- one a look at the allocations above head that share it. Transactions older than the
  -- snapshot's oldest running one have ended.
  old := age(((pg_snapshot_xmin(pg_current_snapshot())::text::bigint & 4294967295)::text)::xid);
  return least(top, (select min(rowver.held_version(s.id, mark, top)) - 1 from rowver.slot s
                      where s.xmax <> '0' and age(s.xmax) <= old and rowver.running(s.xmax, n)));
end $$;

-- Publish head h: advance head_mark to it and log it (if it is higher), and clear what finished
-- transactions left: allocations at or below it, and keys tracked by transactions older than
-- every running one. Each from where the last one stopped: the index entries of rows deleted
-- before stay until vacuum, and a queue read from its start walks them all (plain SQL writers
-- publishing every 64th version spent 10 ms a commit so).
create or replace function rowver.advance_mark(h bigint) returns void
language plpgsql volatile
as $$
declare
  old    rowver.head_mark;
  oldest xid8 := pg_snapshot_xmin(pg_current_snapshot());
begin
  select m.* into old from rowver.head_mark m for update;
  if old.head < h then
    update rowver.head_mark m set head = h, at = clock_timestamp(), tracked_from = greatest(old.tracked_from, oldest);
    insert into rowver.head_log (at, head) values (clock_timestamp(), h);
    delete from rowver.allocation a where a.version > old.head and a.version <= h;
    delete from rowver.tracked w where w.xid >= old.tracked_from and w.xid < oldest;
  end if;
end $$;

-- Advance the published head to the live head and log it. Returns the published head. It
-- waits at most a second for another publisher (a commit publishing, below, holds head_mark
-- until it ends), then leaves it be; and not at all while a transaction is prepared, which may
-- hold it until COMMIT PREPARED (a role could prepare one on purpose and leave it).
-- (No scans: plans cached while rowver's tables were small would go on scanning them; and no
-- JIT, which a scan left, costed as disabled, would set off: 30-50 ms compiling.)
create or replace function rowver.publish_head() returns bigint
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp set lock_timeout = '1s' set enable_seqscan = off set jit = off
as $$
declare
  h bigint := rowver.head();
begin
  -- (which of them holds it does not show: its lock is a subtransaction's)
  perform from rowver.head_mark m for update skip locked;
  if not found and exists (select from pg_prepared_xacts) then
    return (select m.head from rowver.head_mark m);
  end if;
  begin
    perform rowver.advance_mark(h);
  exception when lock_not_available then
    null;
  end;
  return (select m.head from rowver.head_mark m);
end $$;

-- Every 64th version publishes head as it commits. The write layer publishes after each of
-- its commits; plain SQL writers never call publish_head, and without this their finished
-- allocation rows and tracked keys would pile up with every transaction, head() would take
-- its long way, and timestamps would resolve to whatever head was last published, perhaps
-- when the table was enabled. It never waits: while another transaction publishes, it leaves
-- it to that one. It walks up from the published head, 256 versions at most, so that its
-- cost is bounded and it catches up after a long pause (a long transaction holding head).
-- READ COMMITTED only: under REPEATABLE READ or SERIALIZABLE its update of head_mark could
-- fail with 40001 where plain tables fail nothing. Called at commit by rowver.restamp_table,
-- once per transaction (head_mark stays locked for the moment the commit takes). (It was a
-- trigger of its own on the changeset, whose WHEN PostgreSQL reads back from its stored form
-- at every changeset's insert: about 5 us of backend CPU a one-row UPDATE transaction.)
drop trigger if exists publish_at_commit on rowver.changeset;
drop function if exists rowver.publish_at_commit();
create function rowver.publish_at_commit() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp set enable_seqscan = off set jit = off
as $$
declare
  mark bigint;
begin
  if current_setting('transaction_isolation') = 'read committed' then
    select m.head into mark from rowver.head_mark m for update skip locked;
    if found then
      -- housekeeping: if a lock, a constraint or the server's resources refuse it, it is undone
      -- alone (head_mark, head_log and the clearing, all kept as they were) and the commit it
      -- rides on goes ahead with its rows and changeset, written before; the warning names the
      -- error. Anything else (a bug, a privilege taken away) fails the commit, loudly.
      begin
        perform rowver.advance_mark(rowver.walk_head(mark, rowver.head_top(), 256));
      exception when lock_not_available or deadlock_detected or integrity_constraint_violation
                     or insufficient_resources then
        raise warning 'rowver: publishing head at commit failed (%): %', sqlstate, sqlerrm;
      end;
    end if;
  end if;
end $$;

drop function if exists rowver.conflict(text, text);

-- A transaction takes its version at its first write. If it then meets a row that a newer
-- version wrote (it reached a hot row after a later writer committed it), it does not fail:
-- it renumbers. It takes a new version, above every version handed out so far, moves its
-- changeset there, and lists the old one as given up on its new allocation row
-- (rowver.abandoned), which no setting can hide. The rows it
-- wrote under an abandoned version are its own until it commits; just before it commits, a
-- deferred trigger (rowver.restamp_table) gives them the final version, table by table,
-- through each table's own restamp function. So every row's versions follow commit order,
-- and a writer that never sees a serialization failure on plain tables sees none here.

-- Whether version v is this transaction's: the one it has, or one it gave up renumbering.
-- (Stamps generated before rowver.restamping call it, until their table is refreshed.)
create or replace function rowver.mine(v bigint) returns boolean
language plpgsql stable
as $$
begin
  return v operator(pg_catalog.=) rowver.allocated() or v operator(pg_catalog.=) any(rowver.abandoned());
end $$;

-- Whether a row's version may move from `old` to `new` in an update that changes nothing
-- else: the restamp of this transaction's own row from a version it gave up to the one it has
-- now (one look at its allocation row; the stamp asks this of every restamped row). PL/pgSQL,
-- whose plan is kept for the session: before PostgreSQL 18 a SQL function that is not inlined
-- (an EXISTS is not) is planned again in every transaction, 100 us of each restamp's commit.
create or replace function rowver.restamping(old bigint, new bigint) returns boolean
language plpgsql stable
as $$
declare
  at text := pg_catalog.current_setting('rowver.allocation', true);
begin
  if at is null or at operator(pg_catalog.=) '' then
    return false;
  end if;
  return exists (select from rowver.allocation a
                 where a.ctid operator(pg_catalog.=) at::pg_catalog.tid
                   and a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()
                   and a.version operator(pg_catalog.=) new
                   and old operator(pg_catalog.=) any (a.abandoned));
end $$;

-- The versions this transaction gave up renumbering: listed on its allocation row, which only
-- rowver_owner writes (a setting could be cleared by the writer, to keep its rows below the
-- state they superseded).
create or replace function rowver.abandoned() returns bigint[]
language plpgsql stable
as $$
declare
  at text := pg_catalog.current_setting('rowver.allocation', true);
  gave_up bigint[];
begin
  if at is null or at operator(pg_catalog.=) '' then
    return '{}';
  end if;
  select a.abandoned into gave_up from rowver.allocation a
   where a.ctid operator(pg_catalog.=) at::pg_catalog.tid
     and a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned();
  return coalesce(gave_up, '{}');
end $$;

-- Renumber this transaction, which met a newer version (see above); returns its new version.
-- (The capture records the table it writes first: its rows under the old version, too, are
-- restamped at commit.) The new version takes no slot: the first version's slot, held until the
-- transaction ends, keeps head below both. So a transaction holds one slot however often it
-- renumbers, and no role can fill the slots by renumbering in a loop.
drop function if exists rowver.renumber(regclass);
-- (No scans: a plan cached while the changeset tables were small would go on scanning them as
-- they grow; see T's restamp.)
create or replace function rowver.renumber() returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp set enable_seqscan = off set jit = off
as $$
declare
  old     bigint := rowver.allocated();
  gave_up bigint[] := rowver.abandoned();
  new     bigint;
  at      tid;
begin
  if old is null then
    raise exception 'rowver: this transaction has no version to renumber' using errcode = '55000';
  end if;
  -- currval above the allocation: a version this transaction took in a savepoint since rolled
  -- back (rowver.begin_statement); rows stamped with it before the rollback was seen are
  -- restamped with the rest (no other transaction holds it: the sequence gave it to this one)
  if currval('rowver.version_seq') > old then
    gave_up := gave_up || currval('rowver.version_seq');
  end if;
  new := nextval('rowver.version_seq');
  -- the old allocation goes (a setting pointing at it finds nothing); the new one lists
  -- every version given up
  delete from rowver.allocation a where a.ctid = rowver.allocation_tid() and a.xid = pg_current_xact_id();
  insert into rowver.allocation (version, xid, abandoned) values (new, pg_current_xact_id(), gave_up || old)
  returning ctid into at;
  perform set_config('rowver.allocation', at::text, true);
  perform set_config('rowver.allocated', new::text, true);
  if current_setting('rowver.restamp_fired', true) = 'on' then  -- (see rowver.restamp_table)
    perform set_config('rowver.restamp_due', 'on', true);
  end if;
  update rowver.changeset_table c set version = new where c.version = old;
  update rowver.changeset c set version = new where c.version = old;
  return new;
end $$;

-- What a capture calls when it meets a newer version: the table it writes is recorded under
-- the version its rows so far carry, in the capture's rights (so that the table's restamp at
-- commit runs in them), and then the transaction renumbers.
create or replace function rowver.renumber_for(tbl regclass, v bigint) returns bigint
language plpgsql
as $$
begin
  perform rowver.record_change(v, tbl, 0, 0, 0);
  return rowver.renumber();
end $$;

-- Remember the keys a statement wrote to tbl (a JSON object per line, '*' past 256 rows), so
-- that a renumber can find them at commit without a scan (rowver.tracked). Runs as the
-- capture's role, T's owner. (Captures generated now insert them themselves, rowver.track_sql;
-- this serves those generated before, until their table is refreshed.)
create or replace function rowver.track(tbl regclass, keys text, n bigint) returns void
language plpgsql
as $$
begin
  if n operator(pg_catalog.>) 0 then
    insert into rowver.tracked (xid, rel, keys)
    values (pg_catalog.pg_current_xact_id(), coalesce(pg_catalog.pg_partition_root(tbl), tbl),
            case when n operator(pg_catalog.>) 256 then '*' else keys end);
  end if;
end $$;

-- At commit, for each table the transaction wrote (a deferred constraint trigger on the
-- changeset_table row its first write to the table made): if the transaction renumbered after
-- that write, the table's rows get the final version, through the table's own restamp
-- function, if it is still what rowver made (SECURITY DEFINER, its table's owner's). It runs
-- as a role that can reach the table's schema: from PostgreSQL 18 on, the role that queued
-- it (the capture's, the table's owner); before 18, the committing role, which wrote the
-- table. No SET clause: it runs on every commit of a write. (The first firing of every 64th
-- version also publishes head: rowver.publish_at_commit.)
--
-- Most commits never renumbered, and learn it from currval alone: only allocate and renumber
-- move the sequence, and this session's currval is still the version the table was first
-- written under only if neither ran since (no writer can move it back). Measured: reading the
-- allocation row instead cost 84 us of backend CPU per single-row UPDATE (417 -> 333).
-- (Where this transaction never allocated, as in a restore's COPY, currval would fail: the
-- setting allocate makes tells, and such a commit takes the long way.)
--
-- SET CONSTRAINTS ALL IMMEDIATE (Django's check_constraints runs it) fires these triggers
-- before the commit, and each fires once: a renumber after it would leave the rows written
-- before it under the version given up, in no changeset. So each firing says so
-- (rowver.restamp_fired), and a renumber after one restamps every table the transaction
-- wrote at the end of its statement (rowver.restamp_written, called by the capture).
-- The flags say whether, never what: a restamp moves only the transaction's own rows.
drop trigger if exists restamp_renumbered on rowver.changeset;
drop function if exists rowver.restamp_renumbered();
create or replace function rowver.restamp_table() returns trigger
language plpgsql
as $$
declare
  v       bigint;
  at      pg_catalog.tid;
  pointer pg_catalog.text := pg_catalog.current_setting('rowver.allocation', true);
begin
  perform pg_catalog.set_config('rowver.restamp_fired', 'on', true);
  -- every 64th version publishes head (rowver.publish_at_commit), at the first table's firing
  -- (the flag says whether, and only makes a transaction skip this housekeeping)
  if NEW.version operator(pg_catalog.%) 64 operator(pg_catalog.=) 0
     and coalesce(pg_catalog.current_setting('rowver.published', true), '') operator(pg_catalog.<>) 'on' then
    perform pg_catalog.set_config('rowver.published', 'on', true);
    perform rowver.publish_at_commit();
  end if;
  if coalesce(pointer, '') operator(pg_catalog.<>) '' then
    if NEW.version operator(pg_catalog.=) pg_catalog.currval('rowver.version_seq'::pg_catalog.regclass) then
      return null;  -- not renumbered since this table was first written
    end if;
    -- (rowver.allocated, written out: that function, called here in the writer's search path
    -- and elsewhere in rowver's, was planned again at every renumbered commit)
    select a.version into v from rowver.allocation a
     where a.ctid operator(pg_catalog.=) pointer::pg_catalog.tid
       and a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned();
  end if;
  if v is null then
    -- no pointer to the allocation (a writer cleared it, or a restore's COPY loads the
    -- catalog): find it by transaction id, and point at it again for the restamp
    select a.ctid, a.version into at, v from rowver.allocation a
     where a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id_if_assigned()
     order by a.version desc limit 1;
    if v is null then
      return null;  -- no version of this transaction's: nothing to restamp
    end if;
    perform pg_catalog.set_config('rowver.allocation', at::pg_catalog.text, true);
    perform pg_catalog.set_config('rowver.allocated', v::pg_catalog.text, true);
  end if;
  if NEW.version operator(pg_catalog.<>) v then
    perform rowver.restamp(NEW.table_id);
  end if;  -- (else not renumbered since this table was first written: nothing to restamp)
  return null;
end $$;

-- Restamp one versioned table's rows that this transaction wrote under versions it gave up,
-- through the table's restamp function, if it is still what rowver made (SECURITY DEFINER,
-- its table's owner's).
create or replace function rowver.restamp(table_id integer) returns void
language plpgsql
as $$
declare
  t record;
begin
  select r.relid, r.restamp_name, n.nspname as sch,
         exists (select from pg_catalog.pg_proc p
                  where p.oid operator(pg_catalog.=)
                          pg_catalog.to_regprocedure(pg_catalog.format('%I.%I()', n.nspname, r.restamp_name))
                    and p.prosecdef and p.proowner operator(pg_catalog.=) c.relowner) as owners
    into t
    from rowver.versioned r join pg_catalog.pg_class c on c.oid operator(pg_catalog.=) r.relid
    join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) c.relnamespace
   where r.id operator(pg_catalog.=) restamp.table_id;
  if not found then
    return;  -- (disabled since, in this transaction)
  end if;
  if not t.owners then
    raise exception 'rowver: % has no restamp function of its owner''s', t.relid using errcode = '55000',
      hint = pg_catalog.format('its owner runs rowver.refresh(%L)', t.relid::text);
  end if;
  execute pg_catalog.format('select %I.%I()', t.sch, t.restamp_name);
end $$;

-- Restamp every table this transaction wrote, now: what a renumber after the commit triggers
-- fired (above) leaves to the end of its statement, which the capture reaches with its rows
-- written. Runs as the capture (the owner of the table the statement wrote).
create or replace function rowver.restamp_written() returns void
language plpgsql
as $$
declare
  id integer;
begin
  perform pg_catalog.set_config('rowver.restamp_due', '', true);
  for id in select c.table_id from rowver.changeset_table c
             where c.version operator(pg_catalog.=) rowver.allocated() order by c.table_id loop
    perform rowver.restamp(id);
  end loop;
end $$;

drop trigger if exists restamp_table on rowver.changeset_table;
create constraint trigger restamp_table after insert on rowver.changeset_table
  deferrable initially deferred for each row execute function rowver.restamp_table();

-- Resolve a ref (a version number, a tag, 'head', or an ISO-8601 timestamp) to a version
-- number that is at most head. VOLATILE so it is never folded into a query: resolve
-- first, in its own statement, then read.
create or replace function rowver.resolve(ref text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  r  text := btrim(ref);
  v  bigint;
  h  bigint;
  ts timestamptz;
begin
  if r is null or r = '' then
    raise exception 'rowver: empty ref' using errcode = 'RV003';
  end if;
  if r ~ '^[+-]?[0-9]+$' then
    if length(ltrim(r, '+-0')) > 18 then
      raise exception 'rowver: version % is out of range', r using errcode = '22003';
    end if;
    v := r::bigint;
    if v < 0 then
      raise exception 'rowver: version % is negative', v using errcode = 'RV003';
    end if;
    h := rowver.head();
    if v > h then
      raise exception 'rowver: version % is above head (%)', v, h using errcode = 'RV004',
        hint = 'versions above head may still be written by running transactions';
    end if;
    return v;
  end if;
  if lower(r) = 'head' then
    return rowver.head();
  end if;
  if r like 'model:%' then
    -- the data version a model version was trained on (sql/61_model_refs.sql)
    if to_regprocedure('rowver.model_data_version(text)') is null then
      raise exception 'rowver: model ref % needs the model store, which is not installed', r
        using errcode = '22023';
    end if;
    return rowver.model_data_version(substr(r, 7));
  end if;
  select t.version into v from rowver.tag t where t.name = r;
  if found then
    return v;
  end if;
  begin
    ts := r::timestamptz;
  exception when data_exception then  -- not a timestamp either (bad syntax, range, time zone)
    raise exception 'rowver: unknown ref %', quote_literal(r) using errcode = 'RV003',
      hint = 'a ref is a version number, a tag, head, or an ISO-8601 timestamp';
  end;
  select l.head into v from rowver.head_log l where l.at <= ts order by l.at desc, l.head desc limit 1;
  if not found then
    raise exception 'rowver: no head was published at or before %', ts using errcode = 'RV003',
      hint = coalesce((select format('the first was published at %s (version %s)', l.at, l.head)
                         from rowver.head_log l order by l.at, l.head limit 1), 'no head was published yet');
  end if;
  return v;
end $$;

-- A tag name: starts with a letter or _, no spaces, at most 200 characters, and nothing a
-- ref would read otherwise (head, model:..., and every word or form PostgreSQL reads as a
-- timestamp: now, today, epoch, infinity, J2451545, ...).
create or replace function rowver.check_tag_name(name text) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  is_time boolean := false;
begin
  if name is not null then
    begin
      perform name::timestamptz;
      is_time := true;
    exception when data_exception then  -- (not a timestamp: the name is free)
      null;
    end;
  end if;
  if name is null or name !~ '^[[:alpha:]_][^[:space:][:cntrl:]]*$' or lower(name) = 'head'
     or name like 'model:%' or length(name) > 200 or is_time then
    raise exception 'rowver: invalid tag name %', coalesce(quote_literal(name), 'NULL')
      using errcode = '22023',
      hint = 'a tag starts with a letter or _, has no spaces, and is not head, model:..., or a word a '
             'timestamp could be (now, today, infinity, ...)';
  end if;
end $$;

-- Record a change to a tag (the tag functions call this; nobody else may).
create or replace function rowver.log_tag(name text, action text, old_version bigint, new_version bigint,
                                          protected boolean) returns void
language sql
begin atomic
  insert into rowver.tag_log (name, action, old_version, new_version, protected, db_role)
  values (name, action, old_version, new_version, protected, rowver.session_role());
end;

-- The tag `name`, locked for a change: one clear error when there is none, or when it is
-- protected and the change is not to its protection.
create or replace function rowver.tag_to_change(name text, protection boolean default false) returns rowver.tag
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  old rowver.tag;
begin
  select * into old from rowver.tag t where t.name = tag_to_change.name for update;
  if not found then
    raise exception 'rowver: no tag %', quote_literal(name) using errcode = 'RV007';
  elsif old.protected and not protection then
    raise exception 'rowver: tag % is protected', quote_literal(name) using errcode = '42501',
      hint = 'only rowver_admin may unprotect it (rowver.protect_tag(name, false))';
  end if;
  return old;
end $$;

-- Name a version (needs rowver_tagger). The ref is resolved (so at most head); head is
-- published first so that a tag of 'head' names what every later reader can see. An
-- existing tag is refused, unless move: then it names the new version (unless protected).
drop function if exists rowver.tag(text, text);  -- (0.1's, without move)
create or replace function rowver.tag(name text, ref text default 'head', move boolean default false)
returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v   bigint;
  old rowver.tag;
begin
  perform rowver.check_tag_name(name);
  perform rowver.publish_head();
  v := rowver.resolve(ref);
  if v < (select max(x.horizon) from rowver.retention x) then
    raise exception 'rowver: version % is before a retention horizon; its history was pruned', v
      using errcode = 'RV006';
  end if;
  if not exists (select from rowver.tag t where t.name = tag.name) then
    insert into rowver.tag (name, version) values (name, v);
    perform rowver.log_tag(name, 'create', null, v, false);
    return v;
  elsif not move then
    raise exception 'rowver: tag % already exists (version %)', quote_literal(name),
      (select t.version from rowver.tag t where t.name = tag.name)
      using errcode = '23505', hint = 'move it with rowver tag --move (move => true)';
  end if;
  old := rowver.tag_to_change(name);
  if old.version <> v then
    update rowver.tag t set version = v, created_at = clock_timestamp(), db_user = session_user
     where t.name = tag.name;
    perform rowver.log_tag(name, 'move', old.version, v, false);
  end if;
  return v;
exception when unique_violation then  -- created concurrently
  raise exception 'rowver: tag % already exists', quote_literal(name) using errcode = '23505';
end $$;

-- Remove a tag (needs rowver_tagger; a protected tag only once unprotected). The version it
-- named is untouched.
create or replace function rowver.untag(name text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  old rowver.tag := rowver.tag_to_change(name);
begin
  delete from rowver.tag t where t.name = untag.name;
  perform rowver.log_tag(name, 'remove', old.version, null, false);
  return old.version;
end $$;

-- Protect a tag from being moved or removed, or lift that (needs rowver_admin). Prune keeps
-- what every tag names; protection keeps the tag.
create or replace function rowver.protect_tag(name text, protect boolean default true) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  old rowver.tag := rowver.tag_to_change(name, protection => true);
begin
  if old.protected is distinct from protect then
    update rowver.tag t set protected = protect where t.name = protect_tag.name;
    perform rowver.log_tag(name, case when protect then 'protect' else 'unprotect' end,
                           old.version, old.version, protect);
  end if;
  return old.version;
end $$;

-- Record that this transaction changed `n` rows of versioned table `tbl`, growing it by
-- `delta` rows (inserted minus deleted): creates the changeset on the first captured
-- change, so transactions that capture nothing leave none. Runs as its caller (capture runs
-- as T's owner): row-level security lets it record this transaction's version for tables
-- the caller owns only (sql/15_access.sql). Not SECURITY DEFINER and no SET clause: it runs
-- on every captured statement, so every name in it is qualified.
drop function if exists rowver.record_change(bigint, regclass, bigint);
drop function if exists rowver.record_change(bigint, regclass, bigint, bigint);
-- n: row changes; delta: rows inserted minus deleted; added: rows inserted under a new key
-- (null: not counted, as by captures generated before it was)
--
-- Each statement adds its counts to the transaction's changeset_table row for the table. That
-- row's earlier versions, the transaction's own, cannot be pruned before it ends, and an upsert
-- finds the row through its index, walking them all: in a transaction of 20,000 one-row UPDATEs
-- the last ones' upserts took 8 times the first ones'. So the row's address is remembered
-- (rowver.counted_<table oid>, transaction-local) and the next statement updates it there; an
-- address that finds no row of this version and table (a renumber moved it, or a forged
-- setting) falls back to the upsert. A setting only says where to look.
create or replace function rowver.record_change(v bigint, tbl regclass, n bigint, delta bigint default 0,
                                                added bigint default null) returns void
language plpgsql
as $$
declare
  author  pg_catalog.text := pg_catalog.current_setting('rowver.author', true);
  message pg_catalog.text := pg_catalog.current_setting('rowver.message', true);
  root    pg_catalog.oid := coalesce(pg_catalog.pg_partition_root(tbl), tbl);  -- a partition counts for its root
  counted pg_catalog.text := 'rowver.counted_' operator(pg_catalog.||) root::pg_catalog.text;
  at      pg_catalog.text := pg_catalog.current_setting(counted, true);
  row_at  pg_catalog.tid;
  done    pg_catalog.text;
begin
  if at is not null and at operator(pg_catalog.<>) '' then
    update rowver.changeset_table c
       set rows = c.rows operator(pg_catalog.+) n, net = c.net operator(pg_catalog.+) delta,
           inserted = c.inserted operator(pg_catalog.+) added
     where c.ctid operator(pg_catalog.=) at::pg_catalog.tid and c.version operator(pg_catalog.=) v
       and c.table_id operator(pg_catalog.=) (select r.id from rowver.versioned r
                                              where r.relid operator(pg_catalog.=) root)
    returning c.ctid into row_at;
    if row_at is not null then
      done := pg_catalog.set_config(counted, row_at::pg_catalog.text, true);
      return;
    end if;
  end if;
  -- (not nullif: it looks = up through the search path)
  if author operator(pg_catalog.=) '' then
    author := null;
  end if;
  if message operator(pg_catalog.=) '' then
    message := null;
  end if;
  with changeset as (
    insert into rowver.changeset (version, xid, db_role, author, message)
    values (v, pg_catalog.pg_current_xact_id(), rowver.session_role(), author, message)
    on conflict (version) do nothing)
  insert into rowver.changeset_table as c (version, table_id, rows, net, inserted)
  values (v, (select r.id from rowver.versioned r  -- null, and refused, for an unregistered table
               where r.relid operator(pg_catalog.=) root), n, delta, added)
  on conflict (version, table_id) do update
    set rows = c.rows operator(pg_catalog.+) excluded.rows, net = c.net operator(pg_catalog.+) excluded.net,
        inserted = c.inserted operator(pg_catalog.+) excluded.inserted
  returning c.ctid into row_at;
  done := pg_catalog.set_config(counted, coalesce(row_at::pg_catalog.text, ''), true);
end $$;

-- Wake the change stream (rowver changes --follow): one NOTIFY per changeset, sent when the
-- transaction commits (NOTIFY is transactional; a rolled-back changeset sends none), while a
-- stream is following (rowver.follower). It fires on the changeset's first row, so once per
-- transaction, not per statement or row. The NOTIFY is sent only while someone follows because
-- a transaction that notifies holds a cluster-wide lock from its commit until it ends, so
-- concurrent writers that notify commit one at a time (measured, 8 writers on PostgreSQL 15:
-- half the updates a second); with no follower, a commit pays one lookup in a tiny table. The
-- payload is empty: a listener reads what committed up to head, and a later renumber would make
-- a version in it stale. (A listener that misses one finds the change by polling.) No SET
-- clause, as on the rest of the write path: every name is qualified.
create or replace function rowver.notify_changeset() returns trigger
language plpgsql
as $$
begin
  if exists (select from rowver.follower f
              where f.seen_at operator(pg_catalog.>)
                    (pg_catalog.now() operator(pg_catalog.-) '1 minute'::pg_catalog.interval)) then
    perform pg_catalog.pg_notify('rowver_changes', '');
  end if;
  return null;
end $$;

-- A change stream says it is following (again: every few seconds), so that commits notify;
-- streams not seen for a minute are forgotten. Open to all, as reading changes is.
create or replace function rowver.follower_seen(id uuid) returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp
begin atomic
  delete from rowver.follower f where f.seen_at < now() - '1 minute'::interval and f.id <> follower_seen.id;
  insert into rowver.follower as f (id, seen_at) values (follower_seen.id, now())
  on conflict (id) do update set seen_at = excluded.seen_at;
end;

-- A change stream that stops says so.
create or replace function rowver.follower_gone(id uuid) returns void
language sql volatile security definer set search_path = pg_catalog, pg_temp
begin atomic
  delete from rowver.follower f where f.id = follower_gone.id;
end;

drop trigger if exists notify_changeset on rowver.changeset;
create trigger notify_changeset after insert on rowver.changeset
  for each row execute function rowver.notify_changeset();

-- Every statement on a versioned table starts here (rowver_begin, a statement trigger): the
-- transaction's first allocates, so that currval(), which the stamp reads, is this
-- transaction's version. The test is two settings and currval, flags that say whether, never
-- what: a forged setting skips the allocation and fails the statement in its capture, which
-- checks currval against the allocation row. It lets through a statement whose currval is
-- not the version allocated (the rowver.allocated setting): a savepoint rolled back a
-- renumber, which took the allocation row and the settings back to the version given up,
-- but not currval, a session's. The stamp would write that dropped version, and the capture
-- refuse it as forged; instead the transaction renumbers again, before any row is stamped,
-- as if it had just met the newer row once more. (The test was the trigger's WHEN, which
-- PostgreSQL reads back from its stored form on every statement; measured, backend CPU on
-- PostgreSQL 15, this call costs 10 us less on a one-row UPDATE, 60 us less on a transaction
-- of three. It runs as the writer, on every statement: no SET clause, names qualified; a
-- writer that fools the test with operators of its own only skips an allocation its capture
-- then refuses.)
create or replace function rowver.begin_statement() returns trigger
language plpgsql
as $$
begin
  if coalesce(pg_catalog.current_setting('rowver.allocation', true), '') operator(pg_catalog.=) ''
     or pg_catalog.current_setting('rowver.allocated', true) is distinct from
        pg_catalog.currval('rowver.version_seq'::pg_catalog.regclass)::pg_catalog.text then
    perform rowver.begin_write();
  end if;
  return null;
end $$;

-- What begin_statement lets through, as rowver_owner, which may allocate: allocate, or
-- renumber (above).
create or replace function rowver.begin_write() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v bigint := rowver.allocated();
begin
  if v is null and coalesce(current_setting('rowver.allocation', true), '') <> '' then
    raise exception 'rowver: this transaction''s version is not its own (a forged rowver.allocation setting?)'
      using errcode = '55000';  -- (it points at no allocation of this transaction's)
  elsif v is null then
    v := rowver.allocate();
  elsif v <> currval('rowver.version_seq') then
    v := rowver.renumber();
  else  -- (let through without cause: a missing or forged rowver.allocated)
    perform set_config('rowver.allocated', v::text, true);
  end if;
end $$;

-- Versioned tables refuse TRUNCATE while they hold rows: it would drop rows without
-- history. rowver.truncate() deletes (on record) first; an empty table may be truncated.
-- Under row-level security the truncating role may not see every row, so TRUNCATE is then
-- refused outright.
create or replace function rowver.refuse_truncate() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  has_rows boolean;
begin
  execute format('select exists (select from %I.%I)', TG_TABLE_SCHEMA, TG_TABLE_NAME) into has_rows;
  if has_rows or row_security_active(TG_RELID) then
    raise exception 'rowver: TRUNCATE of versioned table %.% would lose history%', TG_TABLE_SCHEMA, TG_TABLE_NAME,
      case when has_rows then '' else ' (row-level security may hide rows from you)' end
      using errcode = '0A000',
      hint = format('use rowver.truncate(%L), which records every delete first',
                    format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
  end if;
  return null;
end $$;

-- A versioned table cannot become a partition or an inheritance child: statements naming the
-- parent fire the parent's statement triggers, not T's, so T's rows written through it would
-- get no history (and an update would stamp them with whatever version the session last had).
-- PostgreSQL refuses to attach a table that has a row trigger with a transition table, so T
-- gets one that never fires (WHEN (false), on DELETE: a delete pays a constant test per row).
-- A partitioned T cannot carry one (rowver.check names such a T once attached, 'hierarchy').
create or replace function rowver.not_a_partition() returns trigger
language plpgsql
as $$
begin
  raise exception 'rowver: %.% is versioned, so it cannot become a partition or an inheritance child',
    TG_TABLE_SCHEMA, TG_TABLE_NAME using errcode = '0A000';
end $$;

-- Whether T carries that trigger: a plain table not in a hierarchy already (one that is cannot
-- take it, and check names it).
create or replace function rowver.takes_partition_guard(tbl regclass) returns boolean
language sql stable
return (select c.relkind from pg_class c where c.oid = tbl) = 'r'
       and not exists (select from pg_inherits i where i.inhrelid = tbl);

-- Anyone may read head and resolve refs, and take a version for its own transaction;
-- owners attach begin_statement and refuse_truncate to their tables and record their
-- changes (under row-level security). Tags need rowver_tagger, protection rowver_admin.
-- allocate() and log_tag() are rowver_owner's alone.
grant execute on function rowver.allocated(), rowver.allocation_tid(), rowver.xact_version(), rowver.head(), rowver.publish_head(),
  rowver.resolve(text), rowver.session_role(), rowver.record_change(bigint, regclass, bigint, bigint, bigint),
  rowver.mine(bigint), rowver.restamping(bigint, bigint), rowver.abandoned(), rowver.renumber(), rowver.renumber_for(regclass, bigint),
  rowver.track(regclass, text, bigint), rowver.restamp(integer), rowver.restamp_written(),
  rowver.begin_statement(), rowver.begin_write(), rowver.notify_changeset(), rowver.publish_at_commit(), rowver.follower_seen(uuid), rowver.follower_gone(uuid),
  rowver.refuse_truncate(), rowver.not_a_partition(), rowver.takes_partition_guard(regclass),
  rowver.check_tag_name(text),
  rowver.slots(), rowver.held_version(integer, bigint, bigint), rowver.running(xid, bigint),
  rowver.full_xid(xid, bigint), rowver.snapshot_xmax() to public;
revoke execute on function rowver.tag(text, text, boolean), rowver.untag(text) from public;
grant execute on function rowver.tag(text, text, boolean), rowver.untag(text) to rowver_tagger;
grant execute on function rowver.protect_tag(text, boolean) to rowver_admin;

reset search_path;
reset role;
