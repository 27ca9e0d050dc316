-- What is installed and whether it is sound: rowver status and rowver check.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- Versioned tables with their sizes. Counts are exact (they scan), and null where the caller
-- may not read the table or its history (status runs as its caller).
create or replace function rowver.status()
returns table (table_name text, key_columns name[], triggers boolean, ignore_columns name[],
               current_rows bigint, history_rows bigint, versions bigint, enabled_version bigint,
               definition text)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  r rowver.versioned;
  sch name;
begin
  for r in select * from rowver.versioned v
            where exists (select from pg_catalog.pg_class c where c.oid = v.relid)
            order by relid::text loop
    sch := rowver.schema_of(r.relid);
    table_name := r.relid::text;
    key_columns := r.key_columns;
    triggers := r.triggers and not exists (
      select from pg_catalog.pg_trigger t
       where t.tgrelid = r.relid and t.tgname like '%rowver%' and t.tgenabled = 'D');
    ignore_columns := r.ignore_columns;
    current_rows := null;
    history_rows := null;
    begin
      execute format('select count(*) from %s', rowver.qualified(r.relid)) into current_rows;
      execute format('select count(*) from %I.%I', sch, r.history_name) into history_rows;
    exception when insufficient_privilege or object_not_in_prerequisite_state then
      null;  -- (not the caller's to count, or history closed to it until refresh: no count)
    end;
    versions := (select count(*) from rowver.changeset_table ct where ct.table_id = r.id);
    enabled_version := r.enabled_version;
    -- current: what is installed is what the generator would make now
    definition := case
      when to_regclass(format('%I.%I', sch, r.history_name)) is null then 'missing'
      when r.definition_hash = md5(array_to_string(rowver.object_ddl(r), E';\n')) then 'installed'
      else 'outdated' end;
    return next;
  end loop;
end $$;

-- Writers holding head back: the running transactions that hold a version's slot (live or
-- prepared), oldest version first, with the session (or prepared transaction) to ask. A
-- diagnostic: it reads pg_locks (every running transaction holds a lock on its own id),
-- which the write and read paths never do. A slot held for a version not yet handed out is
-- left out. As its caller, who sees other roles' sessions' start and state only with
-- pg_read_all_stats.
create or replace function rowver.in_flight()
returns table (version bigint, pid integer, xact_start timestamptz, state text, prepared_gid text)
language sql volatile set search_path = pg_catalog, pg_temp
as $$
  select v.version, l.pid, coalesce(a.xact_start, p.prepared),
         case when p.gid is not null then 'prepared' else a.state end, p.gid
    from pg_locks l
    join rowver.slot s on s.xmax = l.transactionid
   cross join lateral (select rowver.held_version(s.id, m.head, q.top) as version from rowver.head_mark m,
                         (select case when q.is_called then q.last_value else q.last_value - 1 end as top
                            from rowver.version_seq q) q) v
    left join pg_stat_activity a on a.pid = l.pid
    left join pg_prepared_xacts p on p.transaction = l.transactionid
   where l.locktype = 'transactionid' and l.mode = 'ExclusiveLock' and l.granted
     and v.version <= (select case when q.is_called then q.last_value else q.last_value - 1 end from rowver.version_seq q)
   order by 1
$$;

-- The invariants of DESIGN §7, one row per violation (none: all hold).
create or replace function rowver.check(tbl regclass default null)
returns table (table_name text, invariant text, detail text)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
declare
  r   rowver.versioned;
  sch name;
  h   text;
  k   text;
  v   text;
  counted bigint;
  known   boolean;
  actual  bigint;
