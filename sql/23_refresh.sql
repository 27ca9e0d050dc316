-- Following schema changes: refresh reconciles a versioned table's history and generated
-- objects with what the table is now; alter wraps DDL that the versions view would block;
-- truncate empties a table with its deletes on record.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- The idempotent reconciler. History columns become a superset of T's: renamed columns
-- follow (by attnum), new columns are added (and read NULL as of versions before this
-- refresh), type changes convert history, dropped columns stay in history, retired. Then
-- every generated object, trigger (new partitions included), grant and policy is made
-- again, and T's grants and policies mirrored afresh. Column changes are recorded under a
-- changeset. Returns what changed; NULL when tbl is not versioned, so migrations may call
-- it after any change to any table. Needs the rights of T's owner, whose objects these are.
create or replace function rowver.refresh(tbl regclass) returns text
language plpgsql set client_min_messages = warning  -- no NOTICE per re-created object
                 set search_path = pg_catalog, pg_temp
as $$
declare
  r       rowver.versioned;
  sch     name;
  hist    regclass;
  v       bigint;    -- allocated only when columns change
  done    text[] := '{}';
  col     record;
begin
  select * into r from rowver.versioned x where x.relid = tbl;
  if not found then
    return null;
  end if;
  if not rowver.owns(tbl) then
    raise exception 'rowver: refreshing % needs the rights of its owner, %', tbl,
      (select c.relowner::regrole from pg_class c where c.oid = tbl) using errcode = '42501';
  end if;
  sch := rowver.schema_of(tbl);
  hist := format('%I.%I', sch, r.history_name)::regclass;
  -- no writes to T while its history changes shape
  execute format('lock table %s in share row exclusive mode', rowver.qualified(tbl));
  -- the view and the as-of function would block type changes of history columns;
  -- object_ddl makes both again
  perform rowver.detach_reads(r);

  -- renamed: the column at the attnum recorded for it has another name now. Through a
  -- temporary name first, so that columns which swapped names do not collide.
  create temp table rv_renamed on commit drop as
  select l.name as old, a.attname as new, format('rv_renaming_%s', a.attnum) as tmp
    from rowver.column_life l
    join pg_catalog.pg_attribute a on a.attrelid = tbl and a.attnum = l.attnum and not a.attisdropped
   where l.table_id = r.id and l.dropped_version is null and a.attname <> l.name;
  for col in select * from rv_renamed loop
    execute format('alter table %s rename column %I to %I', hist, col.old, col.tmp);
    update rowver.column_life l set name = col.tmp where l.table_id = r.id and l.name = col.old;
  end loop;
  for col in select * from rv_renamed loop
    execute format('alter table %s rename column %I to %I', hist, col.tmp, col.new);
    update rowver.column_life l set name = col.new where l.table_id = r.id and l.name = col.tmp;
    done := done || format('renamed %I to %I', col.old, col.new);
  end loop;
  update rowver.versioned x
     set key_columns = array(select coalesce(m.new, k) from unnest(x.key_columns) with ordinality u(k, i)
                               left join rv_renamed m on m.old = u.k order by u.i),
         ignore_columns = array(select coalesce(m.new, k) from unnest(x.ignore_columns) with ordinality u(k, i)
                                  left join rv_renamed m on m.old = u.k order by u.i)
   where x.id = r.id;
  drop table rv_renamed;

  -- dropped: retired, kept in history
  for col in
    select l.name from rowver.column_life l
     where l.table_id = r.id and l.dropped_version is null
       and not exists (select from rowver.payload_columns(tbl) p where p.name = l.name)
  loop
    v := coalesce(v, rowver.xact_version());
    update rowver.column_life l set dropped_version = v, attnum = null
     where l.table_id = r.id and l.name = col.name;
    done := done || format('retired %I', col.name);
  end loop;

  -- added (or added again after being dropped): a history column, and a start version
  for col in
    select p.name, p.attnum, p.history_type_sql from rowver.payload_columns(tbl) p
     where not exists (select from rowver.column_life l
                        where l.table_id = r.id and l.name = p.name and l.dropped_version is null)
  loop
    v := coalesce(v, rowver.xact_version());
    if not exists (select from pg_catalog.pg_attribute a
                    where a.attrelid = hist and a.attname = col.name and not a.attisdropped) then
      execute format('alter table %s add column %I %s', hist, col.name, col.history_type_sql);
    end if;
    insert into rowver.column_life as l (table_id, name, attnum, added_version)
    values (r.id, col.name, col.attnum, v)
    on conflict (table_id, name) do update
      set attnum = excluded.attnum, added_version = excluded.added_version, dropped_version = null;
    done := done || format('added %I', col.name);
  end loop;

  -- type changed: history converts (rowver.alter applies the DDL's own USING first)
  for col in
    select p.name, p.history_type_sql from rowver.payload_columns(tbl) p
      join pg_catalog.pg_attribute a on a.attrelid = hist and a.attname = p.name and not a.attisdropped
     where pg_catalog.format_type(a.atttypid, a.atttypmod) <> p.history_type_sql
  loop
    v := coalesce(v, rowver.xact_version());
    execute format('alter table %s alter column %I type %s using %I::%s',
                   hist, col.name, col.history_type_sql, col.name, col.history_type_sql);
    done := done || format('converted %I to %s', col.name, col.history_type_sql);
  end loop;

  -- keys may have been renamed; a table registered before admin and restamp functions gets them
  update rowver.versioned x
     set admin_name = coalesce(x.admin_name, rowver.generated_name(
                        (select c.relname from pg_class c where c.oid = tbl), '__rv_admin')),
         restamp_name = coalesce(x.restamp_name, rowver.generated_name(
                          (select c.relname from pg_class c where c.oid = tbl), '__rv_restamp'))
   where x.id = r.id returning * into r;
  perform rowver.regenerate(r);

  if v is not null then
    if coalesce(current_setting('rowver.message', true), '') = '' then
      perform set_config('rowver.message', format('refresh %s: %s', tbl, array_to_string(done, ', ')), true);
    end if;
    perform rowver.record_change(v, tbl, 0, 0, 0);
  end if;
  return coalesce(nullif(array_to_string(done, ', '), ''), 'up to date');
end $$;

-- Run DDL on a versioned table that its versions view would block (a column type change,
-- dropping a column), then refresh. `action` is what follows ALTER TABLE <tbl>, e.g.
-- 'alter column price type numeric(12,2) using price::numeric(12,2)'. A type change is
-- applied to the history too, with the same USING, before refresh. On a table that is not
-- versioned it is a plain ALTER TABLE (and returns NULL). No SET clause: the action is the
-- caller's own SQL, and means what it means on the caller's search_path.
create or replace function rowver.alter(tbl regclass, action text) returns text
language plpgsql
as $$
declare
  r   rowver.versioned;
  sch pg_catalog.name := rowver.schema_of(tbl);
begin
  if pg_catalog.strpos(action, ';') operator(pg_catalog.>) 0 then
    raise exception 'rowver: alter takes one ALTER TABLE action, without ";"' using errcode = '22023';
  end if;
  select * into r from rowver.versioned x where x.relid operator(pg_catalog.=) tbl;
  if not found then  -- an ordinary table: an ordinary ALTER (migrations may call this for any table)
    execute pg_catalog.format('alter table %s %s', rowver.qualified(tbl), action);
    return null;
  end if;
  perform rowver.detach_reads(r);
  execute pg_catalog.format('alter table %s %s', rowver.qualified(tbl), action);
  if action operator(pg_catalog.~*) '^\s*alter\s+(column\s+)?("([^"]|"")+"|\S+)\s+(set\s+data\s+)?type\s' then
    execute pg_catalog.format('alter table %I.%I %s', sch, r.history_name, action);
  end if;
  return rowver.refresh(tbl);
end $$;

-- Empty a versioned table with every row's delete on record (set-based, through the
-- capture triggers), then TRUNCATE it to give the space back. With cascade, versioned and
-- plain tables that reference it by foreign key are emptied too, as TRUNCATE ... CASCADE
-- would. Returns the number of rows deleted from tbl. Where row-level security hides rows
-- from the caller, only the rows it sees are deleted and the table is not truncated.
create or replace function rowver.truncate(tbl regclass, "cascade" boolean default false) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  rel regclass;
  n   bigint;
