-- Versions: allocation, the live and published head, refs and tags.
--
-- A transaction gets one version, at its first write to a versioned table. Version v is
-- "in flight" while its transaction holds a shared advisory lock on v; head is the newest
-- version at or below which nothing is in flight. Advisory locks use the two-int form
-- with a reserved tag in the high bits: key1 = tag << 16 | v >> 32, key2 = v & 0xffffffff.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Functions without a SET clause (on the write path, where a SET costs) qualify every
-- function and operator: they run under their caller's search_path.

-- The role a session acts as: its SET ROLE, else its login. Changesets and tag changes record
-- it beside session_user (inside a SECURITY DEFINER function current_user is the owner).
create or replace function rowver.session_role() returns name
language sql stable
return case when current_setting('role') = 'none' then session_user else current_setting('role')::name end;

create or replace function rowver.lock_key1(v bigint) returns integer
language sql immutable parallel safe
return (x'5256'::integer << 16) | (v >> 32)::integer;

create or replace function rowver.lock_key2(v bigint) returns integer
language sql immutable parallel safe
return (v & 4294967295)::bit(32)::integer;

-- The mutex that makes "nextval + register" atomic for head(): the one version the
-- sequence never hands out.
create or replace function rowver.mutex() returns bigint
language sql immutable parallel safe
return 281474976710655;

-- The version this transaction has allocated, or null: this session's currval, if the
-- allocation row for it carries this transaction's id. (Nothing a setting could forge. A
-- row with our transaction id that this session did not write came with a dump from
-- another cluster; rowver.check reads those as evidence of a restamp.)
create or replace function rowver.allocated() returns bigint
language plpgsql stable
as $$
declare
  v bigint;
begin
  if pg_catalog.pg_current_xact_id_if_assigned() is null then
    return null;  -- allocating writes a row, so a transaction without an id has no version
  end if;
  begin
    v := pg_catalog.currval('rowver.version_seq'::pg_catalog.regclass);
  exception when object_not_in_prerequisite_state then  -- no version in this session yet
    return null;
  end;
  if exists (select from rowver.allocation a where a.version operator(pg_catalog.=) v
                                              and a.xid operator(pg_catalog.=) pg_catalog.pg_current_xact_id()) then
    return v;
  end if;
  return null;
end $$;

-- Allocate a version to this transaction (callers check rowver.allocated() first). Runs
-- as rowver_owner, the sequence's only user: called from xact_version and begin_statement.
create or replace function rowver.allocate() returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  v    bigint;
  done text;  -- (calls are assigned, not PERFORMed: PL/pgSQL then evaluates them without
              -- starting an executor, which matters on every write)
begin
  done := pg_advisory_lock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));
  begin
    v := nextval('rowver.version_seq');
    done := pg_advisory_xact_lock_shared(rowver.lock_key1(v), rowver.lock_key2(v));
  exception when others or query_canceled then  -- (others excludes cancels and timeouts)
    -- release the session-level mutex, then re-raise the same error
    perform pg_advisory_unlock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));
    raise;
  end;
  done := pg_advisory_unlock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));
  insert into rowver.allocation (version, xid) values (v, pg_current_xact_id());
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

-- The live head (primary only): take the mutex to read the sequence, then probe versions
-- upward from the published head and stop at the first one still held by a live or
-- prepared writer. No pg_locks scan: it is slow under load and blind to prepared xacts.
create or replace function rowver.head() returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  top bigint;
  h   bigint;
  own bigint;
begin
  if pg_is_in_recovery() then
    -- advisory locks are not WAL-logged: a standby only knows the published head
    return (select m.head from rowver.head_mark m);
  end if;
  perform pg_advisory_lock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));
  begin
    select case when s.is_called then s.last_value else s.last_value - 1 end
      into top from rowver.version_seq s;
  exception when others or query_canceled then  -- as in allocate: never keep the mutex
    perform pg_advisory_unlock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));
    raise;
  end;
  perform pg_advisory_unlock(rowver.lock_key1(rowver.mutex()), rowver.lock_key2(rowver.mutex()));

  -- our own version does not conflict with our own probe: stop before it explicitly
  own := rowver.allocated();

  h := (select m.head from rowver.head_mark m);
  while h < top and h + 1 is distinct from own loop
    exit when not pg_try_advisory_lock(rowver.lock_key1(h + 1), rowver.lock_key2(h + 1));
    perform pg_advisory_unlock(rowver.lock_key1(h + 1), rowver.lock_key2(h + 1));
    h := h + 1;
  end loop;
  return h;
