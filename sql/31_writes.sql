-- Writing rows of versioned tables: set-based loads from a staging table, guards, revert.
-- Every write goes through the capture triggers, so these functions never write history
-- themselves; they run as the caller, with nothing but pg_catalog on their search_path (SQL
-- they return for a client to run names every operator and function in full). They call the
-- read side (30_reads.sql: registered, resolve_for, as_of_sql); named stages are 32_stage.sql.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- The columns the write layer may write (not generated ones), and whether each takes JSON.
create or replace function rowver.writable_columns(tbl regclass) returns table (name name, is_json boolean)
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select p.name, p.history_type_sql in ('json', 'jsonb')
    from rowver.payload_columns(tbl) p
    join pg_attribute a on a.attrelid = tbl and a.attname = p.name
   where a.attgenerated = ''
   order by p.attnum
$$;

-- A temporary staging table shaped like the given columns of tbl, dropped at commit.
create or replace function rowver.stage(tbl regclass, cols name[]) returns regclass
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  bad name;
begin
  perform rowver.registered(tbl);
  select c into bad from unnest(cols) c
   where not exists (select from rowver.payload_columns(tbl) p where p.name = c);
  if found then
    raise exception 'rowver: % has no column %', tbl, quote_ident(bad) using errcode = '42703';
  end if;
  select c into bad from unnest(cols) c
    join rowver.payload_columns(tbl) p on p.name = c where not p.compared and c in
      (select a.attname from pg_catalog.pg_attribute a where a.attrelid = tbl and a.attgenerated <> '');
  if found then
    raise exception 'rowver: column % of % is generated and cannot be written', quote_ident(bad), tbl
      using errcode = '428C9';
  end if;
  if to_regclass('pg_temp.rv_stage') is not null then  -- (no notice when there is none)
    drop table pg_temp.rv_stage;
  end if;
  execute format('create temp table rv_stage on commit drop as select %s from %s with no data',
                 (select string_agg(format('%I', c), ', ') from unnest(cols) c), rowver.qualified(tbl));
  return 'pg_temp.rv_stage'::regclass;
end $$;

-- Rows staged straight from a file (rowver load) must each hold a whole key, and no key twice:
-- one error naming the first such records, counted from 1 in the order they were staged (COPY
-- keeps it). Frames and dicts are checked before they are sent (rowver._frames.check_rows).
create or replace function rowver.check_staged(tbl regclass, stage regclass) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  keys  name[] := (rowver.registered(tbl)).key_columns;
  key   text := format('jsonb_build_object(%s)', (select string_agg(format('%L, %I', k, k), ', ') from unnest(keys) k));
  found record;
