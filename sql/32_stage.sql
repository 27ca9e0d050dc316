-- Staged changesets (issue 22): a sync, upsert or delete computed now, kept under a name for a
-- human look (rowver diff TABLE --staged NAME), and published later as one changeset, unless a
-- key it stages changed in the table after the version it was computed against.
--
-- Who may do what: a role that may write T (INSERT, UPDATE or DELETE) stages a write to T; its
-- staged rows are read by the role that staged them, T's owner, and roles with SELECT on T when
-- T has no row-level security (a tenant never reads another tenant's staged rows). Publishing
-- and dropping take one who may read the stage and also staged it, owns T or may write T.
-- Publishing writes T as the caller, through rowver.apply_rows, so it needs the privileges the
-- writes need: a stage grants nothing. The catalog is written only by the SECURITY DEFINER
-- functions below, which touch rowver's tables alone.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- bodies below are bound now, whatever a caller's path

-- A staged write: what it is, against which version (base: head when its diff was computed;
-- every change at or below it is in the diff), the columns its rows give, its counts, and its
-- changeset's message and author (claims, as on rowver.changeset).
create table if not exists rowver.staged (
  name       text primary key,
  table_id   integer not null references rowver.versioned on delete cascade,
  base       bigint not null,
  mode       text not null check (mode in ('sync', 'upsert', 'delete')),
  columns    name[] not null,
  guards     jsonb,           -- the call's limits, judged when it was staged
  message    text,
  author     text,
  inserted   bigint not null,
  updated    bigint not null,
  deleted    bigint not null,
  unchanged  bigint not null,
  db_user    name not null default session_user,
  db_role    name not null,
  created_at timestamptz not null default pg_catalog.clock_timestamp()
);

-- Its rows, one per key it changes: op insert or update with the row (the staged columns, as
-- JSON), or delete (row null).
create table if not exists rowver.staged_row (
  stage text not null references rowver.staged on delete cascade on update cascade,
  op    text not null check (op in ('insert', 'update', 'delete')),
  key   jsonb not null,
  "row" jsonb,
  primary key (stage, key)
);

-- A stage name: a letter or _ first, then letters, digits, _ . - (at most 100).
create or replace function rowver.check_stage_name(name text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp
as $$
begin
  if name is null or name !~ '^[[:alpha:]_][[:alnum:]_.-]{0,99}$' then
    raise exception 'rowver: invalid stage name %', coalesce(quote_literal(name), 'NULL') using errcode = '22023',
      hint = 'a stage name starts with a letter or _, then letters, digits, _ . or - (at most 100 characters)';
  end if;
end $$;

-- Whether role who may read stage's rows (see the top of this file).
create or replace function rowver.may_read_stage(stage text, who name) returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select from rowver.staged s join rowver.versioned v on v.id = s.table_id
      join pg_catalog.pg_class c on c.oid = v.relid
     where s.name = stage
       and (coalesce(pg_catalog.pg_has_role(who, (select r.oid from pg_catalog.pg_roles r where r.rolname = s.db_role),
                                            'USAGE'), false)
            or pg_catalog.pg_has_role(who, c.relowner, 'USAGE')
            or (pg_catalog.has_table_privilege(who, v.relid, 'SELECT') and not c.relrowsecurity)))
$$;

-- Whether role who may publish or drop stage: it may read it, and staged it, owns its table or
-- may write its table.
create or replace function rowver.may_change_stage(stage text, who name) returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select rowver.may_read_stage(stage, who) and exists (
    select from rowver.staged s join rowver.versioned v on v.id = s.table_id
     where s.name = stage
       and (s.db_role = who or pg_catalog.has_table_privilege(who, v.relid, 'INSERT, UPDATE, DELETE')))
$$;

alter table rowver.staged enable row level security;
drop policy if exists read on rowver.staged;
create policy read on rowver.staged for select using (true);
alter table rowver.staged_row enable row level security;
drop policy if exists read on rowver.staged_row;
-- (an uncorrelated subquery: PostgreSQL runs it once per statement, as an InitPlan, and judges each
-- stage once, where a call per row tripled the cost of reading 100,000 staged rows)
create policy read on rowver.staged_row for select
  using (stage = any (array(select s.name from rowver.staged s where rowver.may_read_stage(s.name, current_user))));
revoke all on rowver.staged, rowver.staged_row from public;
grant select on rowver.staged, rowver.staged_row to public;

-- Keep a staged write (rowver.stage_write computes it; called alone, a role stages only its own
-- claims: who staged it is the server's account). An existing name is refused unless replace,
-- which takes the right to drop it.
create or replace function rowver.stage_keep(name text, tbl regclass, base bigint, mode text, cols name[],
                                             guards jsonb, counts bigint[], staged_rows jsonb, replace boolean)
returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  who name := rowver.session_role();
  r   rowver.versioned := rowver.registered(tbl);
begin
  perform rowver.check_stage_name(name);
  if not has_table_privilege(who, tbl, 'INSERT, UPDATE, DELETE') then
    raise exception 'rowver: role % may not write %, so it may not stage a write to it', who, tbl
      using errcode = '42501';
  end if;
  if base is null or base > rowver.head() then
    raise exception 'rowver: a stage is computed against a version at or below head, not %', base
      using errcode = 'RV004';
  end if;
  perform from rowver.staged s where s.name = stage_keep.name for update;
  if found then
    if not replace then
      raise exception 'rowver: stage % already exists', quote_literal(name) using errcode = '23505',
        hint = 'replace it (replace=True), publish it (rowver publish) or drop it (rowver unstage)';
    elsif not rowver.may_change_stage(name, who) then
      raise exception 'rowver: role % may not replace stage %', who, quote_literal(name) using errcode = '42501';
    end if;
    delete from rowver.staged s where s.name = stage_keep.name;
  end if;
  insert into rowver.staged (name, table_id, base, mode, columns, guards, message, author,
                             inserted, updated, deleted, unchanged, db_role)
  values (name, r.id, base, mode, cols, guards, nullif(current_setting('rowver.message', true), ''),
          nullif(current_setting('rowver.author', true), ''), counts[1], counts[2], counts[3], counts[4], who);
  insert into rowver.staged_row (stage, op, key, "row")
  select name, e ->> 'op', e -> 'key', nullif(e -> 'row', 'null'::jsonb) from jsonb_array_elements(staged_rows) e;
exception when unique_violation then  -- (staged concurrently under the same name)
  raise exception 'rowver: stage % already exists', quote_literal(name) using errcode = '23505';
end $$;

-- Stage a write: rows staged in source (rowver.stage), applied to tbl as mode (sync, upsert or
-- delete) by rowver.apply_rows, which computes the diff and judges guards but writes nothing;
-- the diff is kept under name. Takes no version. The diff is against head at the call, so it
-- runs in READ COMMITTED, before this transaction writes anything versioned.
create or replace function rowver.stage_write(tbl regclass, source regclass, mode text, guards jsonb, name text,
                                              replace boolean default false,
                                              out inserted bigint, out updated bigint,
                                              out deleted bigint, out unchanged bigint)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  keys name[] := (rowver.registered(tbl)).key_columns;
  base bigint;
  cols name[];
  staged_rows jsonb;
begin
  perform rowver.check_stage_name(name);
  if mode is null or mode not in ('sync', 'upsert', 'delete') then
    raise exception 'rowver: a stage holds a sync, upsert or delete, not %', coalesce(quote_literal(mode), 'NULL')
      using errcode = '22023';
  end if;
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'rowver: staging runs in READ COMMITTED (its diff is against head when it runs)'
      using errcode = '0A000';
  end if;
  if rowver.current_version() is not null then
    raise exception 'rowver: stage % before this changeset writes, or in a changeset of its own', quote_literal(name)
      using errcode = '0A000', hint = 'a stage is a diff against committed versions';
  end if;
  base := rowver.head();  -- its own statement: the diff below sees every version up to it
  select * into inserted, updated, deleted, unchanged
    from rowver.apply_rows(tbl, source, mode, null, coalesce(guards, '{}'::jsonb) || '{"plan": true}'::jsonb);
  select array_agg(a.attname order by a.attnum) into cols from pg_attribute a
   where a.attrelid = source and a.attnum > 0 and not a.attisdropped and a.attname <> 'rv_version';
  execute format('select coalesce(jsonb_agg(jsonb_build_object(''op'', d.rv_op, ''key'', jsonb_build_object(%s),'
                 ' ''row'', case when d.rv_op <> ''delete'' then to_jsonb(d) - ''rv_op'' end) order by %s), ''[]'')'
                 ' from pg_temp.rv_diff d',
                 (select string_agg(format('%L, d.%I', k, k), ', ') from unnest(keys) k),
                 (select string_agg(format('d.%I', k), ', ') from unnest(keys) k))
    into staged_rows;
  perform rowver.stage_keep(name, tbl, base, mode, cols, guards, array[inserted, updated, deleted, unchanged],
                            staged_rows, replace);
end $$;

-- The stage name, locked until the transaction ends, for a role that may publish it.
create or replace function rowver.stage_lock(name text) returns rowver.staged
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  s rowver.staged;
begin
  perform rowver.check_stage_name(name);
  select * into s from rowver.staged x where x.name = stage_lock.name for update;
  if not found then
    raise exception 'rowver: no stage %', quote_literal(name) using errcode = 'RV010',
      hint = 'rowver stages lists them';
  elsif not rowver.may_change_stage(name, rowver.session_role()) then
    raise exception 'rowver: role % may not publish or drop stage %', rowver.session_role(), quote_literal(name)
      using errcode = '42501';
  end if;
  return s;
end $$;

-- Drop a stage (needs what publishing needs, but not the table's privileges its writes need);
-- returns its table.
create or replace function rowver.unstage(name text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  s rowver.staged := rowver.stage_lock(name);
begin
  delete from rowver.staged x where x.name = s.name;
  return (select v.relid::text from rowver.versioned v where v.id = s.table_id);
end $$;

-- The staged keys of tbl (pg_temp.rv_staged_keys) that changed after version base: any
-- version of the key written or superseded above base, but by own (the publishing changeset).
-- {"count": n, "keys": [up to 5 keys]}.
create or replace function rowver.stage_conflicts(tbl regclass, base bigint, own bigint) returns jsonb
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  keys name[] := (rowver.registered(tbl)).key_columns;
  hits jsonb;
begin
  execute format(
    'select jsonb_build_object(''count'', count(*), ''keys'', coalesce(jsonb_agg(k order by k) filter (where n <= 5), ''[]''))'
    '  from (select k, row_number() over (order by k) n from (select distinct jsonb_build_object(%s) k'
    '          from %s v join pg_temp.rv_staged_keys s on %s'
    '         where (v.rv_version > $1 and v.rv_version is distinct from $2)'
    '            or (v.rv_until > $1 and v.rv_until is distinct from $2)) changed) numbered',
    (select string_agg(format('%L, v.%I', k, k), ', ') from unnest(keys) k),
    rowver.versions_sql(tbl), rowver.key_join_sql(tbl, keys, 'v', 's'))
    into hits using base, own;
  return hits;
end $$;

-- One error (SQLSTATE RV002) naming the keys of stage s changed underneath, if any.
create or replace function rowver.refuse_stale_stage(s rowver.staged, tbl regclass, own bigint) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  hits jsonb := rowver.stage_conflicts(tbl, s.base, own);
begin
  if (hits ->> 'count')::bigint > 0 then
    raise exception 'rowver: stage % was computed against version % of %, and % of its keys changed since: %; nothing written',
      quote_literal(s.name), s.base, tbl, hits ->> 'count',
      (select string_agg(e::text, ', ') from jsonb_array_elements(hits -> 'keys') e)
      using errcode = 'RV002',
      detail = jsonb_build_object('stage', s.name, 'table', tbl::text, 'base', s.base, 'count', hits -> 'count',
                                  'keys', hits -> 'keys')::text,
      hint = 'look again (rowver diff --staged), stage it again, or drop it (rowver unstage)';
  end if;
end $$;

-- Publish a stage as the caller: its rows are written to its table as one changeset (the
-- caller's transaction; the stage's message and author unless rowver.message/author are set),
-- then the stage is dropped. Refused (RV002, nothing written) when a staged key changed after
-- the stage's base version: checked before writing, and again after (a writer that committed
-- in between shows there), so an intervening change is never overwritten. Guards were judged
-- when it was staged.
create or replace function rowver.publish(name text, out inserted bigint, out updated bigint,
                                          out deleted bigint, out unchanged bigint, out version bigint)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  s    rowver.staged := rowver.stage_lock(name);
  tbl  regclass := (select v.relid from rowver.versioned v where v.id = s.table_id);
  keys name[] := (rowver.registered(tbl)).key_columns;
  t    text := rowver.qualified(tbl);
  n    bigint;
begin
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', coalesce(s.message, format('publish stage %s', s.name)), true);
  end if;
  if coalesce(current_setting('rowver.author', true), '') = '' and s.author is not null then
    perform set_config('rowver.author', s.author, true);
  end if;
  if to_regclass('pg_temp.rv_staged_keys') is not null then  -- (no notice when there is none)
    drop table pg_temp.rv_staged_keys;
  end if;
  execute format('create temp table rv_staged_keys on commit drop as select %s from rowver.staged_row x'
                 ' cross join lateral jsonb_populate_record(null::%s, x.key) j where x.stage = %L',
                 (select string_agg(format('j.%I', k), ', ') from unnest(keys) k), t, s.name);
  perform rowver.refuse_stale_stage(s, tbl, null);
  inserted := 0; updated := 0; deleted := 0; unchanged := s.unchanged;
  if exists (select from rowver.staged_row x where x.stage = s.name and x.op <> 'delete') then
    perform rowver.stage(tbl, s.columns);
    execute format('insert into pg_temp.rv_stage (%s) select %s from rowver.staged_row x'
                   ' cross join lateral jsonb_populate_record(null::%s, x."row") j where x.stage = %L and x.op <> ''delete''',
                   (select string_agg(format('%I', c), ', ') from unnest(s.columns) c),
                   (select string_agg(format('j.%I', c), ', ') from unnest(s.columns) c), t, s.name);
    select a.inserted, a.updated into inserted, updated
      from rowver.apply_rows(tbl, 'pg_temp.rv_stage'::regclass, 'upsert') a;
  end if;
  if exists (select from rowver.staged_row x where x.stage = s.name and x.op = 'delete') then
    perform rowver.stage(tbl, keys);
    execute format('insert into pg_temp.rv_stage select %s from rowver.staged_row x'
                   ' cross join lateral jsonb_populate_record(null::%s, x.key) j where x.stage = %L and x.op = ''delete''',
                   (select string_agg(format('j.%I', k), ', ') from unnest(keys) k), t, s.name);
    select a.deleted into deleted from rowver.apply_rows(tbl, 'pg_temp.rv_stage'::regclass, 'delete') a;
  end if;
  version := rowver.current_version();
  perform rowver.refuse_stale_stage(s, tbl, version);
  perform rowver.unstage(s.name);
end $$;

-- What publishing stage name would do to tbl, as rowver.diff_sql shapes a diff (op, the key
-- columns, changed, the columns as of the stage's base version, then as they would be): run by
-- the client, with its privileges (every name in it qualified).
create or replace function rowver.staged_diff_sql(tbl regclass, name text) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r rowver.versioned := rowver.registered(tbl);
  s rowver.staged;
begin
  perform rowver.check_stage_name(name);
  select * into s from rowver.staged x where x.name = staged_diff_sql.name;
  if not found then
    raise exception 'rowver: no stage %', quote_literal(name) using errcode = 'RV010', hint = 'rowver stages lists them';
  elsif s.table_id <> r.id then
    raise exception 'rowver: stage % is of %, not %', quote_literal(name),
      (select v.relid::text from rowver.versioned v where v.id = s.table_id), tbl using errcode = 'RV010';
  elsif not rowver.may_read_stage(name, current_user) then
    raise exception 'rowver: role % may not read stage %', current_user, quote_literal(name) using errcode = '42501';
  end if;
  return format(
    'select case x.op when ''insert'' then ''added'' when ''delete'' then ''removed'' else ''changed'' end as op,
            %s,
            array(select e.key from pg_catalog.jsonb_each(rv_j.a) e where not %s order by e.key) as changed,
            %s
       from rowver.staged_row x
       cross join lateral pg_catalog.jsonb_populate_record(null::%s, x.key) rv_k
       left join lateral (select * from %s y where %s limit 1) rv_a on true
       left join lateral pg_catalog.jsonb_populate_record(null::%s,
                   coalesce(pg_catalog.to_jsonb(rv_a), ''{}''::pg_catalog.jsonb) operator(pg_catalog.||) x."row"
                 ) rv_b on x.op operator(pg_catalog.<>) ''delete''
       cross join lateral (select %s as a, %s as b offset 0) rv_j
      where x.stage operator(pg_catalog.=) %L
      order by %s',
    (select string_agg(format('rv_k.%I', k), ', ' order by o) from unnest(r.key_columns) with ordinality u(k, o)),
    rowver.same_sql('jsonb'::regtype, 'e.value', 'rv_j.b operator(pg_catalog.->) e.key'),
    (select string_agg(format('%s.%I', side, c.name), ', ' order by side, c.pos)
       from rowver.row_columns(tbl) c, unnest(array['rv_a', 'rv_b']) side where c.name <> 'rv_version'),
    rowver.qualified(tbl), rowver.as_of_sql(tbl, s.base), rowver.key_join_sql(tbl, r.key_columns, 'y', 'rv_k'),
    rowver.qualified(tbl), rowver.jsonb_row_sql('rv_a'), rowver.jsonb_row_sql('rv_b'), s.name,
    (select string_agg(format('rv_k.%I', k), ', ' order by o) from unnest(r.key_columns) with ordinality u(k, o)));
end $$;

grant execute on function rowver.check_stage_name(text), rowver.may_read_stage(text, name),
  rowver.may_change_stage(text, name), rowver.stage_keep(text, regclass, bigint, text, name[], jsonb, bigint[], jsonb, boolean),
  rowver.stage_write(regclass, regclass, text, jsonb, text, boolean), rowver.stage_lock(text), rowver.unstage(text),
  rowver.stage_conflicts(regclass, bigint, bigint), rowver.refuse_stale_stage(rowver.staged, regclass, bigint),
  rowver.publish(text), rowver.staged_diff_sql(regclass, text)
to public;

reset search_path;
reset role;
