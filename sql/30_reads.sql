-- Reading rows of versioned tables: a table's registry row, refs resolved for it, the as-of
-- and versions relations, key splits for parallel reads, and the read-side helpers (history,
-- diff, the change feed, log, rowver.as_of). They run as the caller, with nothing but
-- pg_catalog on their search_path (SQL they return for a client to run names every operator
-- and function in full). The write side (31_writes.sql) calls registered, resolve_for and
-- as_of_sql, and SQL bodies are bound when they are created, so this file comes first.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- The registry row of a versioned table, or one clear error.
create or replace function rowver.registered(tbl regclass) returns rowver.versioned
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r rowver.versioned;
begin
  select * into r from rowver.versioned v where v.relid = tbl;
  if not found then
    raise exception 'rowver: % is not versioned', tbl using errcode = 'RV008',
      hint = format('enable it first: rowver enable %s', tbl);
  end if;
  return r;
end $$;

-- Raised by T__as_of for the largest bigint, which no version reaches: T's rows are alive
-- until it there (as rv_until), so it cannot be read as of it.
create or replace function rowver.no_version(v bigint) returns bigint
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception 'rowver: no version is %: versions are below it', v using errcode = '22003';
end $$;

grant execute on function rowver.no_version(bigint) to public;

-- A ref resolved for reading tbl: versions count across all tables, and one before tbl's
-- first version would read an empty table (and revert to it would delete every row), so it
-- is refused, naming both.
create or replace function rowver.resolve_for(tbl regclass, ref text) returns bigint
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  first bigint := (rowver.registered(tbl)).enabled_version;
  v     bigint := rowver.resolve(ref);
begin
  if v < first then
    raise exception 'rowver: % was first versioned at version %; version % predates it', tbl, first,
      case when ref = v::text then v::text else format('%s (%s)', v, ref) end
      using errcode = 'RV005', hint = format('read it as of version %s or later', first);
  end if;
  return v;
end $$;

-- T's schema-qualified as-of function, called at version v, as a FROM item.
create or replace function rowver.as_of_sql(tbl regclass, v bigint) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.format('%I.%I(%s)', rowver.schema_of(tbl), r.as_of_name, v)
    from rowver.registered(tbl) r
$$;

-- What a read of T as of v selects from, decided in the caller's snapshot, which must be a
-- REPEATABLE READ transaction begun after v was resolved (so that the read below sees the
-- same changesets as this test): T itself when no changeset and no column change of T lies
-- above v, since T's current rows are then exactly its rows as of v, else T__as_of(v). At or
-- near head this skips history, which an ordered, limited read of T__as_of cannot: to learn
-- that no superseded row is still live at v it walks history's whole key index.
create or replace function rowver.read_source_sql(tbl regclass, v bigint) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select case
           when exists (select from rowver.changeset_table ct where ct.table_id = r.id and ct.version > v)
             or exists (select from rowver.column_life c
                         where c.table_id = r.id and (c.added_version > v or c.dropped_version > v))
           then pg_catalog.format('%I.%I(%s)', rowver.schema_of(tbl), r.as_of_name, v)
           else pg_catalog.format('(select * from %s where rv_version operator(pg_catalog.<=) %s) as rv_current',
                                  rowver.qualified(tbl), v)
         end
    from rowver.registered(tbl) r
$$;

-- Where to cut T's rows for reading them in parts (rowver.dask): T's first key column, and up
-- to parts - 1 of its values, ascending, as text (a client binds them back as the column's own
-- type). Part j holds the keys from cut j - 1 (inclusive) to cut j (exclusive); the first part is
-- unbounded below and the last above, so rows of a past version whose keys lie outside the
-- current ones still fall in exactly one part. The cuts come from a sample of the current rows,
-- whole pages (TABLESAMPLE SYSTEM, so cheap) holding about max(10000, 100 * parts) rows by the
-- planner's estimate; a table without an estimate (never analyzed) is read whole. Parts are thus
-- only roughly even, which is all a split needs. The sort is the column's own (its collation),
-- the one its comparison operators use. A composite key is cut on its first column: keys that
-- share it stay in one part.
create or replace function rowver.key_splits(tbl regclass, parts integer)
returns table (key_column name, splits text[])
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  estimate real := (select c.reltuples from pg_catalog.pg_class c where c.oid = tbl);
  percent  float8 := 100;
