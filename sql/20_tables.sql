-- Per-table versioning: the schema generator behind rowver.enable / rowver.disable.
--
-- For a table T it generates, beside T and under names kept in rowver.versioned:
--   T.rv_version     the version that wrote the row's current state
--   T__history       every superseded state and every tombstone, owned by rowver_owner
--   T__versions      a security_invoker view of every version of every row
--   T__as_of(v)      an inlinable SQL function: T as of version v
--   T__rv_stamp      the per-row BEFORE trigger: stamps rv_version, detects no-op updates
--   T__rv_capture    the AFTER statement trigger: writes history from transition tables
-- enable_ddl() returns the exact statements; enable() runs them.

set role rowver_owner;

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

-- Whether values of type t can be compared with a btree equality (json, xml and point
-- cannot; arrays, ranges and composites can when their parts can).
create or replace function rowver.has_btree_eq(t oid) returns boolean
language sql stable
as $$
  select case
    when ty.typtype = 'd' then rowver.has_btree_eq(ty.typbasetype)
    when ty.typtype = 'e' then true
    when ty.typtype = 'r' then (select rowver.has_btree_eq(r.rngsubtype) from pg_catalog.pg_range r where r.rngtypid = t)
    when ty.typtype = 'c' then coalesce((select bool_and(rowver.has_btree_eq(a.atttypid))
                                           from pg_catalog.pg_attribute a
                                          where a.attrelid = ty.typrelid and a.attnum > 0 and not a.attisdropped), true)
    when ty.typelem <> 0 and ty.typsubscript = 'pg_catalog.array_subscript_handler'::regproc
      then rowver.has_btree_eq(ty.typelem)
    else exists (select from pg_catalog.pg_amop o join pg_catalog.pg_am am on am.oid = o.amopmethod
                  where am.amname = 'btree' and o.amopstrategy = 3
                    and o.amoplefttype = t and o.amoprighttype = t)
  end
  from pg_catalog.pg_type ty where ty.oid = t
$$;

-- The payload columns of T (every live column but rv_version), with what the generator
-- needs: T's type, the history type (domains become their base type), whether the column
-- takes part in change detection, and its rank there (cheap fixed-width values first,
-- large toastable values last, so most no-op checks never detoast anything).
create or replace function rowver.payload_columns(tbl regclass, ignore name[] default '{}')
returns table (name name, type_sql text, history_type_sql text, compared boolean,
               has_eq boolean, cmp_rank integer, attnum smallint)
language sql stable
as $$
  select a.attname,
         pg_catalog.format_type(a.atttypid, a.atttypmod),
         case when ty.typtype = 'd' then pg_catalog.format_type(ty.typbasetype, ty.typtypmod)
              else pg_catalog.format_type(a.atttypid, a.atttypmod) end,
         a.attgenerated = '' and not (a.attname = any (coalesce(ignore, '{}'))),
         rowver.has_btree_eq(a.atttypid),
         case when ty.typlen > 0 then 0 when a.attstorage = 'p' then 1
              when a.attstorage = 'm' then 2 else 3 end,
         a.attnum
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_type ty on ty.oid = a.atttypid
   where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped and a.attname <> 'rv_version'
   order by a.attnum
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

-- "a.col and b.col hold the same value", NULL-safe; types without a btree equality are
-- compared by their text form.
create or replace function rowver.same_value_sql(col name, has_eq boolean, a text, b text) returns text
language sql immutable
as $$
  select case when has_eq
    then pg_catalog.format('%s.%I is not distinct from %s.%I', a, col, b, col)
    else pg_catalog.format('%s.%I::text is not distinct from %s.%I::text', a, col, b, col)
  end
$$;

-- "a and b agree on every key column"
create or replace function rowver.key_join_sql(keys name[], a text, b text) returns text
language sql immutable
as $$
  select string_agg(pg_catalog.format('%s.%I = %s.%I', a, k, b, k), ' and ')
    from unnest(keys) k
