-- Per-table versioning: the schema generator behind rowver.enable / rowver.disable.
--
-- For a table T it generates, beside T and under names kept in rowver.versioned:
--   T.rv_version     the version that wrote the row's current state
--   T__history       every superseded state and every tombstone, owned by rowver_owner
--   T__versions      a security_invoker view of every version of every row
--   T__as_of(v)      an inlinable SQL function: T as of version v
--   T__rv_stamp      the per-row BEFORE trigger: stamps rv_version, detects no-op updates
--   T__rv_capture    the AFTER statement trigger: writes history from transition tables
-- This file holds what the generator reads from the catalog; 21_generate.sql writes the
-- objects, 22_enable.sql enables and disables, 23_refresh.sql follows schema changes.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- A generated name that fits PostgreSQL's 63-byte limit: long bases are cut on a character
-- boundary and get a short hash of the full name, so different long names stay distinct.
create or replace function rowver.generated_name(base name, suffix text) returns name
language plpgsql immutable
as $$
declare
  cut text := base;
  tag text := '_' || left(md5(base::text), 8);
begin
  if octet_length(base || suffix) <= 63 then
    return base || suffix;
  end if;
  while octet_length(cut || tag || suffix) > 63 loop
    cut := left(cut, -1);
  end loop;
  return cut || tag || suffix;
end $$;

-- T's history gets BRIN indexes on rv_until and rv_version. History is appended as states
-- are superseded, so its pages follow rv_until: reads of recent versions skip the older
-- pages. The states a page holds were mostly written together too (a load, a round of
-- updates), so its rv_version range is narrow: reads of old versions skip the pages of
-- states written after them, and read about as much history as they return, however long
-- it grows. Small ranges, summarized as they fill (autosummarize); pages not yet summarized
-- are always read. A BRIN index costs a write almost nothing.
drop function if exists rowver.history_brin_ddl(text, name);
create or replace function rowver.history_brin_ddl(hist_q text, hist name, col name) returns text
language sql immutable
return format('create index if not exists %I on %s using brin (%I) with (pages_per_range = 16, autosummarize = on)',
              rowver.generated_name(hist, '_' || col), hist_q, col);

-- Whether hist has a BRIN index on col (install adds the missing ones, check names them).
create or replace function rowver.has_brin(hist regclass, col name) returns boolean
language sql stable
return exists (select from pg_catalog.pg_index i
                 join pg_catalog.pg_class c on c.oid = i.indexrelid
                 join pg_catalog.pg_am a on a.oid = c.relam
                 join pg_catalog.pg_attribute at on at.attrelid = i.indrelid and at.attnum = i.indkey[0]
                where i.indrelid = hist and a.amname = 'brin' and at.attname = col);

-- The equality btree uses for values of type t, written so that no caller's search_path
-- can change what it means (DESIGN §6): OPERATOR(schema.=) from the default btree operator
-- class of t (or of its base type, or of a type it converts to without a function, such as
-- text for varchar), with both sides cast to the operator's own input type where that is
-- not polymorphic. Within the operator's schema an exact match is then the only match, so
-- an operator planted elsewhere (even one for an array, enum, range, composite or domain
-- type, which would win an exact-match contest) is never chosen. Arrays, enums, ranges,
-- multiranges and composites use pg_catalog's polymorphic operators, which compare their
-- elements by the elements' own btree equality. Null where t has no btree equality (json,
-- xml, point): callers compare text forms.
create or replace function rowver.eq_operator(t oid, out op text, out cast_to text)
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  base oid := t;
  ty   pg_type;
  poly oid;       -- the polymorphic type whose operator compares base, if any
  found_op record;