begin
  key_column := (rowver.registered(tbl)).key_columns[1];
  if parts is null or parts < 1 then
    raise exception 'rowver: parts must be a positive whole number, not %', coalesce(parts::text, 'null')
      using errcode = '22023';
  end if;
  if parts = 1 then
    splits := '{}';
    return next;
    return;
  end if;
  if estimate > 0 then
    percent := least(100, 100.0 * greatest(10000, 100 * parts) / estimate);
  end if;
  -- row i of the n sampled (in key order) starts part floor((i - 1) * parts / n); the first row
  -- of each part but the first is a cut, unless its value is the smallest (that part would be
  -- empty: a composite key's first column repeats)
  execute pg_catalog.format(
    'select coalesce(pg_catalog.array_agg(k::text order by k), ''{}'') from ('
    '  select distinct k from ('
    '    select k, pg_catalog.row_number() over w as i, pg_catalog.count(*) over () as n,'
    '           pg_catalog.first_value(k) over w as least'
    '      from (select %I as k from %s tablesample system ($1)) s window w as (order by k)) ranked'
    '   where i > 1 and (i - 1) * $2 / n > (i - 2) * $2 / n and k > least) cuts',
    key_column, rowver.qualified(tbl))
    into splits using percent, parts::bigint;
  return next;
end $$;

grant execute on function rowver.key_splits(regclass, integer) to public;

-- T's schema-qualified versions view.
create or replace function rowver.versions_sql(tbl regclass) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.format('%I.%I', rowver.schema_of(tbl), r.versions_name)
    from rowver.registered(tbl) r
$$;

-- The query behind db.history: every version of the key given as $1 ({"column": value, ...},
-- read into the key columns' types), oldest first, with its changeset's time, author and
-- message. The client runs it on its own search_path: every function and operator in it is
-- qualified. Each state finds its changeset by the changeset's key (the OFFSET 0 keeps the
-- lookup apart: joined plainly, the planner hashes the whole changeset table, whose size is the
-- length of all history, not of this answer: 5,000 states among 65,000 changesets 28 -> 11 ms
-- in the server). The key is compared with a value computed once from $1, not joined with it:
-- the planner then knows history's primary key (key, rv_version) gives the states in version
-- order, and merges them with T's row instead of sorting them all (a key's states have
-- distinct versions; 5,000 states 5.1 -> 3.5 ms in the server, PostgreSQL 18).
create or replace function rowver.history_sql(tbl regclass) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select format('select v.*, c.created_at, c.author, c.message from %s v'
                ' left join lateral (select c.created_at, c.author, c.message from rowver.changeset c'
                ' where c.version operator(pg_catalog.=) v.rv_version offset 0) c on true'
                ' where %s order by v.rv_version',
                rowver.versions_sql(tbl),
                rowver.key_join_sql(tbl, r.key_columns, 'v', format('(pg_catalog.jsonb_populate_record(null::%s, $1::pg_catalog.jsonb))',
                                                                     rowver.qualified(tbl))))
    from rowver.registered(tbl) r
$$;

-- One clear error unless key (and surrogate, when given) is a JSON object naming every key
-- column of tbl, each with a value its column's type takes (the error names the column, where
-- the type's own says only "invalid input syntax for type integer").
create or replace function rowver.check_key(tbl regclass, keys name[], key jsonb, surrogate jsonb default null)
returns void
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  col record;
  val text;
begin
  if jsonb_typeof(key) is distinct from 'object'
     or (surrogate is not null and jsonb_typeof(surrogate) <> 'object')
     or exists (select from unnest(keys) k where not (key ? k) or (surrogate is not null and not (surrogate ? k))) then
    raise exception 'rowver: a key of % needs the columns (%)', tbl, array_to_string(keys, ', ')
      using errcode = 'RV009';
  end if;
  for col in select a.attname, format_type(a.atttypid, a.atttypmod) as typ
               from pg_attribute a where a.attrelid = tbl and a.attname = any(keys) and not a.attisdropped loop
    foreach val in array array[key ->> col.attname, surrogate ->> col.attname] loop
      begin
        execute format('select %L::%s', val, col.typ);
      exception when data_exception then
        raise exception 'rowver: % is not a value of %''s key column % (%): %', quote_literal(val), tbl,
          quote_ident(col.attname), col.typ, sqlerrm using errcode = sqlstate;
      end;
    end loop;
  end loop;
end $$;