$$;

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
        hint = 'pass key => ARRAY[...] naming NOT NULL columns with a unique index';
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
  if c.relkind = 'p' then
    raise exception 'rowver: % is partitioned; partitioned tables are not supported yet', tbl
      using errcode = '0A000';
  elsif c.relkind = 'v' or c.relkind = 'm' then
    raise exception 'rowver: % is a view; only tables can be versioned', tbl using errcode = '42809';
  elsif c.relkind = 'f' then
    raise exception 'rowver: % is a foreign table; only local tables can be versioned', tbl
      using errcode = '42809';
  elsif c.relkind <> 'r' then
    raise exception 'rowver: % is not a table', tbl using errcode = '42809';
  elsif c.relpersistence = 't' then
    raise exception 'rowver: % is a temporary table; it cannot be versioned', tbl using errcode = '42809';
  elsif c.relpersistence = 'u' then
    raise exception 'rowver: % is unlogged; its history would not survive a crash', tbl
      using errcode = '42809';
  elsif exists (select from pg_catalog.pg_inherits i where i.inhrelid = tbl or i.inhparent = tbl) then
    raise exception 'rowver: % uses table inheritance, which rowver does not version', tbl
      using errcode = '0A000';
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
                and not a.attisdropped and a.attname in ('rv_version', 'rv_until', 'rv_deleted')) then
    raise exception 'rowver: % already has a column named rv_version, rv_until or rv_deleted', tbl
      using errcode = '42701';
  end if;
end $$;

-- The body of the AFTER statement trigger that writes history from the transition tables
-- rv_old / rv_new. Every statement is set-based and names its columns.
create or replace function rowver.capture_body(tbl regclass, hist text, keys name[], cols text,
                                               o_cols text, k_cols text, o_k_cols text) returns text
language sql immutable
as $$
  select pg_catalog.format($body$
#variable_conflict use_variable
declare
  -- names that no column can take: rv_ is rowver's prefix, and columns are always qualified
  rv_v       bigint := pg_catalog.currval('rowver.version_seq'::pg_catalog.regclass);
  rv_changed bigint := 0;  -- keys changed, for the log
  rv_count   bigint;
  rv_gone    bigint;
begin
  if TG_OP = 'INSERT' then
    -- a key deleted by a newer version may not come back under an older one
    if exists (select from rv_new n join %1$s h on %2$s where h.rv_version > rv_v) then
      perform rowver.conflict(%9$L, 'a newer version deleted a key this statement inserts');
    end if;
    -- inserting a key this transaction deleted undoes its own tombstone
    delete from %1$s h using rv_new n where %2$s and h.rv_version = rv_v and h.rv_deleted;
    select count(*) into rv_changed from rv_new;

  elsif TG_OP = 'UPDATE' then
    -- One join pairs each old row with the new row of the same key. Its extra columns
    -- reuse names T cannot have: rv_until is the new row's version, rv_deleted says the
    -- key changed away; rv_version is null where a key changed into being.
    with o as (
      select %5$s, o.rv_version, n.rv_version as rv_until, n.%8$I is null as rv_deleted
        from rv_old o full join rv_new n on %3$s
    ), superseded as (
      -- superseded states: rows that changed, and rows whose key changed away; a state this
      -- transaction wrote itself is not a version and is not kept
      insert into %1$s (%4$s, rv_version, rv_until)
      select %5$s, o.rv_version, rv_v
        from o
       where o.rv_version is not null and (o.rv_deleted or o.rv_until <> o.rv_version)
         and case when o.rv_version > rv_v
                  then rowver.conflict(%9$L, 'a newer version changed a row this statement updates')
                  else o.rv_version < rv_v end
      returning 1
    )
    select (select count(*) from superseded), count(*) filter (where o.rv_deleted),
           count(*) filter (where o.rv_version is null)
      into rv_changed, rv_gone, rv_count
      from o;
    if rv_gone > 0 then
      -- a key changed away ends with a tombstone, if it had a state before this transaction
      insert into %1$s (%6$s, rv_version, rv_until, rv_deleted)
      select %7$s, rv_v, rv_v, true
        from rv_old o
       where not exists (select from rv_new n where %3$s)
         and (o.rv_version < rv_v
              or exists (select from %1$s h where %10$s and h.rv_until = rv_v and not h.rv_deleted));
    end if;
    if rv_count > 0 then
      -- a key changed into behaves like an insert
      rv_changed := rv_changed + rv_count;
      if exists (select from rv_new n join %1$s h on %2$s
                  where h.rv_version > rv_v and not exists (select from rv_old o where %3$s)) then
        perform rowver.conflict(%9$L, 'a newer version deleted a key this statement changes into');
      end if;
      delete from %1$s h using rv_new n
       where %2$s and h.rv_version = rv_v and h.rv_deleted
         and not exists (select from rv_old o where %3$s);
    end if;

  else -- DELETE
    insert into %1$s (%4$s, rv_version, rv_until)
    select %5$s, o.rv_version, rv_v
      from rv_old o
     where case when o.rv_version > rv_v
                then rowver.conflict(%9$L, 'a newer version changed a row this statement deletes')
                else o.rv_version < rv_v end;
    -- the delete itself: a tombstone, unless the key was born in this transaction
    insert into %1$s (%6$s, rv_version, rv_until, rv_deleted)
    select %7$s, rv_v, rv_v, true
      from rv_old o
     where o.rv_version < rv_v
        or exists (select from %1$s h where %10$s and h.rv_until = rv_v and not h.rv_deleted);
    get diagnostics rv_changed = row_count;
  end if;

  if rv_changed > 0 then
    perform rowver.record_change(rv_v, TG_RELID, rv_changed);
  end if;
  return null;
end
$body$,
    hist,                                   -- 1
    rowver.key_join_sql(keys, 'h', 'n'),    -- 2
    rowver.key_join_sql(keys, 'o', 'n'),    -- 3
    cols, o_cols, k_cols, o_k_cols,         -- 4..7
    keys[1],                                -- 8
    rowver.qualified(tbl),                  -- 9
    rowver.key_join_sql(keys, 'h', 'o'))    -- 10
