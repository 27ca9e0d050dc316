-- The two recorded exceptions to "history is append-only": retention (prune) and legal
-- erasure (erase). Both leave a changeset, and both are the documented exceptions to
-- repeatable time travel. Either is done by T's owner, or by rowver_admin through T's admin
-- function, which runs as T's owner: rowver's own role never touches a user's table.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Raised by T__as_of for a version whose history was pruned.
create or replace function rowver.before_horizon(tbl text, v bigint) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'rowver: % was pruned before version %; it cannot be read as of %',
    tbl, (select x.horizon from rowver.retention x join rowver.versioned r on r.id = x.table_id
           where r.relid = tbl::regclass), v
    using errcode = 'RV006', hint = 'read a later version, or a tagged one';
end $$;

drop function if exists rowver.require_admin(text);

-- Run op (prune or erase) on tbl with the rights of its owner: directly for the owner, and
-- through tbl's admin function (EXECUTE granted to rowver_admin, SECURITY DEFINER as the
-- owner) for rowver_admin. Anyone else is refused.
create or replace function rowver.as_owner(tbl regclass, op text, args jsonb) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  r  rowver.versioned := rowver.registered(tbl);
  fn text := format('%I.%I(text, jsonb)', rowver.schema_of(tbl), r.admin_name);
  n  bigint;
begin
  if rowver.owns(tbl) then
    return rowver.admin_op(tbl, op, args);
  end if;
  if not pg_has_role('rowver_admin', 'USAGE') then
    raise exception 'rowver: % of % needs the rights of its owner, or rowver_admin', op, tbl using errcode = '42501';
  end if;
  if r.admin_name is null or to_regprocedure(fn) is null then
    raise exception 'rowver: % has no admin function', tbl using errcode = '55000',
      hint = format('its owner runs rowver.refresh(%L) to make one', tbl::text);
  end if;
  execute format('select %I.%I($1, $2)', rowver.schema_of(tbl), r.admin_name) into n using op, args;
  return n;
end $$;

-- What T's admin function runs, as T's owner. It refuses anyone without the owner's rights
-- (so calling it directly gains nothing).
create or replace function rowver.admin_op(tbl regclass, op text, args jsonb) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
begin
  if not rowver.owns(tbl) then
    raise exception 'rowver: % of % needs the rights of its owner', op, tbl using errcode = '42501';
  end if;
  if op = 'prune' then
    return rowver.prune_history(tbl, (args ->> 'horizon')::bigint);
  elsif op = 'erase' then
    return rowver.erase_key(tbl, args -> 'key', args -> 'surrogate');
  end if;
  raise exception 'rowver: unknown operation %', quote_literal(op) using errcode = '22023';
end $$;

-- Retention: remove tbl's history that no version at or after `before` (and no tagged
-- version) can read. Recorded as its own changeset; old changesets nothing refers to any
-- more go too. Returns the number of history rows removed.
create or replace function rowver.prune(tbl regclass, before text) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  h bigint;
begin
  perform rowver.registered(tbl);
  h := rowver.resolve(before);
  return rowver.as_owner(tbl, 'prune', jsonb_build_object('horizon', h));
end $$;

create or replace function rowver.prune_history(tbl regclass, h bigint) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  r    rowver.versioned := rowver.registered(tbl);
  hist text := format('%I.%I', rowver.schema_of(tbl), r.history_name);
  kept bigint[];
  n    bigint;
  v    bigint;
begin
  kept := array(select t.version from rowver.tag t where t.version < h order by 1);
  -- a state is needed while it is visible at the horizon or later, or at a kept tag;
  -- tombstones before the horizon are point events nothing can read
  execute format(
    'delete from %s x where x.rv_until <= $1
        and not exists (select from unnest($2::bigint[]) k where x.rv_version <= k and x.rv_until > k and not x.rv_deleted)',
    hist) using h, kept;
  get diagnostics n = row_count;
  insert into rowver.retention as x (table_id, horizon, kept, net) values (r.id, h, kept, 0)
  on conflict (table_id) do update set horizon = greatest(x.horizon, excluded.horizon), kept = excluded.kept,
                                       pruned_at = clock_timestamp();
  perform rowver.regenerate(r);  -- the as-of function learns the horizon

  v := rowver.xact_version();
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('prune %s before %s: %s history rows', tbl, h, n), true);
  end if;
  perform rowver.record_change(v, tbl, n, 0, 0);

  -- T's changesets before the horizon that none of T's rows names any more (and no tag) no
  -- longer concern T; the rows they added or removed are kept in the count, for check
  execute format('create temp table rv_named on commit drop as select rv_version as v from %s union '
                 'select rv_version from %s union select rv_until from %s where rv_until is not null',
                 rowver.qualified(tbl), hist, hist);
  with gone as (
    update rowver.changeset_table c set pruned = true
     where c.table_id = r.id and c.version < h and not c.pruned
       and not exists (select from pg_temp.rv_named x where x.v = c.version)
       and not exists (select from rowver.tag t where t.version = c.version)
    returning c.net)
  update rowver.retention x
     set net = x.net + (select case when bool_and(g.net is not null) then sum(g.net) end from gone g)
   where x.table_id = r.id and exists (select from gone);
  drop table pg_temp.rv_named;
  perform rowver.prune_changesets();
  return n;
