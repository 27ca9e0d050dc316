-- rowver.analyze: the planner's statistics of a versioned table and its history, the summaries
-- of the history's new BRIN ranges, and the table's floor, below which as-of reads skip the
-- table itself.
--
-- As-of reads skip the history pages a BRIN range summary rules out, and read every page of a
-- range not yet summarized. Ranges are summarized as they fill by autovacuum (autosummarize), or
-- by VACUUM; where autovacuum is off, or its queue of requests full (a large load fills ranges
-- faster than it takes them), they stay unsummarized: 50 rounds of updates on 200,000 rows left
-- 833 ranges so, and reads of the oldest version and of head took 5.8 and 7.8 times a plain scan,
-- 1.7 and 1.5 once summarized.
--
-- An as-of read of version v is T's rows stamped at or below v plus the history states alive at
-- v. After rows have been updated, the oldest versions find none of their rows in T, yet every
-- read scanned it: as long as T again. A version no current row of T is older than (its floor)
-- is written into T's as-of function, so that reads below it leave T alone.
--
-- Why a floor stays true: a row's version only ever rises (the stamp writes the writer's
-- version, a renumber moves rows up, a no-op update keeps its own), and every row written from
-- now on carries a version above head. So the floor is the smallest rv_version in a snapshot
-- taken after head was read, or head + 1, whichever is lower. rowver.check verifies it.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Analyze T and its history, summarize the history's new BRIN ranges, and set T's floor (T's
-- owner; READ COMMITTED, so that the scan's snapshot is taken after head). Returns the floor.
-- Not raised where a writer may set rv_version itself (triggers => false), or where row-level
-- security is forced on T's owner (its scan would not see every row).
create or replace function rowver.analyze(tbl regclass) returns bigint
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  r       rowver.versioned := rowver.registered(tbl);
  sch     name := rowver.schema_of(tbl);
  brin    regclass;
  h       bigint;
  oldest  bigint;
  floor   bigint;
  objects text[];
begin
  if not rowver.owns(tbl) then
    raise exception 'rowver: only the owner of % may analyze it', tbl using errcode = '42501';
  end if;
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'rowver: rowver.analyze runs in READ COMMITTED (it reads the table after head)'
      using errcode = '25001';
  end if;
  execute format('analyze %s, %I.%I', rowver.qualified(tbl), sch, r.history_name);
  for brin in select i.indexrelid::regclass from pg_index i join pg_class c on c.oid = i.indexrelid
                join pg_am a on a.oid = c.relam
               where i.indrelid = format('%I.%I', sch, r.history_name)::regclass and a.amname = 'brin' loop
    perform brin_summarize_new_values(brin);
  end loop;
  if not r.triggers or (select c.relforcerowsecurity from pg_class c where c.oid = tbl) then
    return r.current_floor;
  end if;
  h := rowver.head();
  execute format('select min(t.rv_version) from %s t', rowver.qualified(tbl)) into oldest;
  floor := least(coalesce(oldest, h + 1), h + 1);
  if floor is not distinct from r.current_floor then
    return floor;
  end if;
  update rowver.versioned x set current_floor = floor where x.id = r.id;
  -- T's as-of function, made again with the floor (object_ddl makes it first); the rest of
  -- what object_ddl makes is unchanged, and its hash is recorded as refresh records it
  objects := rowver.object_ddl(r);
  if position(format('function %I.%I(version bigint)', sch, r.as_of_name) in objects[1]) = 0 then
    raise exception 'rowver: object_ddl no longer makes the as-of function first' using errcode = 'XX000';
  end if;
  execute objects[1];
  update rowver.versioned x set definition_hash = md5(array_to_string(objects, E';\n')) where x.id = r.id;
  return floor;
end $$;

grant execute on function rowver.analyze(regclass) to public;

reset search_path;
reset role;