end $$;

-- Advance the published head to the live head and log it. Returns the published head.
create or replace function rowver.publish_head() returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  h bigint := rowver.head();
begin
  update rowver.head_mark m set head = h, at = clock_timestamp() where m.head < h;
  if found then
    insert into rowver.head_log (at, head) values (clock_timestamp(), h);
    -- allocations at or below head belong to finished transactions
    delete from rowver.allocation a where a.version <= h;
  end if;
  return (select m.head from rowver.head_mark m);
end $$;

-- Raise a serialization failure: the write would supersede a newer version.
create or replace function rowver.conflict(tbl text, detail text) returns boolean
language plpgsql set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'rowver: % was changed by a newer version; retry the transaction', tbl
    using errcode = '40001', detail = detail;
end $$;

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
    raise exception 'rowver: empty ref' using errcode = '22023';
  end if;
  if r ~ '^[+-]?[0-9]+$' then
    if length(ltrim(r, '+-0')) > 18 then
      raise exception 'rowver: version % is out of range', r using errcode = '22003';
    end if;
    v := r::bigint;
    if v < 0 then
      raise exception 'rowver: version % is negative', v using errcode = '22023';
    end if;
    h := rowver.head();
    if v > h then
      raise exception 'rowver: version % is above head (%)', v, h using errcode = '22023',
        hint = 'versions above head may still be written by running transactions';
    end if;
    return v;
  end if;
  if lower(r) = 'head' then
    return rowver.head();
  end if;
  if r like 'model:%' then
    -- the data version a model version was trained on (sql/60_models.sql)
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
    raise exception 'rowver: unknown ref %', quote_literal(r) using errcode = '22023',
      hint = 'a ref is a version number, a tag, head, or an ISO-8601 timestamp';
  end;
  select l.head into v from rowver.head_log l where l.at <= ts order by l.at desc, l.head desc limit 1;
  if not found then
    raise exception 'rowver: no head was published at or before %', ts using errcode = '22023';
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
    exception when others then  -- (not a timestamp: the name is free)
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
    raise exception 'rowver: no tag %', quote_literal(name) using errcode = '22023';
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
      using errcode = '22023';
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
create or replace function rowver.record_change(v bigint, tbl regclass, n bigint, delta bigint default 0) returns void
language plpgsql
as $$
declare
  author  pg_catalog.text := pg_catalog.current_setting('rowver.author', true);
  message pg_catalog.text := pg_catalog.current_setting('rowver.message', true);
begin
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
  insert into rowver.changeset_table as c (version, table_id, rows, net)
  values (v, (select r.id from rowver.versioned r  -- null, and refused, for an unregistered table
               where r.relid operator(pg_catalog.=)  -- a partition counts for its root
                     coalesce(pg_catalog.pg_partition_root(tbl), tbl)), n, delta)
  on conflict (version, table_id) do update
    set rows = c.rows operator(pg_catalog.+) excluded.rows, net = c.net operator(pg_catalog.+) excluded.net;
end $$;

-- Every statement on a versioned table starts here: it allocates (once per transaction),
-- so that currval(), which the stamp reads, is always this transaction's version.
create or replace function rowver.begin_statement() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v bigint;
begin
  -- (xact_version's body, without a second SECURITY DEFINER call on every write)
  if rowver.allocated() is null then
    v := rowver.allocate();
  end if;
  return null;
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

-- Anyone may read head and resolve refs, and take a version for its own transaction;
-- owners attach begin_statement and refuse_truncate to their tables and record their
-- changes (under row-level security). Tags need rowver_tagger, protection rowver_admin.
-- allocate() and log_tag() are rowver_owner's alone.
grant execute on function rowver.allocated(), rowver.xact_version(), rowver.head(), rowver.publish_head(),
  rowver.resolve(text), rowver.session_role(), rowver.conflict(text, text), rowver.record_change(bigint, regclass, bigint, bigint),
  rowver.begin_statement(), rowver.refuse_truncate(), rowver.check_tag_name(text),
  rowver.lock_key1(bigint), rowver.lock_key2(bigint), rowver.mutex() to public;
revoke execute on function rowver.tag(text, text, boolean), rowver.untag(text) from public;
grant execute on function rowver.tag(text, text, boolean), rowver.untag(text) to rowver_tagger;
grant execute on function rowver.protect_tag(text, boolean) to rowver_admin;

reset search_path;
reset role;