begin
  if (select s.seqcache from pg_catalog.pg_sequence s where s.seqrelid = 'rowver.version_seq'::regclass) <> 1 then
    return query select null::text, 'sequence', 'rowver.version_seq must have CACHE 1';
  end if;
  return query
    select x.relid::oid::text, 'dropped',
           format('table %s was dropped without rowver.disable; rowver_admin''s select rowver.forget(%s) forgets it'
                  ' (a history table %I left behind is yours to drop or keep)',
                  x.relid::oid, x.relid::oid, x.history_name)
      from rowver.versioned x
     where tbl is null and not exists (select from pg_catalog.pg_class c where c.oid = x.relid);
  for r in select * from rowver.versioned x
            where (tbl is null or x.relid = tbl)
              and exists (select from pg_catalog.pg_class c where c.oid = x.relid)
            order by relid::text loop
    sch := rowver.schema_of(r.relid);
    h := format('%I.%I', sch, r.history_name);
    v := format('%I.%I', sch, r.versions_name);
    k := (select string_agg(format('%I', c), ', ') from unnest(r.key_columns) c);

    -- no row of T is older than its floor, which T's as-of function skips T below (rowver.analyze)
    if r.current_floor is not null then
      return query execute format(
        'select $1::text, ''floor'', pg_catalog.format(''%%s rows of %%s are older than its floor (version %%s), so '
        'as-of reads below it miss them; rowver analyze sets the floor again'', count(*), $1, $2)'
        ' from %s t where t.rv_version < $2 having count(*) > 0', rowver.qualified(r.relid))
        using r.relid::text, r.current_floor;
    end if;

    -- whoever may read T may read its history, under the same read policies, and no one else
    return query
      select r.relid::text, 'grants', format('%s may read %s but not its history', g.who, r.relid)
        from (select case when x.grantee = 0 then 'public' else pg_get_userbyid(x.grantee) end as who
                from (select (aclexplode(c.relacl)).* from pg_class c where c.oid = r.relid) x
               where x.privilege_type = 'SELECT') g
       where not has_table_privilege(g.who, h, 'SELECT');
    return query
      select r.relid::text, 'grants',
             format('%s may read the history of %s but not %s itself (its reads are refused until rowver.refresh)',
                    g.who, r.relid, r.relid)
        from (select case when x.grantee = 0 then 'public' else pg_get_userbyid(x.grantee) end as who
                from (select (aclexplode(c.relacl)).* from pg_class c where c.oid = h::regclass) x
               where x.privilege_type = 'SELECT') g
       where not has_table_privilege(g.who, r.relid, 'SELECT');
    return query
      select r.relid::text, 'policies', format('policy %I of %s is not on its history', p.polname, r.relid)
        from pg_policy p
       where p.polrelid = r.relid and p.polcmd in ('r', '*')
         and not exists (select from pg_policy q where q.polrelid = h::regclass and q.polname = p.polname);
    return query
      select r.relid::text, 'policies',
             format('the row-level security of %s changed after it was mirrored onto its history, which '
                    'is closed to everyone but its owner until rowver.refresh', r.relid)
       where rowver.security_hash(r.relid) is distinct from r.security_hash;
    return query
      select r.relid::text, 'policies',
             format('the history of %s is not guarded (row-level security off, or no "~rowver_guard" policy)', r.relid)
        from pg_class c
       where c.oid = h::regclass
         and not (c.relrowsecurity
                  and exists (select from pg_policy q where q.polrelid = c.oid and q.polname = '~rowver_guard'));

    -- what rowver generated belongs to T's owner (DESIGN §6), and its trigger functions
    -- are no one else's to run or attach
    return query
      select r.relid::text, 'owner', format('%s belongs to %s, but %s belongs to %s', o.what, o.owner,
                                            r.relid, t.relowner::regrole)
        from pg_class t,
             lateral (select format('%I.%I', sch, c.relname) as what, c.relowner::regrole as owner
                        from pg_class c where c.relnamespace = t.relnamespace
                         and c.relname in (r.history_name, r.versions_name) and c.relowner <> t.relowner
                      union all
                      select p.oid::regprocedure::text, p.proowner::regrole
                        from pg_proc p where p.pronamespace = t.relnamespace
                         and p.proname in (r.as_of_name, r.stamp_name, r.capture_name, r.admin_name, r.restamp_name)
                         and p.proowner <> t.relowner) o
       where t.oid = r.relid;
    return query
      select r.relid::text, 'execute', format('%s may be run by PUBLIC', p.oid::regprocedure)
        from pg_proc p
       where p.pronamespace = (select c.relnamespace from pg_class c where c.oid = r.relid)
         and p.proname in (r.stamp_name, r.capture_name, r.admin_name)
         and has_function_privilege('public', p.oid, 'EXECUTE');

    -- the rest reads T and its history: only where the caller may (check runs as its caller;
    -- a superuser or T's owner sees every table), and not while history is closed to it
    continue when not (has_table_privilege(r.relid, 'SELECT') and has_table_privilege(h, 'SELECT'))
               or (rowver.security_hash(r.relid) is distinct from r.security_hash and row_security_active(h::regclass));


    return query execute format(
      'select %L, ''interval'', format(''key %%s: version %%s until %%s'', row(%s), rv_version, rv_until)
         from %s where (not rv_deleted and (rv_until is null or rv_until <= rv_version))
                    or (rv_deleted and rv_until is distinct from rv_version)', r.relid::text, k, h);

    return query execute format(
      'select %L, ''overlap'', format(''key %%s: version %%s until %%s overlaps version %%s'', row(%s), rv_version, rv_until, next_version)
         from (select %s, rv_version, rv_until,
                      lead(rv_version) over (partition by %s order by rv_version) as next_version
                 from %s where not rv_deleted) x
        where next_version < coalesce(rv_until, 9223372036854775807)', r.relid::text, k, k, k, v);

    -- each key's last stored event leads to its current row: a state superseded at u is
    -- followed by a current row written at u (or a tombstone at u); a tombstone by no row or
    -- a later one. (A data-only restore that let the stamp rewrite versions breaks this.)
    -- Below a retention horizon the states in between were pruned: a state kept for a tag
    -- may be followed by nothing stored.
    return query execute format(
      'select %L, ''gap'', format(''key %%s: history ends at version %%s, the current row is %%s'',
                                  row(%s), coalesce(l.rv_until, l.rv_version), coalesce(t.rv_version::text, ''missing''))
         from (select distinct on (%s) * from %s order by %s, rv_version desc, rv_deleted desc) l
         left join %s t on %s
        where ((not l.rv_deleted and t.rv_version is distinct from l.rv_until)
               or (l.rv_deleted and t.rv_version <= l.rv_version))
          and coalesce(l.rv_until, l.rv_version) >= $1',
      r.relid::text, (select string_agg(format('l.%I', c), ', ') from unnest(r.key_columns) c),
      k, h, k, rowver.qualified(r.relid), rowver.key_join_sql(r.relid, r.key_columns, 't', 'l'))
    using coalesce((select x.horizon from rowver.retention x where x.table_id = r.id), 0);

    return query execute format(
      'select %L, ''changeset'', format(''version %%s has no changeset'', x.v)
         from (select distinct rv_version as v from %s union select distinct rv_until from %s where rv_until is not null) x
        where not exists (select from rowver.changeset c where c.version = x.v)', r.relid::text, v, h);

    -- a state that superseded nothing (an insert) was counted as one: diffs and the change
    -- feed read T for keys written in a range only where its changesets inserted
    -- (changeset_table.inserted); below a retention horizon a predecessor may be pruned
    return query execute format(
      'select %L, ''inserted'', format(''key %%s: inserted at version %%s, which counted no insert'', row(%s), s.rv_version)
         from %s s
         join rowver.changeset_table ct on ct.table_id = %s and ct.version = s.rv_version and ct.inserted = 0
        where not s.rv_deleted and s.rv_version > $1
          and not exists (select from %s p where %s and p.rv_until = s.rv_version)',
      r.relid::text, (select string_agg(format('s.%I', c), ', ') from unnest(r.key_columns) c),
      v, r.id, h, rowver.key_join_sql(r.relid, r.key_columns, 'p', 's'))
    using coalesce((select x.horizon from rowver.retention x where x.table_id = r.id), 0);

    -- the history's BRIN indexes, which keep as-of reads, diffs and the change feed from
    -- reading all of it (rowver init adds them to histories made before them)
    return query
      select r.relid::text, 'index', format('%s has no BRIN index on %s: reads scan all of it; rowver init adds it',
                                            h, col)
        from unnest(array['rv_until', 'rv_version']::name[]) col
       where not rowver.has_brin(h::regclass, col);

    -- the column registry: every column of T has its lifetime recorded (enable and refresh
    -- write it). Without it, refresh would take the column for a new one and hide its past.
    -- A data-only restore of a full dump without --disable-triggers loses every row: the
    -- foreign key to rowver.versioned fires before the registry it points at is loaded.
    return query
      select r.relid::text, 'registry',
             format('rowver.column_life has no record of %s %s (a data-only restore without --disable-triggers?)',
                    case when count(*) > 1 then 'columns' else 'column' end, string_agg(format('%I', p.name), ', ' order by p.attnum))
        from rowver.payload_columns(r.relid) p
       where not exists (select from rowver.column_life l
                          where l.table_id = r.id and l.dropped_version is null
                            and (l.name = p.name or l.attnum = p.attnum))  -- (a rename not yet refreshed)
      having count(*) > 0;

    -- every row of T came through capture: T holds as many rows as its changesets added net
    -- (with triggers off, other writers are not tracked; counts recorded by a rowver that did
    -- not keep them leave the table out). A data-only restore without --disable-triggers
    -- breaks this: a table whose COPY failed is empty, a restamped one counted twice.
    -- (One statement, so that both sides are counted in one snapshot while writers run.)
    if r.triggers then
      execute format(
        'select (select count(*) from %s),
                (select coalesce(sum(ct.net), 0) from rowver.changeset_table ct where ct.table_id = $1)
                  + coalesce((select x.net from rowver.retention x where x.table_id = $1), 0),
                not exists (select from rowver.changeset_table ct where ct.table_id = $1 and ct.net is null)
                  and not exists (select from rowver.retention x where x.table_id = $1 and x.net is null)',
        rowver.qualified(r.relid)) using r.id into actual, counted, known;
      if known and actual <> counted then
        return query select r.relid::text, 'rows',
          format('%s holds %s rows, but its changesets added %s: rows written or lost without capture '
                 '(a data-only restore without --disable-triggers, a partition attached or detached?)',
                 r.relid, actual, counted);
      end if;
    end if;

    return query
      select r.relid::text, 'definition', 'generated objects are outdated (the table changed); run rowver.refresh'
       where (select x.definition_hash from rowver.versioned x where x.id = r.id)
             is distinct from md5(array_to_string(rowver.object_ddl(r), E';\n'));

    -- every trigger in place and enabled, on T and on every partition
    return query
      select p.rel::text, 'triggers', format('trigger %s is missing or disabled', t.name)
        from (select r.relid as rel union all select rowver.partitions(r.relid)) p
       cross join unnest(array['rowver_begin', '~rowver_stamp', 'rowver_capture_insert', 'rowver_capture_update',
                               'rowver_capture_delete', 'rowver_refuse_truncate']) t(name)
       where not exists (select from pg_catalog.pg_trigger g
                          where g.tgrelid = p.rel and g.tgname = t.name and g.tgenabled = 'O')
      union all  -- (on T alone, where it can carry it: see rowver.not_a_partition)
      select r.relid::text, 'triggers', 'trigger rowver_not_a_partition is missing or disabled'
       where rowver.takes_partition_guard(r.relid)
         and not exists (select from pg_catalog.pg_trigger g
                          where g.tgrelid = r.relid and g.tgname = 'rowver_not_a_partition' and g.tgenabled = 'O');
    -- T or its history made unlogged since enable (which refuses unlogged tables): a crash empties
    -- it, and T's rows would leave without history, or the history without its past
    return query
      select r.relid::text, 'unlogged',
             format('%s is unlogged: a crash empties it, and %s; ALTER TABLE %s SET LOGGED', c.oid::regclass,
                    case when c.oid = r.relid then 'its rows leave without history' else 'the history is lost' end,
                    c.oid::regclass)
        from pg_catalog.pg_class c
       where c.relpersistence = 'u'
         and (c.oid = r.relid or c.oid in (select rowver.partitions(r.relid)) or c.oid = to_regclass(h));
    -- T in a hierarchy it was not versioned in (a partitioned T attached to another table, or
    -- a child inheriting from T): statements naming the parent fire its statement triggers, not
    -- T's, so the rows they write through it get no history
    return query
      select r.relid::text, 'hierarchy',
             format('%s %s %s: rows written through %s get no history; %s %s from it, or version %s instead',
                    r.relid, case when c.relispartition then 'is a partition of' else 'inherits from' end,
                    i.inhparent::regclass, i.inhparent::regclass,
                    case when c.relispartition then 'detach' else 'disinherit' end, r.relid, i.inhparent::regclass)
        from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
       where i.inhrelid = r.relid
      union all
      select r.relid::text, 'hierarchy',
             format('%s inherits from %s: statements on %s write its rows too, which are not versioned; '
                    'remove the inheritance (ALTER TABLE %s NO INHERIT %s)',
                    i.inhrelid::regclass, r.relid, r.relid, i.inhrelid::regclass, r.relid)
        from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
       where i.inhparent = r.relid and not c.relispartition;
    if r.triggers then
      return query
        select r.relid::text, 'triggers', format('BEFORE row trigger %I fires after the stamp', g.tgname)
          from pg_catalog.pg_trigger g
         where g.tgrelid = r.relid and not g.tgisinternal and g.tgname::text > '~rowver_stamp' collate "C"
           and (g.tgtype & 1) = 1 and (g.tgtype & 2) = 2;
    end if;
  end loop;

  -- Versions written after the fact. A version belongs to the one transaction that
  -- allocated it, and everything written under it is written before head passes it. A
  -- data-only restore that lets the triggers fire breaks one or the other: its COPY takes
  -- versions from a sequence the restore has not set yet, and stamps every row it loads
  -- with one of them.
  -- (a) the restore's version is one the dump already holds: the changeset is not the
  --     allocating transaction's (record_change joins it). The tables are the ones whose
  --     changeset_table row that transaction wrote.
  return query
    select v.relid::text, 'restamped',
           format('rows were written under version %s by transaction %s, but changeset %s is transaction %s''s: '
                  'rows restamped (a data-only restore without --disable-triggers?)', a.version, a.xid, c.version, c.xid)
      from rowver.allocation a
      join rowver.changeset c on c.version = a.version and c.xid <> a.xid
      left join rowver.changeset_table ct on ct.version = a.version and ct.xmin = pg_catalog.xid(a.xid)
      left join rowver.versioned v on v.id = ct.table_id
     where tbl is null or v.relid = tbl;
  -- (b) the restore's version is new: its changeset was made after a head at or above it
  --     had been published. Heads only grow, so the first head published at or above a
  --     version is the smallest such head; a changeset is made before its transaction ends,
  --     and head passes a version only after that (one clock: the server's).
  return query
    select v.relid::text, 'restamped',
           format('changeset %s was made at %s, after head %s was published at %s: '
                  'rows restamped (a data-only restore without --disable-triggers?)', c.version, c.created_at, l.head, l.at)
      from (select h.at, h.head, lag(h.head) over (order by h.head, h.at) as below
              from rowver.head_log h) l
      join rowver.changeset c on c.version > coalesce(l.below, -1) and c.version <= l.head
                             and c.created_at > l.at
      left join rowver.changeset_table ct on ct.version = c.version
      left join rowver.versioned v on v.id = ct.table_id
     where tbl is null or v.relid = tbl;

  if tbl is null then
    -- rowver_admin opens no table: were it a member of rowver_owner, every admin could
    -- rewrite the catalog (an install without the right to revoke the old grant leaves it)
    return query
      select null::text, 'roles', 'rowver_admin is a member of rowver_owner: REVOKE rowver_owner FROM rowver_admin'
       where pg_has_role('rowver_admin', 'rowver_owner', 'MEMBER');
    -- every tag is what its last recorded change made it (a tag changed outside rowver's
    -- functions, by rowver_owner's members or a superuser, has no record)
    return query
      select 'rowver.tag', 'tags', format('tag %s names version %s, but its last recorded change %s', quote_literal(
               coalesce(t.name, l.name)), coalesce(t.version::text, 'nothing'),
               case when l.name is null then 'is none' when l.action = 'remove' then 'removed it'
                    else format('made it name version %s%s', l.new_version,
                                case when l.protected then ', protected' else '' end) end)
        from rowver.tag t
        full join (select distinct on (x.name) * from rowver.tag_log x order by x.name, x.at desc) l on l.name = t.name
       where (t.name is null and l.action <> 'remove')
          or (t.name is not null and (l.name is null or l.action = 'remove' or l.new_version <> t.version
                                      or l.protected <> t.protected));
    -- the model store (sql/63_model_search_gc.sql): every chunk a model version names exists, intact
    if to_regprocedure('rowver.check_models(boolean)') is not null then
      return query select * from rowver.check_models(true);
    end if;
  end if;
end $$;

grant execute on function rowver.status(), rowver.in_flight(), rowver.check(regclass) to public;

reset search_path;
reset role;
