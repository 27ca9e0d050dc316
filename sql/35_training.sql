-- Point-in-time training sets (db.training_set): every event row joined with each feature
-- table's row as of the version its time resolves to, set-based. The events are COPY'd into
-- a temporary table (rowver.training_stage); one query (rowver.training_sql) then resolves
-- each event's time with the rule timestamp refs follow (rowver.resolve: the newest head
-- published at or before it, from head_log) and makes one range join per feature table over
-- its current rows and its history: a state is read as of v when rv_version <= v < rv_until
-- (rv_until null: current), not a tombstone, exactly as T__as_of(v) reads it. Never a
-- query per event. These functions run as the caller: the join reads T and its history with
-- the caller's privileges and T's policies, as T__as_of does.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- The staging table for events, dropped at commit: rv_row (the event's position), then its
-- time as rv_time (timestamptz, when events carry times) or its version as rv_at (when they
-- carry versions or refs, resolved before), then one column per key column joined, named
-- rv_k1, rv_k2, ... and typed like that key column of its feature table (tbls[i], keys[i]).
create or replace function rowver.training_stage(tbls regclass[], keys name[], by_time boolean) returns regclass
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  cols text;
  i    integer;
begin
  for i in 1 .. coalesce(cardinality(tbls), 0) loop
    if not keys[i] = any ((rowver.registered(tbls[i])).key_columns) then
      raise exception 'rowver: % is not a key column of %', quote_ident(keys[i]), tbls[i] using errcode = '42703';
    end if;
  end loop;
  select string_agg(format(', %I %s', 'rv_k' || u.i, format_type(a.atttypid, a.atttypmod)), '' order by u.i)
    into cols
    from unnest(tbls, keys) with ordinality u(t, k, i)
    join pg_catalog.pg_attribute a on a.attrelid = u.t and a.attname = u.k and not a.attisdropped;
  if to_regclass('pg_temp.rv_events') is not null then  -- (no notice when there is none)
    drop table pg_temp.rv_events;
  end if;
  execute format('create temp table rv_events (rv_row bigint not null, %s%s) on commit drop',
                 case when by_time then 'rv_time timestamptz not null' else 'rv_at bigint not null' end,
                 coalesce(cols, ''));
  return 'pg_temp.rv_events'::regclass;
end $$;

-- A versioned table's current rows and history states as one relation (alias f), shaped for a
-- range join: its key columns, the given payload columns in T's own types (history keeps base
-- types; virtual generated columns are computed, as in T__as_of), rv_version, rv_until and
-- rv_deleted.
create or replace function rowver.training_source_sql(tbl regclass, cols name[]) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r     rowver.versioned := rowver.registered(tbl);
  names name[] := r.key_columns || array(select c from unnest(cols) c where c <> all (r.key_columns));
  bad   name;
begin
  select c into bad from unnest(cols) c where not exists (select from rowver.payload_columns(tbl) p where p.name = c);
  if found then
    raise exception 'rowver: % has no column %', tbl, quote_ident(bad) using errcode = '42703';
  end if;
  return format('(select %s, t.rv_version, null::bigint as rv_until, false as rv_deleted from %s t'
                ' union all select %s, h.rv_version, h.rv_until, h.rv_deleted from %I.%I h)',
    (select string_agg(format('t.%I', n), ', ' order by o) from unnest(names) with ordinality u(n, o)),
    rowver.qualified(tbl),
    (select string_agg(case when g.expr is not null then format('(%s)::%s as %I', g.expr, p.type_sql, n)
                            when p.type_sql = p.history_type_sql then format('h.%I', n)
                            else format('h.%I::%s as %I', n, p.type_sql, n) end, ', ' order by o)
       from unnest(names) with ordinality u(n, o)
       join rowver.payload_columns(tbl) p on p.name = u.n
       left join rowver.virtual_columns(tbl) g on g.name = u.n),
    rowver.schema_of(tbl), r.history_name);
end $$;

-- head_log as a step function: each time a head was published (ascending), and the head a
-- timestamp ref at that time resolves to (rowver.resolve: the greatest head logged then).
create or replace view rowver.head_steps as
  select pg_catalog.array_agg(l.at order by l.at) as times, pg_catalog.array_agg(l.head order by l.at) as heads
    from (select g.at, max(g.head) as head from rowver.head_log g group by g.at) l;

