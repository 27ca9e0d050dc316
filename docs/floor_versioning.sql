-- The floor for docs/peer_bench.py: the least a PL/pgSQL trigger can do to version rows. Every
-- written row is stamped from a sequence and every superseded or deleted row is copied into a
-- history table, by row triggers. Nothing else: no version per transaction (a statement's rows
-- get one each), no changesets, no head, no order between concurrent writers' versions, no
-- protection against a writer that sets the stamp itself. What rowver does beyond this is what
-- its guarantees and its bookkeeping cost; floor_tx, below, adds a version and a changeset per
-- transaction and history only a definer writes, to tell the two apart.
--
-- select floor_enable('t') adds T.floor_version and T__floor_history (made in a scratch database).

create sequence if not exists floor_version_seq;

create or replace function floor_stamp() returns trigger
language plpgsql
as $$
begin
  NEW.floor_version := nextval('floor_version_seq');
  return NEW;
end $$;

-- T's floor_version column and its history T__floor_history (T's columns and floor_until),
-- indexed by T's primary key (history is found by key, as rowver's is); returns the history's
-- name, and T's schema-qualified name with the suffix given (for T's trigger function).
create or replace function floor_history(t regclass, fn_suffix text, out hist text, out fn text)
language plpgsql
as $$
declare
  sch  name := (select n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = t);
  base name := (select c.relname from pg_class c where c.oid = t);
  keys text := (select string_agg(format('%I', a.attname), ', ' order by k.n)
                  from pg_index i, unnest(i.indkey) with ordinality k(attnum, n)
                  join pg_attribute a on a.attrelid = t and a.attnum = k.attnum
                 where i.indrelid = t and i.indisprimary);
begin
  hist := format('%I.%I', sch, base || '__floor_history');
  fn := format('%I.%I', sch, base || fn_suffix);
  execute format('alter table %s add column floor_version bigint not null default 0', t);
  execute format('create table %s (like %s)', hist, t);
  execute format('alter table %s add column floor_until bigint', hist);
  execute format('create index on %s (%s, floor_version)', hist, keys);
end $$;

-- Each table gets its own keep function, with a static INSERT that PL/pgSQL plans once.
create or replace function floor_enable(t regclass) returns void
language plpgsql
as $$
declare
  made record := floor_history(t, '__floor_keep');
begin
  -- (NEW is null in a DELETE trigger: a deleted row's state ends with no version)
  execute format(E'create function %s() returns trigger language plpgsql as $k$\n'
                 'begin\n  insert into %s values (OLD.*, NEW.floor_version);\n  return null;\nend $k$', made.fn, made.hist);
  execute format('create trigger floor_stamp before insert or update on %s for each row execute function floor_stamp()', t);
  execute format('create trigger floor_keep after update or delete on %s for each row execute function %s()', t, made.fn);
end $$;

-- A second floor, one step up: what a version per transaction and a changeset cost, with the
-- history kept where writers cannot write it. One BEFORE ROW trigger per table, SECURITY
-- DEFINER with a pinned search path (as rowver's capture): a transaction's first row takes a
-- version from the sequence and writes a changeset row (version, transaction, role, time);
-- every row is stamped with that version, and every superseded or deleted row is copied into
-- history. Still none of the rest: no head (nothing says which versions are finished), no
-- order between concurrent writers' versions (no renumbering), no per-table counts, no no-op
-- detection, and the transaction's version is kept in a setting its writer could change
-- (rowver checks its version against a row only it can write, at every statement).
--
-- select floor_tx_enable('t') adds T.floor_version and T__floor_history.

create table if not exists floor_changeset (
  version    bigint primary key,
  xid        xid8 not null,
  db_role    text not null,
  created_at timestamptz not null default now()
);

create or replace function floor_tx_enable(t regclass) returns void
language plpgsql
as $$
declare
  made record := floor_history(t, '__floor_tx_stamp');
  -- (where this file made the sequence and the changesets: the trigger's search path is pinned)
  home text := (select quote_ident(n.nspname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where c.oid = 'floor_changeset'::regclass);
begin
  execute format(E'create function %s() returns trigger language plpgsql\n'
                 'security definer set search_path = pg_catalog, pg_temp as $k$\n'
                 'declare\n  v bigint;\nbegin\n'
                 '  if coalesce(current_setting(''floor.version'', true), '''') = '''' then\n'
                 '    v := nextval(''%2$s.floor_version_seq'');\n'
                 '    insert into %2$s.floor_changeset (version, xid, db_role) values (v, pg_current_xact_id(), session_user);\n'
                 '    perform set_config(''floor.version'', v::text, true);\n'
                 '  else\n'
                 '    v := current_setting(''floor.version'')::bigint;\n'
                 '  end if;\n'
                 '  if TG_OP <> ''INSERT'' then\n'
                 '    insert into %3$s values (OLD.*, v);\n'
                 '  end if;\n'
                 '  if TG_OP = ''DELETE'' then\n    return OLD;\n  end if;\n'
                 '  NEW.floor_version := v;\n  return NEW;\nend $k$', made.fn, home, made.hist);
  execute format('create trigger floor_tx_stamp before insert or update or delete on %s for each row execute function %s()',
                 t, made.fn);
end $$;
