-- The objects generated for a versioned table T (everything but T.rv_version and the
-- history table itself): the as-of function, the versions view, the stamp, capture and
-- admin functions, the triggers on T and on each of its partitions, and the grants and
-- row-level security policies mirrored from T onto its history. object_ddl() is the one
-- source of these statements: enable runs them once, refresh runs them again after T's
-- schema changes, and their hash tells status whether what is installed is current.
--
-- Everything generated belongs to T's owner, and nothing in it resolves a name through
-- the search_path of whoever runs it (DESIGN §6): the trigger functions qualify every
-- operator and function (the stamp has no SET clause: it runs on every row), capture and
-- admin fix their own path, and the as-of function and the view are bound when created.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

-- A floor under the states of a key (joined as `join`, the history aliased x) that this
-- transaction can have written to its history: they are the key's newest (it holds the key's
-- row lock from its first write on), at most two per version it holds (`versions`, an array,
-- and the current one): a superseded state and a tombstone. Bounding a history lookup below
-- by it keeps a hot key's lookup to a few index entries, however long its history.
create or replace function rowver.chain_top_sql(hist text, "join" text, versions text) returns text
language sql immutable
return pg_catalog.format('coalesce((select x.rv_version from %s x where %s order by x.rv_version desc'
                         ' offset 2 * cardinality(%s) + 1 limit 1), 0)', hist, "join", versions);

