-- Who may write rowver's catalog, table by table.
--
-- rowver_owner owns the catalog and touches nothing else: its SECURITY DEFINER functions
-- read and write rowver's own tables only (code of a table's owner, such as a policy, a
-- trigger or an index expression, would run as whoever touches that table). Everything
-- done to a versioned table T runs as T's owner: T's generated functions belong to T's
-- owner. So that T's owner can register T and record T's changes without a role that
-- opens other tables, the registry and the changeset tables take writes from anyone, under
-- row-level security evaluated as the role running the statement (inside capture: T's
-- owner). Owning T lets a role write T's rows of the catalog and nothing else.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- bodies below are bound now, whatever a caller's path

-- Whether the current role has the rights of rel's owner (what ALTER TABLE asks of it).
create or replace function rowver.owns(rel oid) returns boolean
language sql stable
return coalesce((select pg_has_role(c.relowner, 'USAGE') from pg_class c where c.oid = rel), false);

-- The same for a registered table, by its registry id.
create or replace function rowver.owns_registered(table_id integer) returns boolean
language sql stable
return coalesce((select rowver.owns(v.relid) from rowver.versioned v where v.id = table_id), false);

-- The registry: T's rows only by T's owner. The generated names must be T's own objects:
-- rowver builds SQL from them, so they may not point at another owner's relations.
create or replace function rowver.registry_names_ok(relid oid, history_name name) returns boolean
language sql stable
return exists (select from pg_class t join pg_class h on h.relnamespace = t.relnamespace
                where t.oid = relid and h.relname = history_name and h.relowner = t.relowner);

alter table rowver.versioned enable row level security;
drop policy if exists read on rowver.versioned;
create policy read on rowver.versioned for select using (true);
drop policy if exists own on rowver.versioned;
create policy own on rowver.versioned using (rowver.owns(relid))
  with check (rowver.owns(relid) and rowver.registry_names_ok(relid, history_name));

alter table rowver.column_life enable row level security;
drop policy if exists read on rowver.column_life;
create policy read on rowver.column_life for select using (true);
drop policy if exists own on rowver.column_life;
create policy own on rowver.column_life using (rowver.owns_registered(table_id))
  with check (rowver.owns_registered(table_id));

alter table rowver.retention enable row level security;
drop policy if exists read on rowver.retention;
create policy read on rowver.retention for select using (true);
drop policy if exists own on rowver.retention;
create policy own on rowver.retention using (rowver.owns_registered(table_id))
  with check (rowver.owns_registered(table_id));

-- A changeset is its own transaction's: the version this transaction allocated, with the
-- server's account of who and when. Author and message are claims, as documented. (These two
-- policies are checked on every captured statement: plain subqueries, which PostgreSQL plans
-- once with the statement, where a call of rowver.allocated() or owns_registered() would be
-- prepared again on every row; measured, that tripled their cost on a one-row update. They
-- find the allocation by its row address, as allocated() does: a read of the allocation
-- index would make every two SERIALIZABLE writers conflict.)
alter table rowver.changeset enable row level security;
drop policy if exists read on rowver.changeset;
create policy read on rowver.changeset for select using (true);
drop policy if exists own on rowver.changeset;
create policy own on rowver.changeset
  using (exists (select from rowver.allocation a where a.version = changeset.version and a.xid = pg_current_xact_id()))
  with check (xid = pg_current_xact_id()
              and exists (select from rowver.allocation a where a.ctid = rowver.allocation_tid()
                                                          and a.version = changeset.version and a.xid = changeset.xid)
              and db_user = session_user and db_role = rowver.session_role()
              and created_at between transaction_timestamp() and clock_timestamp());

-- Which tables a changeset touched: recorded by each table's owner (capture runs as it), for
-- its own transaction's version; counted on by the owner's later statements, and marked
-- by the owner's prune (rowver's prune_changesets removes what is marked).
alter table rowver.changeset_table enable row level security;
drop policy if exists read on rowver.changeset_table;
create policy read on rowver.changeset_table for select using (true);
drop policy if exists own on rowver.changeset_table;
create policy own on rowver.changeset_table for insert
  with check (exists (select from rowver.versioned v join pg_class c on c.oid = v.relid
                       where v.id = changeset_table.table_id and pg_has_role(c.relowner, 'USAGE'))
              and exists (select from rowver.allocation a where a.ctid = rowver.allocation_tid()
                           and a.version = changeset_table.version and a.xid = pg_current_xact_id()));
drop policy if exists counts on rowver.changeset_table;
create policy counts on rowver.changeset_table for update
  using (exists (select from rowver.versioned v join pg_class c on c.oid = v.relid
                  where v.id = changeset_table.table_id and pg_has_role(c.relowner, 'USAGE')));

-- The keys a statement wrote: recorded and read by the table's owner (capture and restamp run
-- as it), for its own transaction; no one else sees them.
alter table rowver.tracked enable row level security;
drop policy if exists own on rowver.tracked;
create policy own on rowver.tracked
  using (exists (select from pg_class c where c.oid = tracked.rel and pg_has_role(c.relowner, 'USAGE')))
  with check (xid = pg_current_xact_id()
              and exists (select from pg_class c where c.oid = tracked.rel and pg_has_role(c.relowner, 'USAGE')));
revoke all on rowver.tracked from public;
grant select, insert on rowver.tracked to public;

-- INSERT and column UPDATE only: with UPDATE or DELETE on a whole table, any role could LOCK it
-- in a mode that stops every writer (removing rows is left to rowver's own functions).
revoke update, delete on rowver.versioned, rowver.column_life, rowver.retention, rowver.changeset_table,
  rowver.changeset from public;
grant insert on rowver.versioned, rowver.column_life, rowver.retention, rowver.changeset_table,
  rowver.changeset to public;
grant update (key_columns, ignore_columns, admin_name, restamp_name, definition_hash, security_hash, current_floor)
  on rowver.versioned
  to public;
grant update (name, attnum, added_version, dropped_version) on rowver.column_life to public;
grant update (horizon, kept, pruned_at, net) on rowver.retention to public;
grant update (rows, net, inserted, pruned) on rowver.changeset_table to public;
grant update (author, message) on rowver.changeset to public;
grant usage on sequence rowver.versioned_id_seq to public;
grant execute on function rowver.owns(oid), rowver.owns_registered(integer),
  rowver.registry_names_ok(oid, name) to public;

reset search_path;
reset role;