-- Every version of one row, oldest first, with its changeset. key: {"column": value, ...}.
create or replace function rowver.history(tbl regclass, key jsonb)
returns table (rv_version bigint, rv_until bigint, rv_deleted boolean, created_at timestamptz,
               author text, message text, "row" jsonb)
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r rowver.versioned := rowver.registered(tbl);
begin
  perform rowver.check_key(tbl, r.key_columns, key);
  return query execute format(
    'select rv_row.rv_version, rv_row.rv_until, rv_row.rv_deleted, rv_cs.created_at, rv_cs.author, rv_cs.message,
            to_jsonb(rv_row) - ''{rv_version,rv_until,rv_deleted}''::text[]
       from %I.%I rv_row
       left join lateral (select rv_cs.created_at, rv_cs.author, rv_cs.message from rowver.changeset rv_cs
                           where rv_cs.version = rv_row.rv_version offset 0) rv_cs on true  -- (see history_sql)
      where %s order by rv_row.rv_version',
    rowver.schema_of(tbl), r.versions_name,
    rowver.key_join_sql(tbl, r.key_columns, 'rv_row', format('(jsonb_populate_record(null::%s, $1))', rowver.qualified(tbl))))
  using key;
end $$;

-- A row of an as-of read as jsonb, without rv_version (qualified: see diff_query).
create or replace function rowver.jsonb_row_sql(alias text) returns text
language sql immutable
return format('(pg_catalog.to_jsonb(%s) operator(pg_catalog.-) ''rv_version''::pg_catalog.text)', alias);