end $$;

-- What the tables' prunes let go: the changeset_table rows they marked, then changesets below
-- every table's horizon that no table names any more and no tag names. rowver's own catalog
-- only, so open to all.
create or replace function rowver.prune_changesets() returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  horizon bigint := (select coalesce(min(coalesce(x.horizon, 0)), 0)
                       from rowver.versioned r left join rowver.retention x on x.table_id = r.id);
  n bigint;
begin
  delete from rowver.changeset_table c where c.pruned;
  delete from rowver.changeset c
   where c.version < horizon
     and not exists (select from rowver.changeset_table ct where ct.version = c.version)
     and not exists (select from rowver.tag t where t.version = c.version);
  get diagnostics n = row_count;
  return n;
end $$;

-- Legal erasure: remove one key's data from tbl and from every version in its history,
-- leaving a changeset and tombstones that carry no data; with `surrogate` (the key's
-- columns, e.g. {"email": "erased-1"}), not even the key. Every other key's history is
-- untouched. Returns the number of history rows removed.
create or replace function rowver.erase(tbl regclass, key jsonb, surrogate jsonb default null) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
begin
  perform rowver.check_key(tbl, (rowver.registered(tbl)).key_columns, key, surrogate);
  return rowver.as_owner(tbl, 'erase', jsonb_build_object('key', key, 'surrogate', surrogate));
end $$;

create or replace function rowver.erase_key(tbl regclass, key jsonb, surrogate jsonb) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  r    rowver.versioned := rowver.registered(tbl);
  hist text := format('%I.%I', rowver.schema_of(tbl), r.history_name);
  t    text := rowver.qualified(tbl);
  k    text := rowver.key_join_sql(tbl, r.key_columns, 'x', 'k');
  v    bigint;
  n    bigint;
begin
  if jsonb_typeof(surrogate) = 'null' then
    surrogate := null;
  end if;
  perform set_config('rowver.message', 'erase', true);  -- the message names no key
  v := rowver.xact_version();
  -- the current row goes through the capture triggers (a state and a tombstone at v) ...
  execute format('delete from %s x using jsonb_populate_record(null::%s, $1) k where %s', t, t, k) using key;
  -- ... then every stored state of the key goes, the tombstones' data with it
  execute format('delete from %s x using jsonb_populate_record(null::%s, $1) k where %s', hist, t, k) using key;
  get diagnostics n = row_count;
  execute format('insert into %s (%s, rv_version, rv_until, rv_deleted) select %s, $2, $2, true
                    from jsonb_populate_record(null::%s, $1) k',
                 hist, (select string_agg(format('%I', c), ', ') from unnest(r.key_columns) c),
                 (select string_agg(format('k.%I', c), ', ') from unnest(r.key_columns) c), t)
    using coalesce(surrogate, key), v;
  perform rowver.record_change(v, tbl, 1, 0, 0);
  return n;
end $$;

grant execute on function rowver.before_horizon(text, bigint), rowver.as_owner(regclass, text, jsonb),
  rowver.admin_op(regclass, text, jsonb), rowver.prune(regclass, text), rowver.prune_history(regclass, bigint),
  rowver.prune_changesets(), rowver.erase(regclass, jsonb, jsonb), rowver.erase_key(regclass, jsonb, jsonb)
to public;
-- 0.1 granted it to rowver_admin by name; PUBLIC's grant covers that role now (an upgrade
-- leaves the catalog as a fresh install makes it: tests/test_upgrade.py)
revoke execute on function rowver.prune_changesets() from rowver_admin;

reset search_path;
reset role;