begin
  while (select y.typtype = 'd' from pg_type y where y.oid = base) loop  -- domains: their base
    base := (select y.typbasetype from pg_type y where y.oid = base);
  end loop;
  select * into ty from pg_type y where y.oid = base;
  -- containers compare their parts with the parts' own equality: each part needs one
  if ty.typtype = 'r' then
    poly := 'anyrange'::regtype;
    if (select e.op is null from pg_range r, rowver.eq_operator(r.rngsubtype) e where r.rngtypid = base) then
      return;
    end if;
  elsif ty.typtype = 'm' then
    poly := 'anymultirange'::regtype;
    if (select e.op is null from pg_range r, rowver.eq_operator(r.rngsubtype) e where r.rngmultitypid = base) then
      return;
    end if;
  elsif ty.typtype = 'c' then
    poly := 'record'::regtype;
    if exists (select from pg_attribute a, rowver.eq_operator(a.atttypid) e
                where a.attrelid = ty.typrelid and a.attnum > 0 and not a.attisdropped and e.op is null) then
      return;
    end if;
  elsif ty.typtype = 'e' then
    poly := 'anyenum'::regtype;
  elsif ty.typelem <> 0 and ty.typsubscript = 'array_subscript_handler'::regproc then
    poly := 'anyarray'::regtype;
    if (select e.op is null from rowver.eq_operator(ty.typelem) e) then
      return;
    end if;
  end if;
  -- the default btree operator class of the type (or of the polymorphic type, or of a type
  -- it converts to without a function), and its equality operator
  select n.nspname, o.oprleft into found_op
    from pg_opclass c
    join pg_am am on am.oid = c.opcmethod and am.amname = 'btree'
    join pg_amop a on a.amopfamily = c.opcfamily and a.amoplefttype = c.opcintype
                  and a.amoprighttype = c.opcintype and a.amopstrategy = 3
    join pg_operator o on o.oid = a.amopopr
    join pg_namespace n on n.oid = o.oprnamespace
   where c.opcdefault
     and (c.opcintype = coalesce(poly, base)
          or (poly is null and exists (select from pg_cast k where k.castsource = base and k.casttarget = c.opcintype
                                                             and k.castmethod = 'b')))
   order by c.opcintype = coalesce(poly, base) desc, c.oid
   limit 1;
  if found_op is null then
    return;
  end if;
  op := format('operator(%I.=)', found_op.nspname);
  -- both sides as the operator's own input type (a polymorphic one: the base type)
  cast_to := (select format('%I.%I', n.nspname, y.typname) from pg_type y
                join pg_namespace n on n.oid = y.typnamespace
               where y.oid = case when poly is not null then base else found_op.oprleft end
                 and y.oid <> t);
end $$;

-- Whether values of type t have a btree equality (json, xml and point do not).
create or replace function rowver.has_btree_eq(t oid) returns boolean
language sql stable
return (select e.op is not null from rowver.eq_operator(t) e);

-- "a = b" for two SQL expressions of type t (NULL when either is), pinned as above.
create or replace function rowver.eq_sql(t oid, a text, b text) returns text
language sql stable
return (select case when e.op is null
                    then format('(%s)::pg_catalog.text operator(pg_catalog.=) (%s)::pg_catalog.text', a, b)
                    when e.cast_to is null then format('(%s) %s (%s)', a, e.op, b)
                    else format('(%s)::%s %s (%s)::%s', a, e.cast_to, e.op, b, e.cast_to) end
          from rowver.eq_operator(t) e);

-- "a IS NOT DISTINCT FROM b" for two SQL expressions of type t, pinned: IS NOT DISTINCT
-- FROM itself looks = up through the search path. A value of composite type IS NULL also
-- when all its fields are; num_nulls asks whether the value itself is. (In parentheses:
-- PL/pgSQL's IF would take the CASE's first THEN for its own.)
create or replace function rowver.same_sql(t oid, a text, b text) returns text
language sql stable
return (select case when ty.typtype = 'c' or bt.typtype = 'c'
                    then format('(case when pg_catalog.num_nulls(%1$s) operator(pg_catalog.=) 1 '
                                'then pg_catalog.num_nulls(%2$s) operator(pg_catalog.=) 1 '
                                'when pg_catalog.num_nulls(%2$s) operator(pg_catalog.=) 1 then false else %3$s end)',
                                a, b, rowver.eq_sql(t, a, b))
                    else format('(case when (%1$s) is null then (%2$s) is null when (%2$s) is null then false else %3$s end)',
                                a, b, rowver.eq_sql(t, a, b)) end
          from pg_type ty left join pg_type bt on bt.oid = ty.typbasetype and ty.typtype = 'd'
         where ty.oid = t);