$$;

-- The exact statements that enable versioning on tbl, in order. Nothing is changed.
create or replace function rowver.enable_ddl(tbl regclass, key name[] default null,
                                             triggers boolean default true,
                                             ignore name[] default '{}')
returns setof text
language plpgsql stable
as $$
declare
  sch     name;
  rel     name;
  t       text;  -- T, schema-qualified from the catalog
  keys    name[];
  hist    name;
  hist_q  text;
  vers    name;
  as_of   name;
  stamp   name;
  capture name;
  bad     name;
  cols    text; o_cols text; k_cols text; o_k_cols text;
  stmts   text[] := '{}';
  only_when text := case when triggers then ''
                         else 'when (pg_catalog.current_setting(''rowver.capture'', true) = ''on'')' end;
begin
  perform rowver.check_versionable(tbl);
  keys := rowver.table_key(tbl, key);
  ignore := coalesce(ignore, '{}');
  select c into bad from unnest(ignore) c
   where not exists (select from rowver.payload_columns(tbl) p where p.name = c) or c = any (keys);
  if found then
    raise exception 'rowver: cannot ignore % of %: not a column, or a key column', quote_ident(bad), tbl
      using errcode = '42703';
  end if;

  select n.nspname, c.relname into sch, rel
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = tbl;
  t       := rowver.qualified(tbl);
  hist    := rowver.generated_name(rel, '__history');
  hist_q  := format('%I.%I', sch, hist);
  vers    := rowver.generated_name(rel, '__versions');
  as_of   := rowver.generated_name(rel, '__as_of');
  stamp   := rowver.generated_name(rel, '__rv_stamp');
  capture := rowver.generated_name(rel, '__rv_capture');

  select string_agg(format('%I', p.name), ', ' order by p.attnum),
         string_agg(format('o.%I', p.name), ', ' order by p.attnum)
    into cols, o_cols from rowver.payload_columns(tbl) p;
  select string_agg(format('%I', k), ', '), string_agg(format('o.%I', k), ', ')
    into k_cols, o_k_cols from unnest(keys) k;

  -- 1. the version column: existing rows become the first version of their keys, under
  --    the enabling changeset (a constant default adds the column without a rewrite)
  stmts := stmts || format($s$do $rv$ begin
  execute pg_catalog.format('alter table %%s add column rv_version bigint not null default %%s',
                            %L, rowver.xact_version());
end $rv$ $s$, t);
  stmts := stmts || format('alter table %s alter column rv_version drop default', t);

  -- rowver_owner owns what is generated beside T, so it needs a footing in T's schema
  if not (has_schema_privilege('rowver_owner', sch, 'USAGE') and has_schema_privilege('rowver_owner', sch, 'CREATE')) then
    stmts := stmts || format('grant usage, create on schema %I to rowver_owner', sch);
  end if;

  -- 2. history: T's columns with base types, all nullable, no constraints
  stmts := stmts || format(E'create table %s (\n%s,\n  rv_version bigint not null,\n'
                           '  rv_until bigint,\n  rv_deleted boolean not null default false,\n'
                           '  primary key (%s, rv_version)\n)',
    hist_q,
    (select string_agg(format('  %I %s', p.name, p.history_type_sql), E',\n' order by p.attnum)
       from rowver.payload_columns(tbl) p),
    k_cols);
  stmts := stmts || format('alter table %s owner to rowver_owner', hist_q);

  -- 3. T as of a version: plain SQL, no SET clause, so the planner inlines it
  stmts := stmts || format(E'create function %I.%I(version bigint) returns setof %s\n'
                           'language sql stable parallel safe\nas $rv$\n'
                           '  select %s from %s where rv_version <= $1\n  union all\n'
                           '  select %s from %s h\n'
                           '   where h.rv_version <= $1 and h.rv_until > $1 and not h.rv_deleted\n$rv$',
    sch, as_of, t,
    (select string_agg(format('%I', c.name), ', ' order by c.pos) from rowver.row_columns(tbl) c),
    t,
    (select string_agg(case when c.name = 'rv_version' then 'h.rv_version'
                            when p.type_sql = p.history_type_sql then format('h.%I', c.name)
                            else format('h.%I::%s', c.name, p.type_sql) end, ', ' order by c.pos)
       from rowver.row_columns(tbl) c
       left join rowver.payload_columns(tbl) p on p.name = c.name),
    hist_q);
  stmts := stmts || format('alter function %I.%I(bigint) owner to rowver_owner', sch, as_of);

  -- 4. every version of every row; current rows have rv_until null
  stmts := stmts || format(E'create view %I.%I with (security_invoker = true) as\n'
                           '  select %s, rv_version, null::bigint as rv_until, false as rv_deleted from %s\n'
                           '  union all\n'
                           '  select %s, rv_version, rv_until, rv_deleted from %s',
    sch, vers, cols, t,
    (select string_agg(case when p.type_sql = p.history_type_sql then format('%I', p.name)
                            else format('%I::%s', p.name, p.type_sql) end, ', ' order by p.attnum)
       from rowver.payload_columns(tbl) p),
    hist_q);
  stmts := stmts || format('alter view %I.%I owner to rowver_owner', sch, vers);

  -- 5. the per-row stamp: a no-op update keeps its version and makes no history
  stmts := stmts || format(E'create or replace function %I.%I() returns trigger\nlanguage plpgsql\nas $rv$\n'
                           'begin\n'
                           '  if TG_OP = ''UPDATE'' and %s then\n'
                           '    NEW.rv_version := OLD.rv_version;\n'
                           '  else\n'
                           '    NEW.rv_version := pg_catalog.currval(''rowver.version_seq''::pg_catalog.regclass);\n'
                           '  end if;\n'
                           '  return NEW;\n'
                           'end\n$rv$',
    sch, stamp,
    (select string_agg(rowver.same_value_sql(p.name, p.has_eq, 'NEW', 'OLD'),
                       E'\n     and ' order by p.cmp_rank, p.attnum)
       from rowver.payload_columns(tbl, ignore) p where p.compared));
  stmts := stmts || format('alter function %I.%I() owner to rowver_owner', sch, stamp);

  -- 6. statement-level capture from transition tables
  -- (jit off: cost estimates over transition tables are poor, and JIT would cost more
  -- than the statements themselves)
  stmts := stmts || format(E'create or replace function %I.%I() returns trigger\nlanguage plpgsql\n'
                           'security definer set search_path = pg_catalog, pg_temp set jit = off\n'
                           'as $rv$%s$rv$',
    sch, capture, rowver.capture_body(tbl, hist_q, keys, cols, o_cols, k_cols, o_k_cols));
  stmts := stmts || format('alter function %I.%I() owner to rowver_owner', sch, capture);

  -- without triggers=true, capture runs only where the write layer switches it on (a flag
  -- that says whether to capture, never what version); other writers are not tracked
  stmts := stmts || format('create trigger rowver_begin before insert or update or delete on %s '
                           'for each statement %s execute function rowver.begin_statement()', t, only_when);
  -- the stamp sorts last among BEFORE row triggers, so it judges the final row
  stmts := stmts || format('create trigger "~rowver_stamp" before insert or update on %s '
                           'for each row %s execute function %I.%I()', t, only_when, sch, stamp);
  stmts := stmts || format('create trigger rowver_capture_insert after insert on %s '
                           'referencing new table as rv_new for each statement %s execute function %I.%I()',
                           t, only_when, sch, capture);
  stmts := stmts || format('create trigger rowver_capture_update after update on %s '
                           'referencing old table as rv_old new table as rv_new '
                           'for each statement %s execute function %I.%I()', t, only_when, sch, capture);
  stmts := stmts || format('create trigger rowver_capture_delete after delete on %s '
                           'referencing old table as rv_old for each statement %s execute function %I.%I()',
                           t, only_when, sch, capture);
  stmts := stmts || format('create trigger rowver_refuse_truncate before truncate on %s '
                           'for each statement execute function rowver.refuse_truncate()', t);

  -- 7. whoever may read T may read its past (row-level security mirroring comes with refresh)
  stmts := stmts || (select coalesce(array_agg(format('grant select on %s, %I.%I to %s', hist_q, sch, vers,
                                                      case when g.grantee = 0 then 'public'
                                                           else quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) end)),
                                     '{}')
                       from (select distinct (aclexplode(c.relacl)).* from pg_catalog.pg_class c where c.oid = tbl) g
                      where g.privilege_type = 'SELECT');
  stmts := stmts || format('grant select on %s, %I.%I to %I', hist_q, sch, vers,
                           pg_catalog.pg_get_userbyid((select relowner from pg_catalog.pg_class where oid = tbl)));

  -- 8. the registry, with a hash of everything above
  stmts := stmts || format('select rowver.register(%L, %L, %L, %L, %L, %L, %L, %L, %L, %L)',
                           t, keys, ignore, triggers, hist, vers, as_of, stamp, capture,
                           md5(array_to_string(stmts, E';\n')));
  return query select unnest(stmts);