-- The statement that records the keys a statement wrote, from `source` (a transition table
-- and its alias) with `keys` (jsonb_build_object's arguments): a JSON object per line, or '*'
-- past 256 rows, so that a renumber finds them at commit (rowver.tracked, T's restamp). A
-- statement of the capture's own: calling rowver.track cost 3-13 us more a statement, of the
-- 24 that tracking takes on a one-row UPDATE (backend CPU, PostgreSQL 18 and 15).
-- (tbl: T's qualified name, as rowver.qualified gives it: a regclass would print as the
-- caller's search path sees it.)
drop function if exists rowver.track_sql(regclass, text, text);
create or replace function rowver.track_sql(tbl text, source text, keys text) returns text
language sql immutable
return pg_catalog.format('insert into rowver.tracked (xid, rel, keys)'
                         ' select pg_current_xact_id(), %L::regclass,'
                         ' case when count(*) > 256 then ''*'' else string_agg(k, E''\n'') end'
                         ' from (select jsonb_build_object(%s)::text as k from %s limit 257) x having count(*) > 0',
                         tbl, keys, source);

-- The body of the AFTER statement trigger that writes history from the transition tables
-- rv_old / rv_new. Every statement is set-based and names its columns. It runs as T's owner
-- (SECURITY DEFINER) with a fixed search_path, and only for T and T's partitions: attached
-- to any other table it raises before it reads or writes anything. A row a newer version
-- wrote does not fail the statement: the transaction renumbers (rowver.renumber), and its
-- rows under the abandoned version, its own until it commits, get the final one at commit.
--
-- Its plans must not depend on row counts. PL/pgSQL keeps a statement's parse for the session,
-- and with it the transition tables' row counts of the first firing: a session whose first
-- UPDATE changed one row matched a later 30,000-row UPDATE's old and new rows in a nested loop
-- (110 s, not 0.3 s), and one whose first INSERT added 30,000 rows scanned the whole history
-- for each later one-row INSERT (22 ms each, growing with the history); and where the history
-- had no statistics yet, an EXISTS over it was planned to stop at a first match it never found,
-- scanning all of it (30 ms each). So the join methods are fixed (the SET clause in object_ddl):
-- the transition tables are matched with each other in hash joins, and history and T are found
-- by key, in nested loops or subqueries run row by row.
create or replace function rowver.capture_body(tbl regclass, hist text, keys name[], cols text,
                                               o_cols text, k_cols text, o_k_cols text,
                                               shape text) returns text
language sql stable
as $$
  select pg_catalog.format($body$
#variable_conflict use_variable
declare
  -- names that no column can take: rv_ is rowver's prefix, and columns are always qualified
  rv_v       bigint;
  rv_mine    bigint;       -- the version this transaction's allocation row holds
  rv_ours    bigint[];     -- this transaction's versions: its own, and any it abandoned
  rv_changed bigint := 0;  -- keys changed, for the log
  rv_count   bigint;
  rv_net     bigint := 0;  -- rows inserted minus rows deleted, for rowver.check
  rv_added   bigint := 0;  -- rows inserted under a new key, for diffs
  rv_done    text;
begin
  if not (TG_TABLE_SCHEMA = %11$L and TG_TABLE_NAME = %12$L)
     and pg_partition_root(TG_RELID) is distinct from %8$L::regclass then
    raise exception 'rowver: this function captures changes of %% only, not of %%.%%', %8$L, TG_TABLE_SCHEMA, TG_TABLE_NAME
      using errcode = '42501';
  end if;
  -- this transaction's version: what the stamp wrote (currval), tied to this transaction by its
  -- allocation row, which the setting points at (rowver.begin_statement allocates only while the
  -- setting is empty: a forged or stale one fails here, before the statement can commit)
  rv_v := currval('rowver.version_seq'::regclass);
  select a.version, a.abandoned into rv_mine, rv_ours from rowver.allocation a
   where a.ctid = nullif(current_setting('rowver.allocation', true), '')::tid
     and a.xid = pg_current_xact_id_if_assigned();
  if rv_mine is null or rv_mine > rv_v then
    raise exception 'rowver: this transaction''s version is not its own (a forged rowver.allocation setting?)'
      using errcode = '55000';
  elsif rv_mine < rv_v then
    -- currval is a version this transaction took in a savepoint rolled back while this
    -- statement ran (an exception block in a function or trigger it called): its rows so far
    -- carry it, so the transaction renumbers (giving it up too) and they are restamped below
    rv_v := rowver.renumber_for(TG_RELID, rv_mine);
    rv_mine := rv_v;
    rv_ours := rowver.abandoned();
  end if;
  -- an update of rows this transaction wrote under a version it gave up, keeping their keys, is
  -- the restamp at commit (or like it): no state it leaves is a version, its keys are tracked,
  -- and it writes nothing whose columns T's shape could make wrong
  -- (an expression plans whole: rv_old exists only in an update's or a delete's)
  if TG_OP = 'UPDATE' and cardinality(rv_ours) > 0 then
    if not exists (select from rv_old o where o.rv_version <> all(rv_ours)) then
      -- the transition tables are matched with each other in hash joins (row counts they were
      -- planned for are the session's first firing's: a nested loop could be quadratic), and
      -- everything else by key (this function's SET clause)
      rv_done := set_config('enable_nestloop', 'off', true);
      rv_done := set_config('enable_hashjoin', 'on', true);
      rv_count := (select count(*) from rv_old o where not exists (select from rv_new n where %3$s));
      rv_done := set_config('enable_nestloop', 'on', true);
      rv_done := set_config('enable_hashjoin', 'off', true);
      if rv_count = 0 then
        return null;
      end if;
    end if;
  end if;

  -- T still has the shape this function was generated for: checked whenever this query is
  -- planned, which PostgreSQL redoes after any change to T (see rowver.shape_is)
  perform from only %8$s where rowver.shape_is(%8$L, %10$L) and false;

  -- the keys this statement wrote, so that a renumber finds them at commit (rowver.track_sql)
  if TG_OP = 'DELETE' then
    %14$s;
  else
    %13$s;
  end if;

  -- a row a newer version wrote, or a key a newer version deleted: this transaction came
  -- second to it, so it takes a version above it. (One test per operation: each plans only
  -- the transition tables its statement has.) An update's changed rows were judged by the
  -- stamp, row by row, before they were written: a row stamped before the stamp renumbered
  -- (a statement meeting a newer row after its first) gets the final version now, as the
  -- restamp at commit would (it restamps only tables written before the renumber).
  if TG_OP = 'INSERT' then
    -- (counted, not asked with exists: planned to stop at a first match, an exists scanned a
    -- history without statistics whole, for a match there was none of)
    if (select count(*) from rv_new n join %1$s h on %2$s where h.rv_version > rv_v) > 0 then
      rv_v := rowver.renumber_for(TG_RELID, rv_v);
    end if;
  elsif TG_OP = 'DELETE' then
    if exists (select from rv_old o where o.rv_version > rv_v) then
      rv_v := rowver.renumber_for(TG_RELID, rv_v);
    end if;
  end if;
  if rv_v <> rv_mine then  -- renumbered just now
    rv_ours := rowver.abandoned();
  end if;
  -- rows this statement stamped with a version given up since get the final one now
  if TG_OP <> 'DELETE' and cardinality(rv_ours) > 0 then  -- (no query for every other statement)
    if exists (select from rv_new n where n.rv_version = any(rv_ours)) then
      update %8$s t set rv_version = rv_v from rv_new n
       where %16$s and t.rv_version = any(rv_ours) and n.rv_version = any(rv_ours);
    end if;
  end if;
  rv_ours := rv_v || rv_ours;

  if TG_OP = 'INSERT' then
    -- inserting a key this transaction deleted undoes its own tombstone
    delete from %1$s h using rv_new n where %2$s and h.rv_version = any(rv_ours) and h.rv_deleted;
    select count(*) into rv_changed from rv_new;
    rv_net := rv_changed;
    rv_added := rv_changed;

  elsif TG_OP = 'UPDATE' then
    -- the old and new rows matched in hash joins (as above), until the end of this branch
    rv_done := set_config('enable_nestloop', 'off', true);
    rv_done := set_config('enable_hashjoin', 'on', true);
    -- rows that kept their key: a changed row supersedes its old state (a no-op update kept
    -- its version; a state this transaction wrote itself is not a version and is not kept)
    insert into %1$s (%4$s, rv_version, rv_until)
    select %5$s, o.rv_version, rv_v
      from rv_old o join rv_new n on %3$s
     where n.rv_version <> o.rv_version and o.rv_version <> all(rv_ours);
    get diagnostics rv_changed = row_count;
    -- keys that changed (an old key without a new row, hence as many new keys without an
    -- old row): rare, so tested for once and handled apart. (Counted, not asked with exists:
    -- planned for its first row, an exists ran as a nested loop, quadratic in the rows updated
    -- when, as usual, no key changed: 200,000 rows took minutes.)
    if (select count(*) from rv_old o where not exists (select from rv_new n where %3$s)) > 0 then
      %14$s;
      -- a key changed into behaves like an insert (its history looked up by key, row by row:
      -- a subquery with an offset is never made a join)
      if exists (select from rv_new n
                  where not exists (select from rv_old o where %3$s)
                    and exists (select from %1$s h where %2$s and h.rv_version > rv_v offset 0)) then
        rv_v := rowver.renumber_for(TG_RELID, rv_v);
        rv_ours := rv_v || rowver.abandoned();
      end if;
      -- a key changed away: its old state is superseded, and the key ends with a tombstone
      -- if it had a state before this transaction
      insert into %1$s (%4$s, rv_version, rv_until)
      select %5$s, o.rv_version, rv_v
        from rv_old o
       where not exists (select from rv_new n where %3$s) and o.rv_version <> all(rv_ours);
      get diagnostics rv_count = row_count;
      rv_changed := rv_changed + rv_count;
      insert into %1$s (%6$s, rv_version, rv_until, rv_deleted)
      select %7$s, rv_v, rv_v, true
        from rv_old o
       where not exists (select from rv_new n where %3$s)
         and (o.rv_version <> all(rv_ours)
              or exists (select from %1$s h where %9$s and h.rv_until = any(rv_ours) and not h.rv_deleted
                                   and h.rv_version >= %15$s));
      -- (the tombstones found by key, row by row, as above; history is one table: a ctid is a row)
      delete from %1$s h
       where h.ctid = any (array(select x.ctid from rv_new n,
                                   lateral (select h.ctid from %1$s h
                                             where %2$s and h.rv_version = any(rv_ours) and h.rv_deleted offset 0) x
                                  where not exists (select from rv_old o where %3$s)));
      select count(*) into rv_count from rv_new n where not exists (select from rv_old o where %3$s);
      rv_changed := rv_changed + rv_count;
      rv_added := rv_count;
    end if;
    rv_done := set_config('enable_nestloop', 'on', true);
    rv_done := set_config('enable_hashjoin', 'off', true);

  else -- DELETE
    insert into %1$s (%4$s, rv_version, rv_until)
    select %5$s, o.rv_version, rv_v
      from rv_old o
     where o.rv_version <> all(rv_ours);
    -- the delete itself: a tombstone, unless the key was born in this transaction
    insert into %1$s (%6$s, rv_version, rv_until, rv_deleted)
    select %7$s, rv_v, rv_v, true
      from rv_old o
     where o.rv_version <> all(rv_ours)
        or exists (select from %1$s h where %9$s and h.rv_until = any(rv_ours) and not h.rv_deleted
                             and h.rv_version >= %15$s);
    get diagnostics rv_changed = row_count;
    select -count(*) into rv_net from rv_old;
  end if;

  -- (a row inserted and deleted in one transaction changes nothing, but still counts)
  if rv_changed > 0 or rv_net <> 0 then
    rv_done := rowver.record_change(rv_v, TG_RELID, rv_changed, rv_net, rv_added);  -- (assigned: no executor)
  end if;
  -- renumbered after the commit triggers fired early (SET CONSTRAINTS ALL IMMEDIATE): every
  -- table written gets the final version now, not at a commit that would not restamp them
  if current_setting('rowver.restamp_due', true) = 'on' then
    perform rowver.restamp_written();
  end if;
  return null;
end
$body$,
    hist,                                        -- 1
    rowver.key_join_sql(tbl, keys, 'h', 'n'),    -- 2
    rowver.key_join_sql(tbl, keys, 'o', 'n'),    -- 3
    cols, o_cols, k_cols, o_k_cols,              -- 4..7
    rowver.qualified(tbl),                       -- 8
    rowver.key_join_sql(tbl, keys, 'h', 'o'),    -- 9
    shape,                                       -- 10
    rowver.schema_of(tbl),                       -- 11
    (select c.relname from pg_catalog.pg_class c where c.oid = tbl),  -- 12
    rowver.track_sql(rowver.qualified(tbl), 'rv_new n', (select string_agg(format('%L, n.%I', k, k), ', ') from unnest(keys) k)),  -- 13
    rowver.track_sql(rowver.qualified(tbl), 'rv_old o', (select string_agg(format('%L, o.%I', k, k), ', ') from unnest(keys) k)),  -- 14
    rowver.chain_top_sql(hist, rowver.key_join_sql(tbl, keys, 'x', 'o'), 'rv_ours'),  -- 15
    rowver.key_join_sql(tbl, keys, 't', 'n'))    -- 16
$$;

-- The body of T's restamp function (see rowver.renumber): the rows of T this transaction
-- wrote under a version it abandoned get its final one, found by the keys it tracked (or,
-- past what it tracks, by a scan). It runs as T's owner for anyone, but moves only this
-- transaction's own rows: an abandoned version is verified against its allocations.
create or replace function rowver.restamp_body(tbl regclass, hist text, keys name[]) returns text
language sql stable
as $$
  select pg_catalog.format($body$
declare
  rv_old  bigint[];
  rv_new  bigint;
  rv_keys text := (select case when bool_or(w.keys = '*') then '*' else string_agg(w.keys, E'\n') end
                     from rowver.tracked w where w.xid = pg_current_xact_id() and w.rel = %2$L::regclass);
begin
  -- this transaction's version and the ones it gave up, from its allocation row (rowver.allocated)
  select a.version, a.abandoned into rv_new, rv_old from rowver.allocation a
   where a.ctid = nullif(current_setting('rowver.allocation', true), '')::tid
     and a.xid = pg_current_xact_id_if_assigned();
  if rv_new is null or cardinality(rv_old) = 0 or rv_keys is null or rv_keys = '' then
    return;
  end if;
  if rv_keys = '*' then
    -- (past what is tracked: T scanned, history's BRIN index on rv_until taken where it helps)
    perform set_config('enable_bitmapscan', 'on', true);
    update %2$s t set rv_version = rv_new where t.rv_version = any(rv_old);
    update %1$s h set rv_until = rv_new,
                      rv_version = case when h.rv_deleted and h.rv_version = any(rv_old) then rv_new else h.rv_version end
     where h.rv_until = any(rv_old);
  else
    -- T's rows and the history rows this transaction wrote, found by key, in one statement
    with k as (select distinct %3$s from regexp_split_to_table(rv_keys, E'\n') line,
                                          jsonb_populate_record(null::%2$s, line::jsonb) r),
         t as (update %2$s t set rv_version = rv_new from k
                where %4$s and t.rv_version = any(rv_old))
    update %1$s h set rv_until = rv_new,
                      rv_version = case when h.rv_deleted and h.rv_version = any(rv_old) then rv_new else h.rv_version end
      from k
     where %5$s and h.rv_until = any(rv_old) and h.rv_version >= %6$s;
  end if;
end
$body$,
    hist,                                                                         -- 1
    rowver.qualified(tbl),                                                        -- 2
    (select string_agg(format('r.%I', k), ', ') from unnest(keys) k),             -- 3
    rowver.key_join_sql(tbl, keys, 't', 'k'),                                     -- 4
    rowver.key_join_sql(tbl, keys, 'h', 'k'),                                     -- 5
    rowver.chain_top_sql(hist, rowver.key_join_sql(tbl, keys, 'x', 'k'), 'rv_old'))  -- 6
$$;

-- The statements that (re)create T's generated objects, in order. Re-runnable: functions
-- are replaced, the view and triggers dropped and created. (Grants and policies: mirror_ddl.)
drop function if exists rowver.object_ddl(regclass, name[], name[], boolean, name, name, name, name, name);
drop function if exists rowver.object_ddl(regclass, name[], name[], boolean, name, name, name, name, name, name) cascade;
create or replace function rowver.object_ddl(tbl regclass, keys name[], ignore name[], triggers boolean,
                                             hist name, vers name, as_of name, stamp name, capture name,
                                             admin name, restamp name)
returns text[]
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  sch       name := rowver.schema_of(tbl);
  t         text := rowver.qualified(tbl);
  hist_q    text := format('%I.%I', sch, hist);
  owner     text := (select c.relowner::regrole::text from pg_class c where c.oid = tbl);
  rel       regclass;
  stmts     text[] := '{}';
  cols      text;  o_cols text;  k_cols text;  o_k_cols text;
  guard     text;
  top       constant text := '9223372036854775807::bigint';
  current_until text;
  -- with triggers => false, capture runs only where the write layer switches it on: a flag
  -- that says whether to capture, never what version; other writers are not tracked
  only_when text := case when triggers then ''
                         else 'when (pg_catalog.current_setting(''rowver.capture'', true) operator(pg_catalog.=) ''on'')' end;
begin
  select string_agg(format('%I', p.name), ', ' order by p.attnum),
         string_agg(format('o.%I', p.name), ', ' order by p.attnum)
    into cols, o_cols from rowver.payload_columns(tbl) p;
  select string_agg(format('%I', k), ', '), string_agg(format('o.%I', k), ', ')
    into k_cols, o_k_cols from unnest(keys) k;

  -- after a prune, versions before the retention horizon (but the tagged ones it kept) are
  -- refused, not answered from partial history; a pseudo-constant, so still inlined
  select format(' and (case when $1 operator(pg_catalog.>=) %s or $1 operator(pg_catalog.=) any (%L::bigint[])'
                ' then true else rowver.before_horizon(%L, $1) end)', x.horizon, x.kept, t)
    into guard
    from rowver.retention x join rowver.versioned v on v.id = x.table_id where v.relid = tbl;
  -- T's rows are alive until a version above any: rv_until is the largest bigint there (a
  -- version that large is refused: no rv_until is above it), or, below T's floor
  -- (rowver.analyze: no row of T is older), null, so that T's arm is a constant false for a
  -- version the query names, a one-time filter for a parameter, and T is not scanned
  guard := coalesce(guard, '');
  current_until := format('case%s when $1 operator(pg_catalog.<) %s then %s else rowver.no_version($1) end',
                          coalesce((select format(' when $1 operator(pg_catalog.<) %s then null', v.current_floor)
                                      from rowver.versioned v where v.relid = tbl and v.current_floor is not null), ''),
                          top, top);

  -- T as of a version: plain SQL, no SET clause, so the planner inlines it; a standard SQL
  -- body, so every name and operator in it is bound here, not by the caller's search_path.
  -- A column added after enable reads NULL as of versions before it was added (also from
  -- older states superseded later, which carry the value the column was given when it was
  -- added). (The filter stands outside the union so that each arm stays a plain scan:
  -- PostgreSQL pulls an arm with a WHERE of its own into a subquery scan.) The tests on
  -- rv_until and rv_version are ones the history's BRIN indexes answer: a read of a recent
  -- version, or of head, reads only the pages of states superseded after it; a read of an old
  -- one skips the pages of states written after it. They are the only tests a history row
  -- pays for (each costs a scan ~15% of a plain one): a tombstone's interval is empty
  -- (rv_until = rv_version, which rowver.check verifies), so it needs no test of its own.
  stmts := stmts || format(E'create or replace function %I.%I(version bigint) returns setof %s\n'
                           'language sql stable parallel safe\nbegin atomic\n'
                           '  select %s from (\n'
                           '    select %s, %s as rv_until from %s\n'
                           '    union all\n'
                           '    select %s, h.rv_until from %s h) u\n'
                           '   where u.rv_version operator(pg_catalog.<=) $1'
                           ' and u.rv_until operator(pg_catalog.>) $1%s;\nend',
    sch, as_of, t,
    (select string_agg(format('u.%I', c.name), ', ' order by c.pos) from rowver.row_columns(tbl) c),
    (select string_agg(case when l.added_version is not null
                            then format('case when $1 operator(pg_catalog.>=) %s then %I end as %I',
                                        l.added_version, c.name, c.name)
                            else format('%I', c.name) end, ', ' order by c.pos)
       from rowver.row_columns(tbl) c left join rowver.column_added(tbl) l on l.name = c.name),
    current_until, t,
    (select string_agg(case when c.name = 'rv_version' then 'h.rv_version'
                            when g.expr is not null then format('(%s)::%s', g.expr, p.type_sql)
                            when l.added_version is not null
                            then format('case when $1 operator(pg_catalog.>=) %s then h.%I::%s end',
                                        l.added_version, c.name, p.type_sql)
                            when p.type_sql = p.history_type_sql then format('h.%I', c.name)
                            else format('h.%I::%s', c.name, p.type_sql) end, ', ' order by c.pos)
       from rowver.row_columns(tbl) c
       left join rowver.payload_columns(tbl) p on p.name = c.name
       left join rowver.column_added(tbl) l on l.name = c.name
       left join rowver.virtual_columns(tbl) g on g.name = c.name),
    hist_q, guard);

  -- every version of every row; current rows have rv_until null
  stmts := stmts || format('drop view if exists %I.%I', sch, vers);
  stmts := stmts || format(E'create view %I.%I with (security_invoker = true) as\n'
                           '  select %s, rv_version, null::bigint as rv_until, false as rv_deleted from %s\n'
                           '  union all\n'
                           '  select %s, rv_version, rv_until, rv_deleted from %s',
    sch, vers, cols, t,
    (select string_agg(case when g.expr is not null then format('(%s)::%s', g.expr, p.type_sql)
                            when p.type_sql = p.history_type_sql then format('%I', p.name)
                            else format('%I::%s', p.name, p.type_sql) end, ', ' order by p.attnum)
       from rowver.payload_columns(tbl) p left join rowver.virtual_columns(tbl) g on g.name = p.name),
    hist_q);

  -- the per-row stamp (no SET clause, for speed: every operator and function is qualified
  -- instead). A restamp of this transaction's own row, from a version it abandoned to the one
  -- it has now (rowver.restamp_body), moves the version and nothing else: T's own BEFORE
  -- triggers fire on it too, and what they changed (a count of edits, a clock, an ignored
  -- updated_at) is put back, as on a plain table, where they would not have fired. Otherwise a
  -- no-op update keeps its version and makes no history, and a write of rv_version is ignored.
  stmts := stmts || format(E'create or replace function %I.%I() returns trigger\nlanguage plpgsql\nas $rv$\n'
                           'declare\n'
                           '  restamped bigint;\n'
                           'begin\n'
                           '  if TG_OP operator(pg_catalog.=) ''UPDATE'' and NEW.rv_version operator(pg_catalog.<>) OLD.rv_version\n'
                           '     and rowver.restamping(OLD.rv_version, NEW.rv_version) then\n'
                           '    restamped := NEW.rv_version;\n'
                           '    NEW := OLD;\n'
                           '    NEW.rv_version := restamped;\n'
                           '  elsif TG_OP operator(pg_catalog.=) ''UPDATE'' and %s then\n'
                           '    NEW.rv_version := OLD.rv_version;\n'
                           '  else\n'
                           '    NEW.rv_version := pg_catalog.currval(''rowver.version_seq''::pg_catalog.regclass);\n'
                           '    if TG_OP operator(pg_catalog.=) ''UPDATE'' and OLD.rv_version operator(pg_catalog.>) NEW.rv_version then\n'
                           '      perform rowver.renumber();  -- a newer version wrote this row: come after it\n'
                           '      NEW.rv_version := pg_catalog.currval(''rowver.version_seq''::pg_catalog.regclass);\n'
                           '    end if;\n'
                           '  end if;\n'
                           '  return NEW;\n'
                           'end\n$rv$',
    sch, stamp,
    coalesce((select string_agg(rowver.same_value_sql(p.name, p.type_oid, 'NEW', 'OLD'),
                                E'\n     and ' order by p.cmp_rank, p.attnum)
                from rowver.payload_columns(tbl, ignore) p where p.compared), 'true'));

  -- statement-level capture from transition tables, as T's owner (jit off: estimates over
  -- transition tables are poor, and compiling would cost more than the statements themselves)
  stmts := stmts || format(E'create or replace function %I.%I() returns trigger\nlanguage plpgsql\n'
                           'security definer set search_path = pg_catalog, pg_temp set jit = off\n'
                           -- (lookups by key; the body turns hash joins on where it matches
                           -- the transition tables with each other: see rowver.capture_body)
                           'set enable_nestloop = on set enable_hashjoin = off set enable_mergejoin = off\n'
                           'as $rv$%s$rv$',
    sch, capture, rowver.capture_body(tbl, hist_q, keys, cols, o_cols, k_cols, o_k_cols, rowver.shape(tbl)));

  -- the restamp at commit of a renumbered transaction (rowver.renumber), as T's owner, for
  -- anyone: it moves only the caller's own rows. Found by key, never by a scan: its plan is
  -- cached for the session, and one made while the history was small (just after enable)
  -- scanned the history at every later commit, slower as it grew, under the hot rows' locks
  -- (TPC-B just after enable: 850 tps falling to 330 within 20 s). Nor through history's BRIN
  -- index on rv_until, which PostgreSQL 18 took for a hot key's long history (a teller's under
  -- TPC-B), reading every range not yet summarized at each restamp. No JIT: a scan left, costed
  -- as disabled, would compile for 30-50 ms. One generic plan for the session: with costs that
  -- a disabled scan inflates, PostgreSQL judged a generic plan dearer than a custom one for
  -- pgbench_accounts and planned the restamp again at every commit, under the hot rows' locks
  -- (TPC-B on PostgreSQL 15, six paired runs: 848 -> 906 tps).
  stmts := stmts || format(E'create or replace function %I.%I() returns void\nlanguage plpgsql\n'
                           'security definer set search_path = pg_catalog, pg_temp\n'
                           'set enable_seqscan = off set enable_bitmapscan = off set jit = off\n'
                           'set plan_cache_mode = force_generic_plan\n'
                           'as $rv$%s$rv$',
    sch, restamp, rowver.restamp_body(tbl, hist_q, keys));

  -- what rowver_admin may do to T (prune, erase), run as T's owner: rowver's own role never
  -- touches T, whose owner's code (policies, triggers, index expressions) would run as it
  stmts := stmts || format(E'create or replace function %I.%I(op text, args jsonb) returns bigint\n'
                           'language plpgsql security definer set search_path = pg_catalog, pg_temp\n'
                           'as $rv$\nbegin\n  return rowver.admin_op(%L::regclass, op, args);\nend\n$rv$',
    sch, admin, t);

  -- T's owner owns all of it (the enabling role may act for the owner through membership);
  -- the trigger functions are no one else's to call or attach, the admin function rowver_admin's
  stmts := stmts || array[format('alter function %I.%I(bigint) owner to %s', sch, as_of, owner),
                          format('alter view %I.%I owner to %s', sch, vers, owner),
                          format('alter function %I.%I() owner to %s', sch, stamp, owner),
                          format('alter function %I.%I() owner to %s', sch, capture, owner),
                          format('alter function %I.%I(text, jsonb) owner to %s', sch, admin, owner),
                          format('alter function %I.%I() owner to %s', sch, restamp, owner),
                          format('revoke all on function %I.%I(), %I.%I(), %I.%I(text, jsonb) from public',
                                 sch, stamp, sch, capture, sch, admin),
                          format('grant execute on function %I.%I(text, jsonb) to rowver_admin', sch, admin),
                          format('grant execute on function %I.%I() to public', sch, restamp)];

  -- triggers on T, and on each partition (statement triggers fire only on the table a
  -- statement names; the row-level stamp on T is cloned onto partitions by PostgreSQL)
  for rel in select tbl union all select rowver.partitions(tbl) loop
    t := rowver.qualified(rel);
    if rel = tbl then
      -- the stamp sorts last among BEFORE row triggers, so it judges the final row
      stmts := stmts || format('drop trigger if exists "~rowver_stamp" on %s', t);
      stmts := stmts || format('create trigger "~rowver_stamp" before insert or update on %s '
                               'for each row %s execute function %I.%I()', t, only_when, sch, stamp);
    end if;
    stmts := stmts || format('drop trigger if exists rowver_begin on %s', t);
    stmts := stmts || format('create trigger rowver_begin before insert or update or delete on %s '
                             'for each statement %s execute function rowver.begin_statement()', t, only_when);
    stmts := stmts || format('drop trigger if exists rowver_capture_insert on %s', t);
    stmts := stmts || format('create trigger rowver_capture_insert after insert on %s '
                             'referencing new table as rv_new for each statement %s execute function %I.%I()',
                             t, only_when, sch, capture);
    stmts := stmts || format('drop trigger if exists rowver_capture_update on %s', t);
    stmts := stmts || format('create trigger rowver_capture_update after update on %s '
                             'referencing old table as rv_old new table as rv_new '
                             'for each statement %s execute function %I.%I()', t, only_when, sch, capture);
    stmts := stmts || format('drop trigger if exists rowver_capture_delete on %s', t);
    stmts := stmts || format('create trigger rowver_capture_delete after delete on %s '
                             'referencing old table as rv_old for each statement %s execute function %I.%I()',
                             t, only_when, sch, capture);
    stmts := stmts || format('drop trigger if exists rowver_refuse_truncate on %s', t);
    stmts := stmts || format('create trigger rowver_refuse_truncate before truncate on %s '
                             'for each statement execute function rowver.refuse_truncate()', t);
    if rel = tbl and rowver.takes_partition_guard(tbl) then  -- (see rowver.not_a_partition)
      stmts := stmts || format('drop trigger if exists rowver_not_a_partition on %s', t);
      stmts := stmts || format('create trigger rowver_not_a_partition after delete on %s referencing old table '
                               'as rv_rows for each row when (false) execute function rowver.not_a_partition()', t);
    end if;
  end loop;

  return stmts;
end $$;

-- The statements object_ddl makes for a registered table (status, check and refresh
-- compare their hash with the installed one).
create or replace function rowver.object_ddl(r rowver.versioned) returns text[]
language sql stable
return rowver.object_ddl(r.relid, r.key_columns, r.ignore_columns, r.triggers, r.history_name, r.versions_name,
                         r.as_of_name, r.stamp_name, r.capture_name,
                         coalesce(r.admin_name, rowver.generated_name(
                           (select c.relname from pg_catalog.pg_class c where c.oid = r.relid), '__rv_admin')),
                         coalesce(r.restamp_name, rowver.generated_name(
                           (select c.relname from pg_catalog.pg_class c where c.oid = r.relid), '__rv_restamp')));

-- Before DDL that would change a column the as-of function or the versions view reads
-- (refresh and alter): the view goes, and the as-of function reads nothing for a moment
-- (its standard SQL body depends on the columns; a string body records no dependency, and
-- objects that call the function keep working). object_ddl then makes both again.
create or replace function rowver.detach_reads(r rowver.versioned) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  sch name := rowver.schema_of(r.relid);
begin
  execute format('drop view if exists %I.%I', sch, r.versions_name);
  if to_regprocedure(format('%I.%I(bigint)', sch, r.as_of_name)) is not null then
    execute format('create or replace function %I.%I(version bigint) returns setof %s language sql stable '
                   'parallel safe as $rv$select null::%s where false$rv$',
                   sch, r.as_of_name, rowver.qualified(r.relid), rowver.qualified(r.relid));
  end if;
end $$;

-- Columns added after T was first versioned, with the version that added them.
create or replace function rowver.column_added(tbl regclass) returns table (name name, added_version bigint)
language sql stable
as $$
  select l.name, l.added_version
    from rowver.column_life l join rowver.versioned v on v.id = l.table_id
   where v.relid = tbl and l.dropped_version is null and l.added_version is not null
$$;

-- A fingerprint of what governs reading T: whether row-level security is on, and each
-- policy for SELECT (or ALL) with its roles and expression. History records the one it
-- mirrored; a read of history by anyone but T's owner fails while they differ.
create or replace function rowver.security_hash(tbl regclass) returns text
language sql stable
return md5((select c.relrowsecurity::text from pg_class c where c.oid = tbl)
           || coalesce((select string_agg(format('%s|%s|%s|%s', p.polname, p.polpermissive, p.polroles,
                                                 coalesce(p.polqual::text, '')), ';' order by p.polname)
                          from pg_policy p where p.polrelid = tbl and p.polcmd in ('r', '*')), ''));

-- The restrictive policy on every history table (DESIGN §6: history never reads more
-- permissively than T does now): whoever reads T's history must be able to SELECT from T
-- itself, and T's read security must still be the one mirrored (else history is closed
-- to everyone but T's owner until rowver.refresh). Evaluated once per query, not per row.
create or replace function rowver.history_readable(tbl regclass, mirrored text) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
begin
  if not has_table_privilege(tbl, 'SELECT') then
    raise exception 'rowver: permission denied for the history of %', tbl using errcode = '42501',
      detail = format('reading the history of a table needs SELECT on the table itself, which %s lacks', current_user);
  end if;
  if rowver.security_hash(tbl) is distinct from mirrored then
    raise exception 'rowver: the history of % is closed until it is refreshed', tbl using errcode = '55000',
      detail = 'the table''s row-level security changed after it was mirrored onto its history',
      hint = format('the table''s owner runs rowver.refresh(%L)', tbl::text);
  end if;
  return true;
end $$;

-- Whoever may read T may read its past, no more: T's SELECT grants (granted, and revoked
-- where T no longer grants them) on history and the versions view, EXECUTE on the as-of
-- function to the same roles, and row-level security on history: T's policies for reading,
-- all rows where T has none, and always the restrictive rowver.history_readable. The view
-- and the as-of function run as their caller, so T's own policies apply to current rows.
-- Kept apart from object_ddl: grants change without the table changing.
drop function if exists rowver.mirror_ddl(regclass, text, text);
create or replace function rowver.mirror_ddl(tbl regclass, hist_q text, vers_q text, as_of_q text) returns text[]
language sql stable set search_path = pg_catalog, pg_temp
as $$
  with readers as (
    select distinct case when g.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(g.grantee)) end as who
      from (select (aclexplode(c.relacl)).* from pg_class c where c.oid = tbl) g
     where g.privilege_type = 'SELECT'
       and g.grantee <> (select c.relowner from pg_class c where c.oid = tbl))
  select array(
    select format('revoke all on %s, %s from public', hist_q, vers_q)
    union all
    select format('revoke all on function %s(bigint) from public', as_of_q)
    union all
    select format('revoke all on %s, %s from %s', hist_q, vers_q, quote_ident(pg_get_userbyid(g.grantee)))
      from (select distinct (aclexplode(c.relacl)).grantee from pg_class c where c.oid = to_regclass(hist_q)) g
     where g.grantee not in (0, (select c.relowner from pg_class c where c.oid = tbl))
    union all
    select format('grant select on %s, %s to %s', hist_q, vers_q, r.who) from readers r
    union all
    select format('grant execute on function %s(bigint) to %s', as_of_q, r.who) from readers r
    union all
    select format('alter table %s enable row level security', hist_q)
    union all
    select format('drop policy %I on %s', p.polname, hist_q)
      from pg_policy p where p.polrelid = to_regclass(hist_q)  -- (null while enable has yet to make it)
    union all
    select format('create policy %I on %s as %s for select to %s using (%s)', p.polname, hist_q,
                  case when p.polpermissive then 'permissive' else 'restrictive' end,
                  case when p.polroles = '{0}' then 'public'
                       else (select string_agg(quote_ident(pg_get_userbyid(r)), ', ') from unnest(p.polroles) r) end,
                  coalesce(pg_get_expr(p.polqual, p.polrelid), 'true'))
      from pg_policy p
     where p.polrelid = tbl and p.polcmd in ('r', '*')
    union all
    select format('create policy "~rowver_all_rows" on %s as permissive for select to public using (true)', hist_q)
      from pg_class c where c.oid = tbl and not c.relrowsecurity
    union all
    select format('create policy "~rowver_guard" on %s as restrictive for select to public'
                  ' using ((select rowver.history_readable(%L::regclass, %L)))',
                  hist_q, rowver.qualified(tbl), rowver.security_hash(tbl))
  )