begin
  execute format('select n, k from (select row_number() over (order by ctid) n, %s k, %s nulls from %s) s
                   where nulls limit 1',
                 key, (select string_agg(format('%I is null', k), ' or ') from unnest(keys) k), stage) into found;
  if found is not null then
    raise exception 'rowver: record % has no whole key for % (%)', found.n, tbl, found.k
      using errcode = 'RV009', hint = format('every record needs the key columns (%s)', array_to_string(keys, ', '));
  end if;
  execute format('select k, array_agg(n order by n) ns from (select row_number() over (order by ctid) n, %s k from %s) s
                   group by k having count(*) > 1 order by min(n) limit 1', key, stage) into found;
  if found is not null then
    raise exception 'rowver: records % hold the same key of % (%)', array_to_string(found.ns[1:2], ' and '), tbl, found.k
      using errcode = 'RV009';
  end if;
end $$;

-- A guarded write (rowver._guards) judged before it writes, so a refusal allocates no version:
-- pg_temp.rv_diff holds the keys it would insert, update and delete (rv_op), total the rows
-- staged. guards: {"max_deleted" | "max_changed": {"rows": n} | {"fraction": f}, "expect_rows":
-- [lo, hi]} (null: open); fractions are of the rows tbl holds before (one count of tbl), changed
-- is updated + deleted, expect_rows bounds the rows after. A refusal is one error, SQLSTATE
-- RV001, naming the check, the counts and up to 5 keys, with them as JSON in its detail.
create or replace function rowver.check_guards(tbl regclass, mode text, guards jsonb, total bigint) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  keys    name[] := (rowver.registered(tbl)).key_columns;
  ins     bigint;
  upd     bigint;
  del     bigint;
  before  bigint;
  after   bigint;
  lim     record;
  lo      bigint := (guards -> 'expect_rows' ->> 0)::bigint;
  hi      bigint := (guards -> 'expect_rows' ->> 1)::bigint;
  failed  text;
  said    text;
  ops     text[];
  samples jsonb;
  counts  jsonb;
begin
  select count(*) filter (where d.rv_op = 'insert'), count(*) filter (where d.rv_op = 'update'),
         count(*) filter (where d.rv_op = 'delete')
    into ins, upd, del from pg_temp.rv_diff d;
  execute format('select count(*) from %s', rowver.qualified(tbl)) into before;
  after := before + ins - del;
  for lim in select v.name, v.n, v.word, v.ops, guards -> v.name as g
               from (values ('max_deleted', del, 'deleted', array['delete']),
                            ('max_changed', upd + del, 'changed', array['update', 'delete'])) v(name, n, word, ops)
              where guards -> v.name is not null loop
    if (lim.g ? 'rows' and lim.n > (lim.g ->> 'rows')::bigint)
       or (lim.g ? 'fraction' and lim.n > (lim.g ->> 'fraction')::numeric * before) then
      failed := format('%s=%s', lim.name, coalesce(lim.g ->> 'rows', lim.g ->> 'fraction'));
      said := format('%s rows %s, more than %s', lim.n, lim.word,
                     case when lim.g ? 'rows' then format('%s rows', lim.g ->> 'rows')
                          else format('%s%% of the %s rows it held before',
                                      trim_scale((lim.g ->> 'fraction')::numeric * 100), before) end);
      ops := lim.ops;
      exit;
    end if;
  end loop;
  if failed is null and (after < lo or after > hi) then
    failed := format('expect_rows=%s:%s', lo, hi);
    said := format('%s rows after it, outside %s:%s', after, lo, hi);
    ops := case when after < lo then array['delete'] else array['insert'] end;
  end if;
  if failed is null then
    return;
  end if;
  execute format('select coalesce(jsonb_agg(s.k), ''[]'') from (select jsonb_build_object(%s) k from pg_temp.rv_diff d'
                 ' where d.rv_op = any ($1) order by %s limit 5) s',
                 (select string_agg(format('%L, d.%I', c, c), ', ') from unnest(keys) c),
                 (select string_agg(format('d.%I', c), ', ') from unnest(keys) c))
    into samples using ops;
  counts := jsonb_build_object('inserted', ins, 'updated', upd, 'deleted', del,
                               'unchanged', case when mode = 'delete' then total - del else total - ins - upd end,
                               'rows_before', before, 'rows_after', after);
  raise exception 'rowver: check % refused the % of %: % (% inserted, % updated, % deleted, % unchanged; % rows before, % after)%; the changeset is rolled back, nothing written',
    failed, mode, tbl, said, ins, upd, del, counts ->> 'unchanged', before, after,
    case when jsonb_array_length(samples) > 0
         then format('; %s keys include %s', case ops[1] when 'insert' then 'inserted' when 'update' then 'changed' else 'deleted' end,
                     (select string_agg(e::text, ', ') from jsonb_array_elements(samples) e))
         else '' end
    using errcode = 'RV001', detail = jsonb_build_object('check', failed, 'table', tbl::text, 'counts', counts,
                                                         'keys', samples)::text;
end $$;

-- Apply rows to tbl, set-based: from a staging relation, or (source null) from tbl as of
-- version `at`. Modes: insert, upsert, delete, sync (upsert + delete keys not in source).
-- Rows that are unchanged are not touched (NULL equals NULL, NaN equals NaN). Returns the
-- counts. guards (null: none): limits judged after the diff, before any write (check_guards);
-- with "plan": true in guards (sync, upsert, delete), the diff is left in pg_temp.rv_diff and
-- nothing is written (staging: sql/32_stage.sql).
create or replace function rowver.apply_rows(tbl regclass, source regclass, mode text, at bigint, guards jsonb,
                                             out inserted bigint, out updated bigint,
                                             out deleted bigint, out unchanged bigint)
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  r      rowver.versioned := rowver.registered(tbl);
  t      text := rowver.qualified(tbl);
  src    text;
  cols   name[];
  vals   name[];
  total  bigint;
  ovr    text := '';
  k      text;
  col_list text;
  bad    name;
begin
  if mode not in ('insert', 'upsert', 'delete', 'sync') then
    raise exception 'rowver: unknown load mode %', quote_literal(mode) using errcode = '22023';
  end if;
  -- tables enabled with triggers => false capture only what the write layer writes
  perform set_config('rowver.capture', 'on', true);
  if source is null then
    src := rowver.as_of_sql(tbl, at);
    select array_agg(p.name order by p.attnum) into cols
      from rowver.payload_columns(tbl) p
      join pg_catalog.pg_attribute a on a.attrelid = tbl and a.attname = p.name
     where a.attgenerated = '';
  else
    src := rowver.qualified(source);
    select array_agg(a.attname order by a.attnum) into cols
      from pg_catalog.pg_attribute a
     where a.attrelid = source and a.attnum > 0 and not a.attisdropped and a.attname <> 'rv_version';
    select c into bad from unnest(cols) c
     where not exists (select from rowver.payload_columns(tbl) p where p.name = c);
    if found then
      raise exception 'rowver: % has no column %', tbl, quote_ident(bad) using errcode = '42703';
    end if;
  end if;
  if not (r.key_columns <@ cols) then
    raise exception 'rowver: rows for % must include the key columns (%)', tbl,
      array_to_string(r.key_columns, ', ') using errcode = '42703';
  end if;
  vals := array(select c from unnest(cols) c where c <> all (r.key_columns));
  if exists (select from pg_catalog.pg_attribute a
              where a.attrelid = tbl and a.attname = any (cols) and a.attidentity = 'a') then
    ovr := 'overriding system value';
  end if;
  execute format('select count(*) from %s', src) into total;
  inserted := 0; updated := 0; deleted := 0;
  k := rowver.key_join_sql(tbl, r.key_columns, 't', 's');
  col_list := (select string_agg(format('%I', c), ', ') from unnest(cols) c);

  if guards is not null and mode in ('insert', 'delete') then
    -- the keys it would insert (every staged row) or delete (those tbl holds), for the guards
    if to_regclass('pg_temp.rv_diff') is not null then  -- (no notice when there is none)
      drop table pg_temp.rv_diff;
    end if;
    execute format('create temp table rv_diff on commit drop as select %s, %L::text as rv_op from %s s%s',
                   (select string_agg(format('s.%I', c), ', ') from unnest(r.key_columns) c), mode, src,
                   case when mode = 'delete' then format(' where exists (select from %s t where %s)', t, k) else '' end);
    if guards - 'plan' <> '{}'::jsonb then
      perform rowver.check_guards(tbl, mode, guards, total);
    end if;
    if guards ? 'plan' and mode = 'delete' then  -- staging (sql/32_stage.sql): the diff alone, nothing written
      deleted := (select count(*) from pg_temp.rv_diff);
      unchanged := total - deleted;
      return;
    end if;
  end if;

  if mode = 'insert' then
    execute format('insert into %s (%s) %s select %s from %s s', t, col_list, ovr,
                   (select string_agg(format('s.%I', c), ', ') from unnest(cols) c), src);
    get diagnostics inserted = row_count;
    unchanged := total - inserted;
    return;
  elsif mode = 'delete' then
    execute format('delete from %s t using %s s where %s', t, src, k);
    get diagnostics deleted = row_count;
    unchanged := total - deleted;
    return;
  end if;

  -- Diff first, write after: one join finds the keys that are new, changed, or (sync)
  -- missing, before anything is written, so the version is allocated as late as possible,
  -- not at all when nothing changed, and the writes below touch only the rows that change.
  if to_regclass('pg_temp.rv_diff') is not null then  -- (no notice when there is none)
    drop table pg_temp.rv_diff;
  end if;
  execute format(
    'create temp table rv_diff on commit drop as
     select %s, case when t.%I is null then ''insert'' when s.%I is null then ''delete'' else ''update'' end as rv_op
       from %s s %s join %s t on %s
      where t.%I is null or s.%I is null or not (%s)',
    (select string_agg(case when c = any (r.key_columns) then format('coalesce(s.%I, t.%I) as %I', c, c, c)
                            else format('s.%I', c) end, ', ') from unnest(cols) c),
    r.key_columns[1], r.key_columns[1],
    src, case when mode = 'sync' then 'full' else 'left' end, t, k,
    r.key_columns[1], r.key_columns[1],
    coalesce((select string_agg(rowver.same_value_sql(c, a.atttypid, 't', 's'), ' and ')
                from unnest(vals) c join pg_catalog.pg_attribute a on a.attrelid = tbl and a.attname = c),
             'true'));
  if guards is not null and guards - 'plan' <> '{}'::jsonb then
    perform rowver.check_guards(tbl, mode, guards, total);
  end if;
  if guards ? 'plan' then  -- staging (sql/32_stage.sql): the diff alone in pg_temp.rv_diff, nothing written
    select count(*) filter (where d.rv_op = 'insert'), count(*) filter (where d.rv_op = 'update'),
           count(*) filter (where d.rv_op = 'delete')
      into inserted, updated, deleted from pg_temp.rv_diff d;
    unchanged := total - inserted - updated;
    return;
  end if;
  k := rowver.key_join_sql(tbl, r.key_columns, 't', 'd');

  if exists (select from pg_temp.rv_diff d where d.rv_op = 'delete') then
    execute format('delete from %s t using pg_temp.rv_diff d where d.rv_op = ''delete'' and %s', t, k);
    get diagnostics deleted = row_count;
  end if;
  if exists (select from pg_temp.rv_diff d where d.rv_op = 'update') then
    execute format('update %s t set %s from pg_temp.rv_diff d where d.rv_op = ''update'' and %s', t,
                   (select string_agg(format('%I = d.%I', c, c), ', ') from unnest(vals) c), k);
    get diagnostics updated = row_count;
  end if;
  if exists (select from pg_temp.rv_diff d where d.rv_op = 'insert') then
    execute format('insert into %s (%s) %s select %s from pg_temp.rv_diff d where d.rv_op = ''insert''',
                   t, col_list, ovr, (select string_agg(format('d.%I', c), ', ') from unnest(cols) c));
    get diagnostics inserted = row_count;
  end if;
  unchanged := total - inserted - updated;
end $$;

-- The same without guards.
create or replace function rowver.apply_rows(tbl regclass, source regclass, mode text, at bigint default null,
                                             out inserted bigint, out updated bigint,
                                             out deleted bigint, out unchanged bigint)
language sql
begin atomic
  select * from rowver.apply_rows(tbl, source, mode, at, null::jsonb);
end;

-- Load a staging table (see rowver.stage) into tbl.
create or replace function rowver.load(tbl regclass, stage regclass, mode text,
                                       out inserted bigint, out updated bigint,
                                       out deleted bigint, out unchanged bigint)
language sql
begin atomic
  select * from rowver.apply_rows(tbl, stage, mode);
end;

-- The same, refused (SQLSTATE RV001, nothing written) when it would pass a limit of guards
-- (see rowver.check_guards).
create or replace function rowver.load(tbl regclass, stage regclass, mode text, guards jsonb,
                                       out inserted bigint, out updated bigint,
                                       out deleted bigint, out unchanged bigint)
language sql
begin atomic
  select * from rowver.apply_rows(tbl, stage, mode, null::bigint, guards);
end;

-- The version this transaction writes, or null while it has changed nothing versioned.
create or replace function rowver.current_version() returns bigint
language sql stable
begin atomic
  select c.version from rowver.changeset c where c.version = rowver.allocated();
end;

-- For guarded changesets (rowver._guards): the rows tbl holds now, as the caller sees them
-- inside the transaction. A full count: guards that need it pay one scan of the table.
create or replace function rowver.row_count(tbl regclass) returns bigint
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  n bigint;
begin
  perform rowver.registered(tbl);
  execute format('select count(*) from %s', rowver.qualified(tbl)) into n;
  return n;
end $$;

-- The keys ({"column": value, ...}, as rv_key) of the rows of tbl this transaction's changeset
-- has written and still holds, as SQL that a guard's check completes with its own condition
-- (rowver._guards runs it in a read-only savepoint). The client runs it on its own search_path:
-- every function and operator in it is qualified.
create or replace function rowver.written_rows_sql(tbl regclass) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select format('select pg_catalog.jsonb_build_object(%s) as rv_key from %s'
                ' where rv_version operator(pg_catalog.=) rowver.current_version()',
                (select string_agg(format('%L::pg_catalog.text, %I', k, k), ', ') from unnest(r.key_columns) k),
                rowver.qualified(tbl))
    from rowver.registered(tbl) r
$$;

-- Restore tbl to its state as of ref, as a new changeset: nothing is erased, and the
-- reverted-from state stays readable.
create or replace function rowver.revert(tbl regclass, ref text,
                                         out inserted bigint, out updated bigint,
                                         out deleted bigint, out unchanged bigint,
                                         out version bigint)
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  v bigint;
begin
  v := rowver.resolve_for(tbl, ref);
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('revert %s to %s', tbl, v), true);
  end if;
  select * into inserted, updated, deleted, unchanged from rowver.apply_rows(tbl, null, 'sync', v);
  version := rowver.current_version();
end $$;

-- Writing through the caller's own privileges on the table (the capture triggers record those
-- writes): open to all.
grant execute on function rowver.check_staged(regclass, regclass), rowver.writable_columns(regclass),
  rowver.stage(regclass, name[]),
  rowver.apply_rows(regclass, regclass, text, bigint), rowver.load(regclass, regclass, text),
  rowver.current_version(), rowver.row_count(regclass), rowver.written_rows_sql(regclass),
  rowver.check_guards(regclass, text, jsonb, bigint), rowver.apply_rows(regclass, regclass, text, bigint, jsonb),
  rowver.load(regclass, regclass, text, jsonb), rowver.revert(regclass, text)
to public;

reset search_path;
reset role;