begin
  perform rowver.registered(tbl);
  if "cascade" then
    -- referencing tables first, deepest first, so no delete trips a foreign key
    for rel in
      with recursive refs(relid, depth) as (
        select tbl::oid, 0
        union
        select c.conrelid, r.depth + 1 from refs r
          join pg_catalog.pg_constraint c on c.confrelid = r.relid and c.contype = 'f'
         where r.depth < 32)
      select relid::regclass from refs
       where relid <> tbl and exists (select from rowver.versioned v where v.relid = refs.relid)
       group by relid order by max(depth) desc
    loop
      execute format('delete from %s', rowver.qualified(rel));
    end loop;
  end if;
  execute format('delete from %s', rowver.qualified(tbl));
  get diagnostics n = row_count;
  -- empty now, so the TRUNCATE guard lets it through (a table other tables reference can
  -- only be truncated with them: without cascade, the delete is all there is)
  if ("cascade" or not exists (select from pg_catalog.pg_constraint c where c.confrelid = tbl and c.contype = 'f'))
     and not row_security_active(tbl) then
    execute format('truncate %s %s', rowver.qualified(tbl), case when "cascade" then 'cascade' else '' end);
  end if;
  return n;
end $$;

grant execute on function rowver.refresh(regclass), rowver.alter(regclass, text),
  rowver.truncate(regclass, boolean)
to public;

reset search_path;
reset role;