$$;

-- (Re)make T's generated objects and mirror T's read security onto them, as T's owner, and
-- record the hashes status and check compare (refresh and prune).
create or replace function rowver.regenerate(r rowver.versioned) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
  sch     name := rowver.schema_of(r.relid);
  objects text[] := rowver.object_ddl(r);
  s       text;
begin
  foreach s in array objects || rowver.mirror_ddl(r.relid, format('%I.%I', sch, r.history_name),
                                                  format('%I.%I', sch, r.versions_name),
                                                  format('%I.%I', sch, r.as_of_name)) loop
    execute s;
  end loop;
  update rowver.versioned x set definition_hash = md5(array_to_string(objects, E';\n')),
                                security_hash = rowver.security_hash(r.relid)
   where x.id = r.id;
end $$;

grant execute on function rowver.capture_body(regclass, text, name[], text, text, text, text, text),
  rowver.track_sql(text, text, text),
  rowver.object_ddl(regclass, name[], name[], boolean, name, name, name, name, name, name, name),
  rowver.restamp_body(regclass, text, name[]), rowver.chain_top_sql(text, text, text),
  rowver.object_ddl(rowver.versioned), rowver.detach_reads(rowver.versioned), rowver.regenerate(rowver.versioned),
  rowver.column_added(regclass), rowver.security_hash(regclass), rowver.history_readable(regclass, text),
  rowver.mirror_ddl(regclass, text, text, text)
to public;

reset search_path;
reset role;
