-- The floor for docs/peer_bench.py: the least a PL/pgSQL trigger can do to version rows. Every
-- written row is stamped from a sequence and every superseded or deleted row is copied into a
-- history table, by row triggers. Nothing else: no version per transaction (a statement's rows
-- get one each), no changesets, no head, no order between concurrent writers' versions, no
-- protection against a writer that sets the stamp itself. What rowver does beyond this is what
-- its guarantees cost; this file measures what is left when they are taken away.
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

-- Each table gets its own keep function, with a static INSERT that PL/pgSQL plans once.
create or replace function floor_enable(t regclass) returns void
language plpgsql
as $$
declare
  sch  name := (select n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = t);
  base name := (select c.relname from pg_class c where c.oid = t);
  hist text := format('%I.%I', sch, base || '__floor_history');
  keep text := format('%I.%I', sch, base || '__floor_keep');
  -- (T's primary key columns: history is found by key, as rowver's is)
  keys text := (select string_agg(format('%I', a.attname), ', ' order by k.n)
                  from pg_index i, unnest(i.indkey) with ordinality k(attnum, n)
                  join pg_attribute a on a.attrelid = t and a.attnum = k.attnum
                 where i.indrelid = t and i.indisprimary);
begin
  execute format('alter table %s add column floor_version bigint not null default 0', t);
  execute format('create table %s (like %s)', hist, t);
  execute format('alter table %s add column floor_until bigint', hist);
  execute format('create index on %s (%s, floor_version)', hist, keys);
  -- (NEW is null in a DELETE trigger: a deleted row's state ends with no version)
  execute format(E'create function %s() returns trigger language plpgsql as $k$\n'
                 'begin\n  insert into %s values (OLD.*, NEW.floor_version);\n  return null;\nend $k$', keep, hist);
  execute format('create trigger floor_stamp before insert or update on %s for each row execute function floor_stamp()', t);
  execute format('create trigger floor_keep after update or delete on %s for each row execute function %s()', t, keep);
end $$;
