-- Upgrading tables versioned by rowver 0.1, whose history and generated functions belonged
-- to rowver_owner (and so to every member of it): each goes to its table's owner, and is
-- made again as this release makes it (pinned operators, the admin function, history
-- closed while its mirror is stale). Runs as the installer, which needs the rights of each
-- table's owner (a superuser has them); a table it cannot upgrade keeps working as before,
-- and rowver check names it ('owner') until its owner runs rowver.refresh. Nothing to do
-- on later installs.

set search_path = pg_catalog, pg_temp;

do $$
declare
  r     rowver.versioned;
  sch   name;
  owner text;
begin
  for r in select v.* from rowver.versioned v join pg_class t on t.oid = v.relid
            where v.admin_name is null or v.restamp_name is null or v.security_hash is null
               or exists (select from pg_class h where h.relnamespace = t.relnamespace
                             and h.relname = v.history_name and h.relowner <> t.relowner)
            order by v.id loop
    begin
      sch := rowver.schema_of(r.relid);
      owner := (select c.relowner::regrole::text from pg_class c where c.oid = r.relid);
      execute format('alter table %I.%I owner to %s', sch, r.history_name, owner);
      execute format('alter view if exists %I.%I owner to %s', sch, r.versions_name, owner);
      execute format('alter function %I.%I() owner to %s', sch, r.capture_name, owner);
      execute format('alter function %I.%I() owner to %s', sch, r.stamp_name, owner);
      execute format('alter function %I.%I(bigint) owner to %s', sch, r.as_of_name, owner);
      -- 0.1's capture ran as rowver_owner and read T's rv_version; 0.2's runs as T's owner
      if owner <> 'rowver_owner' then
        execute format('revoke select (rv_version) on %s from rowver_owner', rowver.qualified(r.relid));
        execute format('revoke all on %I.%I from rowver_owner', sch, r.history_name);
      end if;
      perform rowver.refresh(r.relid);
    exception when insufficient_privilege then  -- (not the installer's: named, and check reports it)
      raise warning 'rowver: % keeps the ownership of rowver 0.1 (%); its owner runs rowver.refresh(%)',
        r.relid, sqlerrm, quote_literal(r.relid::text);
    end;
  end loop;
end $$;

-- Tables versioned by an earlier build of this release. A history made before it had BRIN
-- indexes on rv_until and rv_version gets them (rowver.history_brin_ddl). Generated objects
-- that are outdated call the catalog's functions, whose signatures may have changed (0.2's writers renumber
-- instead of failing): the table is refreshed, so that its writers keep working. What the
-- installer cannot do is named, and rowver check names an outdated table ('definition')
-- until its owner runs rowver.refresh.
do $$
declare
  r    rowver.versioned;
  hist regclass;
  col  name;
begin
  for r in select v.* from rowver.versioned v join pg_class t on t.oid = v.relid order by v.id loop
    hist := to_regclass(format('%I.%I', rowver.schema_of(r.relid), r.history_name));
    begin
      foreach col in array array['rv_until', 'rv_version']::name[] loop
        if hist is not null and not rowver.has_brin(hist, col) then
          execute rowver.history_brin_ddl(hist::text, r.history_name, col);
        end if;
      end loop;
      if r.definition_hash is distinct from md5(array_to_string(rowver.object_ddl(r), E';\n')) then
        perform rowver.refresh(r.relid);
      end if;
    exception when insufficient_privilege then  -- (not the installer's: named, and check reports it)
      raise warning 'rowver: % has objects of an earlier rowver (%); its owner runs rowver.refresh(%)',
        r.relid, sqlerrm, quote_literal(r.relid::text);
    end;
  end loop;
end $$;

reset search_path;