-- The payload columns of T (every live column but rv_version), with what the generator
-- needs: T's type (its oid and as SQL), the history type (domains become their base type),
-- whether the column takes part in change detection, and its rank there (cheap fixed-width
-- values first, large toastable values last, so most no-op checks never detoast anything).
-- Types as SQL are schema-qualified: format_type qualifies what the path below does not see.
drop function if exists rowver.payload_columns(regclass, name[]);
create or replace function rowver.payload_columns(tbl regclass, ignore name[] default '{}')
returns table (name name, type_sql text, history_type_sql text, compared boolean,
               has_eq boolean, cmp_rank integer, attnum smallint, type_oid oid)
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select a.attname,
         pg_catalog.format_type(a.atttypid, a.atttypmod),
         case when ty.typtype = 'd' then pg_catalog.format_type(ty.typbasetype, ty.typtypmod)
              else pg_catalog.format_type(a.atttypid, a.atttypmod) end,
         a.attgenerated = '' and not (a.attname = any (coalesce(ignore, '{}'))),
         rowver.has_btree_eq(a.atttypid),
         case when ty.typlen > 0 then 0 when a.attstorage = 'p' then 1
              when a.attstorage = 'm' then 2 else 3 end,
         a.attnum,
         a.atttypid
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_type ty on ty.oid = a.atttypid
   where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped and a.attname <> 'rv_version'
   order by a.attnum
$$;

-- Virtual generated columns (PostgreSQL 18) with their expressions: their values are not
-- in transition tables, so history recomputes them from the stored columns on read.
create or replace function rowver.virtual_columns(tbl regclass) returns table (name name, expr text)
language sql stable
as $$
  select a.attname, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
   where a.attrelid = tbl and a.attgenerated = 'v' and not a.attisdropped
$$;

-- "schema"."table" from the catalog, for generated SQL: never regclass text, whose
-- meaning depends on the search_path of whoever runs it.
create or replace function rowver.qualified(tbl regclass) returns text
language sql stable
as $$
  select pg_catalog.format('%I.%I', n.nspname, c.relname)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = tbl
$$;

-- The schema T lives in (its generated objects live there too).
create or replace function rowver.schema_of(tbl regclass) returns name
language sql stable
as $$
  select n.nspname from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = tbl
$$;

-- T's columns in row-type order, rv_version included: where it is, or last, where
-- enable is about to add it.
create or replace function rowver.row_columns(tbl regclass) returns table (name name, pos integer)
language sql stable
as $$
  select a.attname, a.attnum::integer from pg_catalog.pg_attribute a
   where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped
  union all
  select 'rv_version', 32767
   where not exists (select from pg_catalog.pg_attribute a
                      where a.attrelid = tbl and a.attname = 'rv_version' and not a.attisdropped)
$$;

-- "a.col and b.col hold the same value", NULL-safe and pinned (see same_sql); a and b
-- are relation aliases.
drop function if exists rowver.same_value_sql(name, boolean, text, text);
create or replace function rowver.same_value_sql(col name, t oid, a text, b text) returns text
language sql stable
return rowver.same_sql(t, format('%s.%I', a, col), format('%s.%I', b, col));

