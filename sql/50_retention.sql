-- The two recorded, privileged exceptions to "history is append-only": retention (prune)
-- and legal erasure (erase). Both need rowver_admin, both leave a changeset, and both are
-- the documented exceptions to repeatable time travel.

set role rowver_owner;

-- Raised by T__as_of for a version whose history was pruned.
create or replace function rowver.before_horizon(tbl text, v bigint) returns boolean
language plpgsql stable
as $$
begin
  raise exception 'rowver: % was pruned before version %; it cannot be read as of %',
    tbl, (select x.horizon from rowver.retention x join rowver.versioned r on r.id = x.table_id
           where r.relid = tbl::regclass), v
    using errcode = '22023', hint = 'read a later version, or a tagged one';
end $$;

create or replace function rowver.require_admin(what text) returns void
language plpgsql stable
as $$
begin
  if not pg_catalog.pg_has_role(current_user, 'rowver_admin', 'MEMBER') then
    raise exception 'rowver: % needs the rowver_admin role', what using errcode = '42501';
  end if;
end $$;

-- Remove tbl's history that no version at or after `before` (and no tagged version) can
-- read. Recorded as its own changeset; old changesets nothing refers to any more go too.
-- Returns the number of history rows removed.
create or replace function rowver.prune(tbl regclass, before text) returns bigint
language plpgsql
as $$
declare
  r    rowver.versioned := rowver.registered(tbl);
  h    bigint := rowver.resolve(before);
  kept bigint[];
  hist text := format('%I.%I', rowver.schema_of(tbl), r.history_name);
  n    bigint;
  v    bigint;
  s    text;
begin
  perform rowver.require_admin('prune');
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
  -- the as-of function learns the horizon
  foreach s in array rowver.object_ddl(tbl, r.key_columns, r.ignore_columns, r.triggers, r.history_name,
                                       r.versions_name, r.as_of_name, r.stamp_name, r.capture_name) loop
    execute s;
  end loop;
  update rowver.versioned x set definition_hash = md5(array_to_string(rowver.object_ddl(
    tbl, r.key_columns, r.ignore_columns, r.triggers, r.history_name, r.versions_name, r.as_of_name,
    r.stamp_name, r.capture_name), E';\n')) where x.id = r.id;

  v := rowver.xact_version();
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('prune %s before %s: %s history rows', tbl, h, n), true);
  end if;
  perform rowver.record_change(v, tbl, n);
  perform rowver.prune_changesets();
  return n;
end $$;

-- Changesets below every table's horizon that no row and no tag refers to. Runs as the
-- caller (rowver_admin, a member of rowver_owner), who must be able to read every
-- versioned table to know which changesets they still name.
create or replace function rowver.prune_changesets() returns bigint
language plpgsql
as $$
declare
  horizon bigint := (select coalesce(min(coalesce(x.horizon, 0)), 0)
                       from rowver.versioned r left join rowver.retention x on x.table_id = r.id);
  r       rowver.versioned;
  sch     name;
  n       bigint;
begin
  create temp table rv_unused on commit drop as
    select c.version from rowver.changeset c
     where c.version < horizon and not exists (select from rowver.tag t where t.version = c.version);
  for r in select * from rowver.versioned loop
    sch := rowver.schema_of(r.relid);
    execute format('delete from rv_unused u where exists (select from %I.%I v where v.rv_version = u.version or v.rv_until = u.version)',
                   sch, r.versions_name);
  end loop;
  -- the row counts of what goes are kept per table, so check can still account for every row
  -- (every table has a retention row here: the horizon is the lowest of them all)
  update rowver.retention x
     set net = x.net + d.net
    from (select c.table_id, case when bool_and(c.net is not null) then sum(c.net) end as net
            from rowver.changeset_table c join rv_unused u on u.version = c.version
           group by c.table_id) d
   where x.table_id = d.table_id;
  delete from rowver.changeset_table c using rv_unused u where c.version = u.version;
  delete from rowver.changeset c using rv_unused u where c.version = u.version;
  get diagnostics n = row_count;
  drop table rv_unused;
  return n;
end $$;

-- Legal erasure: remove one key's data from tbl and from every version in its history,
-- leaving a changeset and tombstones that carry no data; with `surrogate` (the key's
-- columns, e.g. {"email": "erased-1"}), not even the key. Every other key's history is
-- untouched. Returns the number of history rows removed.
create or replace function rowver.erase(tbl regclass, key jsonb, surrogate jsonb default null) returns bigint
language plpgsql
as $$
declare
  r    rowver.versioned := rowver.registered(tbl);
  hist text := format('%I.%I', rowver.schema_of(tbl), r.history_name);
  t    text := rowver.qualified(tbl);
  k    text := rowver.key_join_sql(r.key_columns, 'x', 'k');
  v    bigint;
  n    bigint;
  missing name;
begin
  perform rowver.require_admin('erase');
  select c into missing from unnest(r.key_columns) c where not (key ? c) or (surrogate is not null and not (surrogate ? c));
  if found or jsonb_typeof(key) <> 'object' then
    raise exception 'rowver: a key of % needs the columns (%)', tbl, array_to_string(r.key_columns, ', ')
      using errcode = '22023';
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
  perform rowver.record_change(v, tbl, 1);
  return n;
end $$;

grant execute on function rowver.before_horizon(text, bigint), rowver.require_admin(text),
  rowver.prune(regclass, text), rowver.erase(regclass, jsonb, jsonb)
to public;
grant execute on function rowver.prune_changesets() to rowver_admin;

reset role;