end $$;

-- Record a newly versioned table, and its existing rows as the enabling changeset.
create or replace function rowver.register(tbl regclass, keys name[], ignore name[], triggers boolean,
                                           hist name, vers name, as_of name, stamp name, capture name,
                                           definition_hash text) returns void
language plpgsql
as $$
declare
  v bigint := rowver.xact_version();
  n bigint;
begin
  insert into rowver.versioned (relid, key_columns, ignore_columns, triggers, history_name,
                                versions_name, as_of_name, stamp_name, capture_name,
                                enabled_version, definition_hash)
  values (tbl, keys, ignore, triggers, hist, vers, as_of, stamp, capture, v, definition_hash);
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('enable %s', tbl), true);
  end if;
  execute format('select count(*) from %s', rowver.qualified(tbl)) into n;
  perform rowver.record_change(v, tbl, n);
end $$;

-- Enable versioning on tbl. Runs as T's owner, who must be a member of rowver_owner.
create or replace function rowver.enable(tbl regclass, key name[] default null,
                                         triggers boolean default true, ignore name[] default '{}')
returns bigint
language plpgsql
as $$
declare
  s text;
begin
  for s in select rowver.enable_ddl(tbl, key, triggers, ignore) loop
    execute s;
  end loop;
  return (select v.enabled_version from rowver.versioned v where v.relid = tbl);
