-- Enabling and disabling versioning. enable_ddl()/disable_ddl() return the exact
-- statements; enable()/disable() run them. Both run as the caller, who must have the rights
-- of T's owner (ownership or membership) and CREATE on T's schema: no rowver role is needed,
-- and what is generated belongs to T's owner.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Whether enable copies tbl when not told (rewrite => null): when all of it (every
-- partition's heap, TOAST and indexes) takes at most rowver.rewrite_limit (256MB unless
-- set), the copy holds its exclusive lock for seconds. Without a copy rv_version is a
-- fast default (atthasmissing), and PostgreSQL then never scans the table through its
-- physical row shape: every full scan projects each row, ~15% slower on narrow rows, until
-- VACUUM FULL or CLUSTER rewrites the table (both clear atthasmissing).
create or replace function rowver.rewrite_by_default(tbl regclass) returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select sum(pg_catalog.pg_total_relation_size(r.rel))  -- (a partitioned table itself has size 0)
         <= pg_catalog.pg_size_bytes(coalesce(nullif(pg_catalog.current_setting('rowver.rewrite_limit', true), ''),
                                              '256MB'))
    from (select tbl as rel union all select rowver.partitions(tbl)) r
$$;

-- Whether every row of tbl (every partition's) stores its rv_version; false while the
-- column is still the fast default of an enable without a copy.
create or replace function rowver.stores_version(tbl regclass) returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select bool_and(not a.atthasmissing)
    from pg_catalog.pg_attribute a
   where a.attrelid in (select tbl union all select rowver.partitions(tbl))
     and a.attname = 'rv_version'
$$;

-- The exact statements that enable versioning on tbl, in order. Nothing is changed.
drop function if exists rowver.enable_ddl(regclass, name[], boolean, name[]);  -- before `rewrite`
create or replace function rowver.enable_ddl(tbl regclass, key name[] default null,
                                             triggers boolean default true,
                                             ignore name[] default '{}',
                                             rewrite boolean default null)
returns setof text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  sch     name;
  rel     name;
  t       text := rowver.qualified(tbl);
  keys    name[];
  hist    name;
  bad     name;
  objects text[];
begin
  if not rowver.owns(tbl) then
    raise exception 'rowver: enabling % needs the rights of its owner, %', tbl,
      (select c.relowner::regrole from pg_class c where c.oid = tbl) using errcode = '42501';
  end if;
  perform rowver.check_versionable(tbl);
  if not has_schema_privilege(rowver.schema_of(tbl), 'CREATE') then
    raise exception 'rowver: enabling % needs CREATE on schema %', tbl, quote_ident(rowver.schema_of(tbl))
      using errcode = '42501', hint = 'its history, view and functions are made beside it';
  end if;
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
  hist := rowver.generated_name(rel, '__history');

  -- what follows reads and creates names with nothing but pg_catalog on the path
  return next 'set local search_path = pg_catalog, pg_temp';

  -- the version column: existing rows become the first version of their keys, under the
  -- enabling changeset (a constant default adds the column without rewriting the table)
  return next format($s$do $rv$ begin
  execute pg_catalog.format('alter table %%s add column rv_version bigint not null default %%s',
                            %L, rowver.xact_version());
end $rv$ $s$, t);
  return next format('alter table %s alter column rv_version drop default', t);
  -- rewrite: copy every row once, so that each carries rv_version on disk (see
  -- rewrite_by_default for the default and what a fast default costs). A USING expression
  -- other than the column itself makes ALTER TYPE rewrite the table, under an ACCESS
  -- EXCLUSIVE lock for the whole copy.
  if coalesce(rewrite, rowver.rewrite_by_default(tbl)) then
    return next format('alter table %s alter column rv_version type bigint using rv_version + 0', t);
  end if;

  -- history: T's columns with base types, all nullable, no constraints; its primary key
  -- (key, rv_version) serves as-of point lookups and fails loudly on a version written twice
  return next format(E'create table %I.%I (\n%s,\n  rv_version bigint not null,\n'
                     '  rv_until bigint,\n  rv_deleted boolean not null default false,\n'
                     '  primary key (%s, rv_version)\n)',
    sch, hist,
    (select string_agg(format('  %I %s', p.name, p.history_type_sql), E',\n' order by p.attnum)
       from rowver.payload_columns(tbl) p),
    (select string_agg(format('%I', k), ', ') from unnest(keys) k));
  return next format('alter table %I.%I owner to %s', sch, hist,
                     (select c.relowner::regrole from pg_class c where c.oid = tbl));
  return next rowver.history_brin_ddl(format('%I.%I', sch, hist), hist, 'rv_until');
  return next rowver.history_brin_ddl(format('%I.%I', sch, hist), hist, 'rv_version');

  objects := rowver.object_ddl(tbl, keys, ignore, triggers, hist,
                               rowver.generated_name(rel, '__versions'), rowver.generated_name(rel, '__as_of'),
                               rowver.generated_name(rel, '__rv_stamp'), rowver.generated_name(rel, '__rv_capture'),
                               rowver.generated_name(rel, '__rv_admin'), rowver.generated_name(rel, '__rv_restamp'));
  return query select unnest(objects);
  return query select unnest(rowver.mirror_ddl(tbl, format('%I.%I', sch, hist),
                                               format('%I.%I', sch, rowver.generated_name(rel, '__versions')),
                                               format('%I.%I', sch, rowver.generated_name(rel, '__as_of'))));

  -- the registry, with a hash of the generated objects (status compares it)
  return next format('select rowver.register(%L, %L, %L, %L, %L)', t, keys, ignore, triggers,
                     md5(array_to_string(objects, E';\n')));
end $$;

-- Record a newly versioned table, its columns, and its existing rows as the enabling
-- changeset (as T's owner: row-level security, sql/15_access.sql).
create or replace function rowver.register(tbl regclass, keys name[], ignore name[], triggers boolean,
                                           definition_hash text) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  v   bigint := rowver.xact_version();
  rel name := (select c.relname from pg_catalog.pg_class c where c.oid = tbl);
  id  integer;
  n   bigint;
  msg text;
begin
  insert into rowver.versioned (relid, key_columns, ignore_columns, triggers, history_name,
                                versions_name, as_of_name, stamp_name, capture_name, admin_name,
                                restamp_name, enabled_version, definition_hash, security_hash)
  values (tbl, keys, ignore, triggers, rowver.generated_name(rel, '__history'),
          rowver.generated_name(rel, '__versions'), rowver.generated_name(rel, '__as_of'),
          rowver.generated_name(rel, '__rv_stamp'), rowver.generated_name(rel, '__rv_capture'),
          rowver.generated_name(rel, '__rv_admin'), rowver.generated_name(rel, '__rv_restamp'), v,
          definition_hash, rowver.security_hash(tbl))
  returning versioned.id into id;
  insert into rowver.column_life (table_id, name, attnum)
  select id, p.name, p.attnum from rowver.payload_columns(tbl) p;
  -- the message names every table this transaction enables, unless the user gave one
  msg := coalesce(current_setting('rowver.message', true), '');
  if msg = '' or msg = current_setting('rowver.enable_message', true) then
    msg := case when msg = '' then format('enable %s', tbl) else format('%s, %s', msg, tbl) end;
    perform set_config('rowver.message', msg, true), set_config('rowver.enable_message', msg, true);
    update rowver.changeset c set message = msg where c.version = v;  -- made by an earlier enable
  end if;
  execute format('select count(*) from %s', rowver.qualified(tbl)) into n;
  perform rowver.record_change(v, tbl, n, n, n);
end $$;

-- Enable versioning on tbl; returns the enabling changeset's version.
drop function if exists rowver.enable(regclass, name[], boolean, name[]);  -- before `rewrite`
create or replace function rowver.enable(tbl regclass, key name[] default null,
                                         triggers boolean default true, ignore name[] default '{}',
                                         rewrite boolean default null)
returns bigint
language plpgsql set client_min_messages = warning  -- no NOTICE per re-created object
                 set search_path = pg_catalog, pg_temp
as $$
declare
  s text;
begin
  for s in select rowver.enable_ddl(tbl, key, triggers, ignore, rewrite) loop
    execute s;
  end loop;
  return (select v.enabled_version from rowver.versioned v where v.relid = tbl);
end $$;

-- The exact statements that disable versioning on tbl. History is dropped unless kept.
create or replace function rowver.disable_ddl(tbl regclass, keep_history boolean default false)
returns setof text
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r   rowver.versioned := rowver.registered(tbl);
  sch name := rowver.schema_of(tbl);
  t   text;
  rel regclass;
begin
  if not rowver.owns(tbl) then
    raise exception 'rowver: disabling % needs the rights of its owner, %', tbl,
      (select c.relowner::regrole from pg_class c where c.oid = tbl) using errcode = '42501';
  end if;
  for rel in select tbl union all select rowver.partitions(tbl) loop
    t := rowver.qualified(rel);
    return next format('drop trigger if exists rowver_begin on %s', t);
    return next format('drop trigger if exists "~rowver_stamp" on %s', t);
    return next format('drop trigger if exists rowver_capture_insert on %s', t);
    return next format('drop trigger if exists rowver_capture_update on %s', t);
    return next format('drop trigger if exists rowver_capture_delete on %s', t);
    return next format('drop trigger if exists rowver_refuse_truncate on %s', t);
    return next format('drop trigger if exists rowver_not_a_partition on %s', t);
  end loop;
  return next format('drop function if exists %I.%I()', sch, r.capture_name);
  if r.admin_name is not null then
    return next format('drop function if exists %I.%I(text, jsonb)', sch, r.admin_name);
  end if;
  if r.restamp_name is not null then
    return next format('drop function if exists %I.%I(bigint, bigint)', sch, r.restamp_name);
  end if;
  return next format('drop function if exists %I.%I()', sch, r.stamp_name);
  return next format('drop function if exists %I.%I(bigint)', sch, r.as_of_name);
  return next format('drop view if exists %I.%I', sch, r.versions_name);
  if not keep_history then
    return next format('drop table if exists %I.%I', sch, r.history_name);
  end if;
  return next format('alter table %s drop column rv_version', rowver.qualified(tbl));
  return next format('select rowver.unregister(%L)', rowver.qualified(tbl));
end $$;

-- The last step of disable: tbl's registry entry and its changesets' counts go. SECURITY
-- DEFINER (owners may not delete catalog rows), and only once tbl has lost its rv_version
-- column, which only tbl's owner can drop: so anyone may finish what the owner began.
create or replace function rowver.unregister(tbl regclass) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from pg_attribute a where a.attrelid = tbl and a.attname = 'rv_version' and not a.attisdropped) then
    raise exception 'rowver: % still has its rv_version column; rowver.disable unregisters it', tbl
      using errcode = '55000';
  end if;
  delete from rowver.changeset_table c using rowver.versioned v where v.relid = tbl and c.table_id = v.id;
  delete from rowver.versioned v where v.relid = tbl;
end $$;

create or replace function rowver.disable(tbl regclass, keep_history boolean default false) returns void
language plpgsql set client_min_messages = warning  -- no NOTICE per re-created object
                 set search_path = pg_catalog, pg_temp
as $$
declare
  s text;
begin
  for s in select rowver.disable_ddl(tbl, keep_history) loop
    execute s;
  end loop;
end $$;

-- Forget a versioned table that was dropped without rowver.disable (DROP TABLE ... CASCADE
-- drops its view and functions, not its registry entry): its entry and its changesets'
-- counts go, as disable would remove them. Its history table, if still there, is the
-- caller's to drop or keep. The table's owner is unknown now: rowver_admin's to do.
create or replace function rowver.forget(table_oid oid) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from pg_catalog.pg_class c where c.oid = table_oid) then
    raise exception 'rowver: table % still exists', table_oid::regclass
      using errcode = '55000', hint = 'rowver.disable stops versioning a table that exists';
  end if;
  if not exists (select from rowver.versioned v where v.relid = table_oid) then
    raise exception 'rowver: no versioned table had oid %', table_oid
      using errcode = '42704', hint = 'rowver check names dropped versioned tables by their oid';
  end if;
  delete from rowver.changeset_table c using rowver.versioned v where v.relid = table_oid and c.table_id = v.id;
  delete from rowver.versioned v where v.relid = table_oid;
end $$;

-- Open to all: each runs as its caller and checks (or row-level security checks) that the
-- caller has the rights of T's owner. Forgetting a dropped table is rowver_admin's.
grant execute on function rowver.rewrite_by_default(regclass), rowver.stores_version(regclass),
  rowver.enable_ddl(regclass, name[], boolean, name[], boolean),
  rowver.register(regclass, name[], name[], boolean, text),
  rowver.enable(regclass, name[], boolean, name[], boolean),
  rowver.disable_ddl(regclass, boolean), rowver.unregister(regclass), rowver.disable(regclass, boolean)
to public;
grant execute on function rowver.forget(oid) to rowver_admin;

reset search_path;
reset role;