-- The keys of tbl whose state may differ between versions lo and hi (lo <= hi), read from
-- the version columns, not from two snapshots: every change in (lo, hi] superseded a state
-- there (history's rv_until, which its BRIN index answers; a tombstone too), wrote a state
-- that was superseded later (history again), or wrote a key anew (an insert: a current row
-- with rv_version in (lo, hi], read only when a changeset in the range inserted into tbl, or
-- a prune took the states that updates in it superseded, since no index on rv_version serves
-- it: one would cost every write a second index entry and its HOT update). A superset,
-- distinct: the diff compares each key's two states.
create or replace function rowver.changed_keys_sql(tbl regclass, lo bigint, hi bigint) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select format(
    'select distinct %1$s from (select %1$s from %2$s'
    ' where rv_until operator(pg_catalog.>) %3$s and rv_version operator(pg_catalog.<=) %4$s'
    ' and (rv_until operator(pg_catalog.<=) %4$s or rv_version operator(pg_catalog.>) %3$s)%5$s) rv_k',
    k.cols, format('%I.%I', rowver.schema_of(tbl), r.history_name), lo, hi,
    case when exists (select from rowver.changeset_table ct
                       where ct.table_id = r.id and ct.version > lo and ct.version <= hi
                         and coalesce(ct.inserted, 1) > 0)
           or exists (select from rowver.retention x where x.table_id = r.id and lo < x.horizon)
         then format(' union all select %s from %s where rv_version operator(pg_catalog.>) %s'
                     ' and rv_version operator(pg_catalog.<=) %s', k.cols, rowver.qualified(tbl), lo, hi)
         else '' end)
  from rowver.registered(tbl) r,
       lateral (select string_agg(format('%I', c), ', ') as cols from unnest(r.key_columns) c) k
$$;

-- Whether reading the changed keys answers a diff between a and b: not for a version a prune
-- let go (the full read raises the error that says so). (A column added in between reads NULL
-- before and its value after in rows no one wrote: a diff, which compares rows whose versions
-- differ, never showed those, either way.)
create or replace function rowver.diff_by_keys(tbl regclass, a bigint, b bigint) returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select not exists (select from rowver.retention x join rowver.versioned v on v.id = x.table_id
                      where v.relid = tbl and least(a, b) < x.horizon and least(a, b) <> all (x.kept))
$$;

-- The query behind both diffs: the rows of tbl that differ between versions a (old, rv_a)
-- and b (new, rv_b), joined on the key, as op, the key items, changed (the columns whose
-- values differ, by name), then the row items; ordered by key. Values are compared as
-- jsonb, so types without an equality operator (json, xml, point) compare too. Only the
-- keys that changed between a and b are looked up as of each (rowver.changed_keys_sql), so
-- the cost follows the changes. The client runs this SQL on its own search_path: every
-- function and operator in it is qualified.
create or replace function rowver.diff_query(tbl regclass, a bigint, b bigint,
                                             key_items text, row_items text) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select format(
    'select case when rv_a is null then ''added'' when rv_b is null then ''removed'' else ''changed'' end as op,
            %s,
            array(select e.key from pg_catalog.jsonb_each(rv_j.a) e
                   where not %s order by e.key) as changed,
            %s
       from %s
       cross join lateral (select %s as a, %s as b offset 0) rv_j
      where (rv_a is null or rv_b is null
             or (rv_a.rv_version operator(pg_catalog.<>) rv_b.rv_version and not %s))
        and not (rv_a is null and rv_b is null)
      order by %s',
    key_items,
    rowver.same_sql('jsonb'::regtype, 'e.value', 'rv_j.b operator(pg_catalog.->) e.key'),
    row_items,
    -- (limit 1: a key has one state as of a version, and the planner, told so, keeps its
    -- estimates, hence no JIT compilation, small; offset 0 below builds each side's jsonb
    -- once, where a flattened subquery would build it again for each use)
    case when rowver.diff_by_keys(tbl, a, b)
         then format('(%s) rv_k left join lateral (select * from %s x where %s limit 1) rv_a on true'
                     ' left join lateral (select * from %s x where %s limit 1) rv_b on true',
                     rowver.changed_keys_sql(tbl, least(a, b), greatest(a, b)),
                     rowver.as_of_sql(tbl, a), rowver.key_join_sql(tbl, r.key_columns, 'x', 'rv_k'),
                     rowver.as_of_sql(tbl, b), rowver.key_join_sql(tbl, r.key_columns, 'x', 'rv_k'))
         else format('%s rv_a full join %s rv_b on %s', rowver.as_of_sql(tbl, a), rowver.as_of_sql(tbl, b),
                     rowver.key_join_sql(tbl, r.key_columns, 'rv_a', 'rv_b')) end,
    rowver.jsonb_row_sql('rv_a'), rowver.jsonb_row_sql('rv_b'),
    rowver.same_sql('jsonb'::regtype, 'rv_j.a', 'rv_j.b'),
    (select string_agg(format('coalesce(rv_a.%I, rv_b.%I)', k, k), ', ') from unnest(r.key_columns) k))
  from rowver.registered(tbl) r
$$;

-- The diff with the table's own types, for readers that load typed columns (db.diff): op,
-- the key columns, changed, then every column but rv_version as of a (NULL when added),
-- then the same columns as of b (NULL when removed). The old and new columns keep the
-- table's names (the reader tells them apart by position), so no name can collide.
create or replace function rowver.diff_sql(tbl regclass, a bigint, b bigint) returns text
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select rowver.diff_query(tbl, a, b,
    (select string_agg(format('coalesce(rv_a.%I, rv_b.%I) as %I', k, k, k), ', ' order by o)
       from unnest((rowver.registered(tbl)).key_columns) with ordinality u(k, o)),
    (select string_agg(format('%s.%I', side, c.name), ', ' order by side, c.pos)
       from rowver.row_columns(tbl) c, unnest(array['rv_a', 'rv_b']) side
      where c.name <> 'rv_version'))
$$;

-- Rows added, removed and changed between two refs, with the columns that changed; the
-- key and the old and new rows as jsonb.
create or replace function rowver.diff(tbl regclass, ref_a text, ref_b text)
returns table (op text, key jsonb, changed text[], old jsonb, new jsonb)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  r rowver.versioned := rowver.registered(tbl);
  a bigint := rowver.resolve_for(tbl, ref_a);
  b bigint := rowver.resolve_for(tbl, ref_b);
begin
  return query execute rowver.diff_query(tbl, a, b,
    format('pg_catalog.jsonb_build_object(%s)',
           (select string_agg(format('%L::pg_catalog.text, coalesce(rv_a.%I, rv_b.%I)', k, k, k), ', ')
              from unnest(r.key_columns) k)),
    'rv_j.a, rv_j.b');
end $$;

-- The change feed: every row change after version `since` up to `until` (clamped to head,
-- so a poller that resumes from the last version it saw never misses a lower version that
-- commits later), in version order, as insert, update or delete. A change is an update
-- when the key had a state the change superseded. Only the keys that changed in the range
-- are read (rowver.changed_keys_sql), each through its index: the cost follows the changes.
create or replace function rowver.changes(tbl regclass, since text, until text default 'head')
returns table (rv_version bigint, op text, key jsonb, "row" jsonb)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  r    rowver.versioned := rowver.registered(tbl);
  sch  name := rowver.schema_of(tbl);
  lo   bigint := rowver.resolve(since);  -- (from before T's first version: its enabling rows too)
  hi   bigint := least(rowver.resolve_for(tbl, until), rowver.head());
begin
  if hi <= lo then
    return;
  end if;
  return query execute format(
    'select rv_row.rv_version,
            case when rv_row.rv_deleted then ''delete''
                 when exists (select from %I.%I rv_prev where %s and rv_prev.rv_version <= rv_row.rv_version
                                 and rv_prev.rv_until = rv_row.rv_version and not rv_prev.rv_deleted)
                 then ''update'' else ''insert'' end,
            jsonb_build_object(%s),
            case when rv_row.rv_deleted then null
                 else to_jsonb(rv_row) - ''{rv_version,rv_until,rv_deleted}''::text[] end
       from (%s) rv_k
       join %I.%I rv_row on %s
      where rv_row.rv_version > $1 and rv_row.rv_version <= $2
      order by rv_row.rv_version, 3',
    sch, r.history_name, rowver.key_join_sql(tbl, r.key_columns, 'rv_prev', 'rv_row'),
    (select string_agg(format('%L, rv_row.%I', k, k), ', ') from unnest(r.key_columns) k),
    rowver.changed_keys_sql(tbl, lo, hi),
    sch, r.versions_name, rowver.key_join_sql(tbl, r.key_columns, 'rv_row', 'rv_k'))
  using lo, hi;
end $$;

-- Changesets, newest first, with the tables they touched and how many rows they changed; only
-- those touching tbl, by an author, session user or role named who, whose message holds grep
-- (case-insensitive, literally), after version since and at or before until (callers resolve
-- refs first), when given.
drop function if exists rowver.log(integer, regclass);
create or replace function rowver.log(max_rows integer default 50, tbl regclass default null,
                                      who text default null, grep text default null,
                                      since bigint default null, until bigint default null)
returns table (version bigint, created_at timestamptz, author text, message text,
               db_user name, db_role name, tables text[], rows bigint)
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select c.version, c.created_at, c.author, c.message, c.db_user, c.db_role,
         array(select v.relid::text from rowver.changeset_table ct
                 join rowver.versioned v on v.id = ct.table_id
                where ct.version = c.version order by 1),
         (select sum(ct.rows)::bigint from rowver.changeset_table ct where ct.version = c.version)
    from rowver.changeset c
   where (tbl is null or (rowver.registered(tbl)).id is not null)
     and (tbl is null
      or exists (select from rowver.changeset_table ct join rowver.versioned v on v.id = ct.table_id
                  where ct.version = c.version and v.relid = tbl))
     and (who is null or who in (c.author, c.db_user::text, c.db_role::text))
     and (grep is null or strpos(lower(c.message), lower(grep)) > 0)
     and (since is null or c.version > since)
     and (until is null or c.version <= until)
   order by c.version desc
   limit max_rows
$$;

-- Rows shaped like the table for any ref: SELECT * FROM rowver.as_of(NULL::public.t, 'tag').
-- The ref is resolved first, in its own statement, then the read follows.
create or replace function rowver.as_of(tbl anyelement, ref text) returns setof anyelement
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  rel regclass := (select t.typrelid from pg_catalog.pg_type t where t.oid = pg_catalog.pg_typeof(tbl))::regclass;
  v   bigint := rowver.resolve_for(rel, ref);
begin
  return query execute format('select * from %s', rowver.as_of_sql(rel, v));
end $$;

-- Reading: open to all.
grant execute on function rowver.registered(regclass), rowver.resolve_for(regclass, text), rowver.as_of_sql(regclass, bigint), rowver.read_source_sql(regclass, bigint),
  rowver.versions_sql(regclass), rowver.history(regclass, jsonb),
  rowver.history_sql(regclass), rowver.check_key(regclass, name[], jsonb, jsonb),
  rowver.diff_query(regclass, bigint, bigint, text, text), rowver.changed_keys_sql(regclass, bigint, bigint),
  rowver.diff_by_keys(regclass, bigint, bigint), rowver.diff_sql(regclass, bigint, bigint),
  rowver.diff(regclass, text, text), rowver.changes(regclass, text, text),
  rowver.log(integer, regclass, text, text, bigint, bigint),
  rowver.as_of(anyelement, text), rowver.jsonb_row_sql(text)
to public;

reset search_path;
reset role;