-- The query that reads a training set from the staged events (rowver.training_stage). spec is
-- a JSON array with one object per feature table, in order: {"table": regclass text, "keys":
-- [the staged key columns' numbers, in key order], "columns": [payload columns]}. Its rows:
--   rv_row      the event's position
--   rv_at       the version the event reads (null: its time precedes every published head)
--   rv_read_N   the rv_version of the state read from feature table N (null: no row read)
--   rv_f_N_M    the M-th column of feature table N: null where no row was read, and for a
--               column added to the table after the version read (as T__as_of reads it)
-- An event whose version precedes table N's first version reads no row of it. An event whose
-- version a prune removed (but a tagged one it kept) is refused, as T__as_of refuses it.
-- Rows come in no particular order.
create or replace function rowver.training_sql(events regclass, by_time boolean, spec jsonb) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  f       jsonb;
  n       integer := 0;
  tbl     regclass;
  r       rowver.versioned;
  cols    name[];
  sel     text := '';
  joins   text := '';
  ver     text := 'e.rv_at';
  cond    text;
  x       rowver.retention;
begin
  for f in select * from jsonb_array_elements(spec) loop
    n := n + 1;
    tbl := (f ->> 'table')::regclass;
    r := rowver.registered(tbl);
    cols := array(select jsonb_array_elements_text(f -> 'columns'));
    if jsonb_array_length(f -> 'keys') <> cardinality(r.key_columns) then
      raise exception 'rowver: % is keyed by (%); % event column(s) given', tbl,
        array_to_string(r.key_columns, ', '), jsonb_array_length(f -> 'keys') using errcode = '22023';
    end if;
    -- the state visible as of the event's version, as in T__as_of; before the table's
    -- first version, none
    select string_agg(rowver.eq_sql(a.atttypid, format('f%s.%I', n, k.k), format('e.%I', 'rv_k' || k.s)), ' and ')
      into cond
      from unnest(r.key_columns, array(select jsonb_array_elements_text(f -> 'keys'))::integer[]) k(k, s)
      join pg_catalog.pg_attribute a on a.attrelid = tbl and a.attname = k.k;
    joins := joins || format(E'\n  left join %s f%s on %s and f%2$s.rv_version operator(pg_catalog.<=) %4$s'
                             ' and (f%2$s.rv_until is null or f%2$s.rv_until operator(pg_catalog.>) %4$s)'
                             ' and not f%2$s.rv_deleted and %4$s operator(pg_catalog.>=) %5$s',
                             rowver.training_source_sql(tbl, cols), n, cond, ver, r.enabled_version);
    sel := sel || format(', f%s.rv_version as %I', n, 'rv_read_' || n);
    sel := sel || coalesce((select string_agg(
             case when l.added_version is not null
                  then format(', case when %s operator(pg_catalog.>=) %s then f%s.%I end as %I',
                              ver, l.added_version, n, c.c, format('rv_f_%s_%s', n, c.o))
                  else format(', f%s.%I as %I', n, c.c, format('rv_f_%s_%s', n, c.o)) end, '' order by c.o)
             from unnest(cols) with ordinality c(c, o) left join rowver.column_added(tbl) l on l.name = c.c), '');
    -- after a prune: a version before the horizon (but a tagged one it kept) is refused
    select * into x from rowver.retention y where y.table_id = r.id;
    if found then
      sel := sel || format(', case when %1$s operator(pg_catalog.>=) %2$s and %1$s operator(pg_catalog.<) %3$s'
                           ' and not %1$s operator(pg_catalog.=) any (%4$L::bigint[])'
                           ' then rowver.before_horizon(%5$L, %1$s) end as %6$I',
                           ver, r.enabled_version, x.horizon, x.kept, rowver.qualified(tbl), 'rv_guard_' || n);
    end if;
  end loop;
  if n = 0 then
    raise exception 'rowver: a training set needs at least one feature table' using errcode = '22023';
  end if;
  -- an event's time resolves as rowver.resolve resolves a timestamp ref: to the newest head
  -- published at or before it (the greatest head logged at the latest time at or before it).
  -- Set-based: head_log's times, sorted, are the lower bounds of buckets; width_bucket finds an
  -- event's bucket by binary search (0: before the first), and the bucket's head is its version.
  -- (OFFSET 0 keeps the subquery whole, so that each event's version is computed once.)
  return format('select e.rv_row, e.rv_at%s from %s e%s', sel,
                case when by_time then format('(select x.*, s.heads[pg_catalog.width_bucket(x.rv_time, s.times)] as rv_at'
                                              ' from %s x, rowver.head_steps s offset 0)', rowver.qualified(events))
                     else rowver.qualified(events) end,
                joins);
end $$;

grant select on rowver.head_steps to public;
grant execute on function rowver.training_stage(regclass[], name[], boolean),
  rowver.training_source_sql(regclass, name[]), rowver.training_sql(regclass, boolean, jsonb) to public;

reset search_path;
reset role;
