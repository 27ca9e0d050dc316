-- Versions: allocation, the live and published head, refs and tags.
--
-- A transaction gets one version, at its first write to a versioned table. Version v is
-- "in flight" while its transaction holds a shared advisory lock on v; head is the newest
-- version at or below which nothing is in flight. Advisory locks use the two-int form
-- with a reserved tag in the high bits: key1 = tag << 16 | v >> 32, key2 = v & 0xffffffff.

set role rowver_owner;

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
  if pg_current_xact_id_if_assigned() is null then
    return null;  -- allocating writes a row, so a transaction without an id has no version
  end if;
  begin
    v := currval('rowver.version_seq');
  exception when object_not_in_prerequisite_state then  -- no version in this session yet
    return null;
  end;
  if exists (select from rowver.allocation a where a.version = v and a.xid = pg_current_xact_id()) then
    return v;
  end if;
  return null;
end $$;

-- Allocate a version to this transaction (callers check rowver.allocated() first). Runs
-- as rowver_owner, the sequence's only user: called from xact_version and begin_statement.
create or replace function rowver.allocate() returns bigint
language plpgsql
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

-- This transaction's version, allocated on first use. The only function that moves the
-- sequence: SECURITY DEFINER, not executable by PUBLIC.
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
language plpgsql
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

-- Name a version. The ref is resolved (so at most head); head is published first so that
-- a tag of 'head' names what every later reader can see.
create or replace function rowver.tag(name text, ref text default 'head') returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v bigint;
begin
  if name is null or name !~ '^[[:alpha:]_][^[:space:]]*$' or lower(name) = 'head'
     or name like 'model:%' or length(name) > 200 then
    raise exception 'rowver: invalid tag name %', coalesce(quote_literal(name), 'NULL')
      using errcode = '22023',
      hint = 'a tag starts with a letter or _, has no spaces, and is not head or model:...';
  end if;
  perform rowver.publish_head();
  v := rowver.resolve(ref);
  if v < (select max(x.horizon) from rowver.retention x) then
    raise exception 'rowver: version % is before a retention horizon; its history was pruned', v
      using errcode = '22023';
  end if;
  insert into rowver.tag (name, version) values (name, v);
  return v;
exception when unique_violation then
  raise exception 'rowver: tag % already exists', quote_literal(name) using errcode = '23505';
end $$;

-- Remove a tag (the version it named is untouched).
create or replace function rowver.untag(name text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v bigint;
begin
  delete from rowver.tag t where t.name = untag.name returning t.version into v;
  if not found then
    raise exception 'rowver: no tag %', quote_literal(name) using errcode = '22023';
  end if;
  return v;
end $$;

-- Record that this transaction changed `n` rows of versioned table `tbl`, growing it by
-- `delta` rows (inserted minus deleted): creates the changeset on the first captured
-- change, so transactions that capture nothing leave none. Not SECURITY DEFINER: its
-- callers (capture, enable, refresh, prune, erase) already run as rowver_owner or a member,
-- and a second definer call with its own SET on every captured statement cost ~5% of a
-- single-row update. Nobody else may execute it.
drop function if exists rowver.record_change(bigint, regclass, bigint);
create or replace function rowver.record_change(v bigint, tbl regclass, n bigint, delta bigint default 0) returns void
language plpgsql
as $$
begin
  with changeset as (
    insert into rowver.changeset (version, xid, db_role, author, message)
    values (v, pg_current_xact_id(),
            case when current_setting('role') = 'none' then session_user::name
                 else current_setting('role')::name end,
            nullif(current_setting('rowver.author', true), ''),
            nullif(current_setting('rowver.message', true), ''))
    on conflict (version) do nothing)
  insert into rowver.changeset_table as c (version, table_id, rows, net)
  values (v, (select r.id from rowver.versioned r  -- null, and refused, for an unregistered table
               where r.relid = coalesce(pg_partition_root(tbl), tbl)), n, delta)  -- a partition counts for its root
  on conflict (version, table_id) do update set rows = c.rows + excluded.rows, net = c.net + excluded.net;
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
create or replace function rowver.refuse_truncate() returns trigger
language plpgsql
as $$
declare
  has_rows boolean;
begin
  execute pg_catalog.format('select exists (select from %I.%I)', TG_TABLE_SCHEMA, TG_TABLE_NAME) into has_rows;
  if has_rows then
    raise exception 'rowver: TRUNCATE of versioned table %.% would lose history', TG_TABLE_SCHEMA, TG_TABLE_NAME
      using errcode = '0A000',
      hint = pg_catalog.format('use rowver.truncate(%L), which records every delete first',
                               pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
  end if;
  return null;
end $$;

-- Anyone may read head and resolve refs; tags are names, not data. Allocation
-- (xact_version, allocate), record_change and begin_statement stay with rowver_owner.
grant execute on function rowver.allocated(), rowver.head(), rowver.publish_head(), rowver.resolve(text),
  rowver.tag(text, text), rowver.untag(text), rowver.lock_key1(bigint), rowver.lock_key2(bigint),
  rowver.mutex() to public;

reset role;