-- "a and b agree on every key column of tbl", pinned
drop function if exists rowver.key_join_sql(name[], text, text);
create or replace function rowver.key_join_sql(tbl regclass, keys name[], a text, b text) returns text
language sql stable
return (select string_agg(rowver.eq_sql(at.atttypid, format('%s.%I', a, k), format('%s.%I', b, k)), ' and ' order by o)
          from unnest(keys) with ordinality u(k, o)
          join pg_attribute at on at.attrelid = tbl and at.attname = k and not at.attisdropped);

-- The key a table is versioned by: the given columns (which need a unique index on NOT
-- NULL columns), else the primary key. Raises one clear line when there is none.
create or replace function rowver.table_key(tbl regclass, key name[] default null) returns name[]
language plpgsql stable
as $$
declare
  k name[];
  missing name;
begin
  if key is null or cardinality(key) = 0 then
    select array_agg(a.attname order by array_position(i.indkey::int2[], a.attnum)) into k
      from pg_catalog.pg_index i
      join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey::int2[])
     where i.indrelid = tbl and i.indisprimary;
    if k is null then
      raise exception 'rowver: table % has no primary key', tbl using errcode = '42P10',
        hint = 'name NOT NULL columns with a unique index as its key: rowver enable --key COL (repeatable), '
               'db.enable(..., key=[...]), or key => ARRAY[...] in SQL';
    end if;
    return k;
  end if;
  select c into missing from unnest(key) c
   where not exists (select from pg_catalog.pg_attribute a
                      where a.attrelid = tbl and a.attname = c and a.attnum > 0 and not a.attisdropped);
  if found then
    raise exception 'rowver: table % has no column %', tbl, quote_ident(missing) using errcode = '42703';
  end if;
  select c into missing from unnest(key) c
    join pg_catalog.pg_attribute a on a.attrelid = tbl and a.attname = c
   where not a.attnotnull;
  if found then
    raise exception 'rowver: key column % of % must be NOT NULL', quote_ident(missing), tbl
      using errcode = '42P10';
  end if;
  if not exists (
      select from pg_catalog.pg_index i
       where i.indrelid = tbl and i.indisunique and i.indisvalid and i.indpred is null
         and i.indexprs is null and i.indnkeyatts = cardinality(key)
         and (select array_agg(a.attname order by a.attname) from pg_catalog.pg_attribute a
               where a.attrelid = tbl and a.attnum = any (i.indkey::int2[]))
             = (select array_agg(c order by c) from unnest(key) c)) then
    raise exception 'rowver: key (%) of % is not backed by a unique index',
      array_to_string(key, ', '), tbl using errcode = '42P10';
  end if;
  return key;
end $$;

-- Refuse what cannot be versioned, with one clear line each.
create or replace function rowver.check_versionable(tbl regclass) returns void
language plpgsql stable
as $$
declare
  c pg_catalog.pg_class;