end $$;

-- The exact statements that disable versioning on tbl. History is dropped unless kept.
create or replace function rowver.disable_ddl(tbl regclass, keep_history boolean default false)
returns setof text
language plpgsql stable
as $$
declare
  r   rowver.versioned;
  sch name;
  t   text;
begin
  select * into r from rowver.versioned v where v.relid = tbl;
  if not found then
    raise exception 'rowver: % is not versioned', tbl using errcode = '42704';
  end if;
  select n.nspname into sch from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = tbl;
  t := rowver.qualified(tbl);
  return next format('drop trigger if exists rowver_begin on %s', t);
  return next format('drop trigger if exists "~rowver_stamp" on %s', t);
  return next format('drop trigger if exists rowver_capture_insert on %s', t);
  return next format('drop trigger if exists rowver_capture_update on %s', t);
  return next format('drop trigger if exists rowver_capture_delete on %s', t);
  return next format('drop trigger if exists rowver_refuse_truncate on %s', t);
  return next format('drop function if exists %I.%I()', sch, r.capture_name);
  return next format('drop function if exists %I.%I()', sch, r.stamp_name);
  return next format('drop function if exists %I.%I(bigint)', sch, r.as_of_name);
  return next format('drop view if exists %I.%I', sch, r.versions_name);
  if not keep_history then
    return next format('drop table if exists %I.%I', sch, r.history_name);
  end if;
  return next format('alter table %s drop column rv_version', t);
  return next format('select rowver.unregister(%L)', t);
end $$;

create or replace function rowver.unregister(tbl regclass) returns void
language sql
begin atomic
  delete from rowver.versioned v where v.relid = tbl;
end;

create or replace function rowver.disable(tbl regclass, keep_history boolean default false) returns void
language plpgsql
as $$
declare
  s text;
begin
  for s in select rowver.disable_ddl(tbl, keep_history) loop
    execute s;
  end loop;
end $$;

-- Planning is read-only and open to all; enable, disable and register stay with
-- rowver_owner's members (they create objects rowver_owner owns).
grant execute on function rowver.generated_name(name, text), rowver.has_btree_eq(oid),
  rowver.payload_columns(regclass, name[]), rowver.qualified(regclass), rowver.row_columns(regclass),
  rowver.same_value_sql(name, boolean, text, text), rowver.key_join_sql(name[], text, text),
  rowver.table_key(regclass, name[]), rowver.check_versionable(regclass),
  rowver.capture_body(regclass, text, name[], text, text, text, text),
  rowver.enable_ddl(regclass, name[], boolean, name[]), rowver.disable_ddl(regclass, boolean)
to public;

reset role;