begin
  select * into c from pg_catalog.pg_class where oid = tbl;
  if c.relispartition then
    raise exception 'rowver: % is a partition of %; enable versioning on the partitioned table',
      tbl, pg_catalog.pg_partition_root(tbl) using errcode = '42809';
  elsif c.relkind = 'v' or c.relkind = 'm' then
    raise exception 'rowver: % is a view; only tables can be versioned', tbl using errcode = '42809';
  elsif c.relkind = 'f' then
    raise exception 'rowver: % is a foreign table; only local tables can be versioned', tbl
      using errcode = '42809';
  elsif c.relkind not in ('r', 'p') then
    raise exception 'rowver: % is not a table', tbl using errcode = '42809';
  elsif c.relpersistence = 't' then
    raise exception 'rowver: % is a temporary table; it cannot be versioned', tbl using errcode = '42809';
  elsif c.relpersistence = 'u' then
    raise exception 'rowver: % is unlogged; its history would not survive a crash', tbl
      using errcode = '42809';
  elsif c.relkind = 'r' and exists (select from pg_catalog.pg_inherits i where i.inhrelid = tbl or i.inhparent = tbl) then
    raise exception 'rowver: % uses table inheritance, which rowver does not version', tbl
      using errcode = '0A000';
  elsif c.relnamespace = 'rowver'::regnamespace and c.relname !~ '^model' then
    raise exception 'rowver: % is part of rowver''s own catalog', tbl using errcode = '42809';
  elsif exists (select from rowver.versioned v where v.relid = tbl) then
    raise exception 'rowver: % is already versioned', tbl using errcode = '42710';
  elsif c.relname ~ '__(history|versions|as_of|rv_stamp|rv_capture)$'
        and exists (select from rowver.versioned v where v.history_name = c.relname) then
    raise exception 'rowver: % is rowver''s own history table', tbl using errcode = '42809';
  end if;
  if to_regclass(format('%I.%I', (select n.nspname from pg_catalog.pg_namespace n where n.oid = c.relnamespace),
                        rowver.generated_name(c.relname, '__history'))) is not null then
    raise exception 'rowver: %__history already exists, kept from an earlier time % was versioned', c.relname, tbl
      using errcode = '42P07', hint = 'drop or rename it, then enable again';
  end if;
  if exists (select from pg_catalog.pg_attribute a where a.attrelid = tbl and a.attnum > 0
                and not a.attisdropped and a.attname in ('rv_version', 'rv_until', 'rv_deleted', 'rv_op')) then
    raise exception 'rowver: % has a column named rv_version, rv_until, rv_deleted or rv_op (rowver''s own)', tbl
      using errcode = '42701';
  end if;
end $$;

-- A fingerprint of T's shape: its columns' names and types, in order. Capture checks it
-- (see shape_is), so a table altered without rowver.refresh fails loudly instead of
-- losing or misplacing values. (A fixed search_path, so format_type names types the same
-- way wherever it is called from.)
create or replace function rowver.shape(tbl regclass) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
begin
  -- in column order: two columns that swap names change the shape too
  return (select md5(string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ','
                                order by a.attnum))
            from pg_attribute a
           where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped and a.attname <> 'rv_version');
end $$;

-- Raise unless tbl still has the shape its capture was generated for. Declared IMMUTABLE
-- on purpose, though it reads the catalog: capture calls it with constant arguments in a
-- query over T, so the planner folds it once per plan, and PostgreSQL replans that query
-- whenever T's definition changes (any ALTER TABLE sends T's relcache invalidation). The
-- check so runs after every change to T, and costs nothing on the statements in between.
create or replace function rowver.shape_is(tbl regclass, expected text) returns boolean
language plpgsql immutable set search_path = pg_catalog, pg_temp
as $$
begin
  if rowver.shape(tbl) is distinct from expected then
    raise exception 'rowver: % changed shape since its versioning was generated', tbl
      using errcode = '55000', hint = format('run rowver.refresh(%L) (or use rowver.alter)', tbl::text);
  end if;
  return true;
end $$;

-- The partitions of a partitioned table (all levels), or nothing: statement triggers fire
-- only on the table a statement names, so each leaf needs its own.
create or replace function rowver.partitions(tbl regclass) returns setof regclass
language sql stable
as $$
  select t.relid from pg_catalog.pg_partition_tree(tbl) t where t.relid <> tbl
$$;

-- Planning is read-only and open to all.
grant execute on function rowver.generated_name(name, text), rowver.history_brin_ddl(text, name, name), rowver.has_brin(regclass, name), rowver.eq_operator(oid), rowver.has_btree_eq(oid),
  rowver.eq_sql(oid, text, text), rowver.same_sql(oid, text, text),
  rowver.payload_columns(regclass, name[]), rowver.qualified(regclass), rowver.schema_of(regclass), rowver.row_columns(regclass), rowver.virtual_columns(regclass),
  rowver.same_value_sql(name, oid, text, text), rowver.key_join_sql(regclass, name[], text, text),
  rowver.table_key(regclass, name[]), rowver.check_versionable(regclass), rowver.shape(regclass), rowver.shape_is(regclass, text),
  rowver.partitions(regclass)
to public;

reset search_path;
reset role;
