-- rowver catalog: roles, schema, version sequence, changesets, head, tags and the registry.
--
-- Installable with psql alone (`psql -f` each file of sql/ in name order) and idempotent:
-- rerunning the files upgrades functions in place and leaves data alone.

-- rowver_owner (NOLOGIN) owns the catalog; rowver_admin prunes and erases any versioned
-- table and maintains the catalog; rowver_tagger names versions (rowver_admin is one). None
-- of them opens a user's table: each table's history belongs to the table's owner. They are
-- created where the installer may create roles, and reused where they exist.
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'rowver_owner') then
    create role rowver_owner nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'rowver_admin') then
    create role rowver_admin nologin;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'rowver_tagger') then
    create role rowver_tagger nologin;
  end if;
  -- the installer acts as rowver_owner to create objects it will own
  if not pg_catalog.pg_has_role(current_user, 'rowver_owner', 'MEMBER') then
    execute pg_catalog.format('grant rowver_owner to %I', current_user);
  end if;
  if not pg_catalog.pg_has_role('rowver_admin', 'rowver_tagger', 'MEMBER') then
    grant rowver_tagger to rowver_admin;
  end if;
exception when insufficient_privilege then
  raise exception 'rowver: installing needs the roles rowver_owner, rowver_admin and rowver_tagger, and membership in rowver_owner'
    using errcode = '42501',
    hint = format('ask an administrator to run: CREATE ROLE rowver_owner NOLOGIN; CREATE ROLE rowver_admin NOLOGIN; '
                  'CREATE ROLE rowver_tagger NOLOGIN; GRANT rowver_tagger TO rowver_admin; GRANT rowver_owner TO %I;',
                  current_user);
end $$;

-- Before 0.2, rowver_admin was a member of rowver_owner, which then owned every history:
-- membership would now open the catalog to every admin. (A grant the installer cannot
-- revoke is left for `rowver check` to report.)
do $$
begin
  if exists (select from pg_catalog.pg_auth_members m
              where m.roleid = 'rowver_owner'::regrole and m.member = 'rowver_admin'::regrole) then
    revoke rowver_owner from rowver_admin;
  end if;
exception when insufficient_privilege then
  null;
end $$;

create schema if not exists rowver authorization rowver_owner;
grant usage on schema rowver to public;

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- defaults and checks below are bound now

-- EXECUTE on rowver's functions is not PUBLIC's by default: each file grants, per function,
-- what others may run (allocation, capture and registration stay with rowver_owner).
alter default privileges for role rowver_owner revoke execute on functions from public;

create table if not exists rowver.meta (
  key   text primary key,
  value text not null
);

-- One database-wide sequence hands out versions. CACHE 1 keeps them dense and ordered by
-- allocation; 2^48 versions fit in a changeset's bigint with room to spare.
create sequence if not exists rowver.version_seq as bigint cache 1 maxvalue 281474976710654;

-- In-flight versions are marked by row locks on these rows, which only rowver's functions may
-- take (they need UPDATE): version v holds slot v % 4096 from before it is handed out until its
-- transaction ends (sql/10_versions.sql). Advisory locks would do it faster, but any role can
-- take any advisory lock and sit on it; these no one else can hold. Only ever locked, never
-- updated: a lock writes no index entry, so under SERIALIZABLE it conflicts with no one.
create table if not exists rowver.slot (id integer primary key check (id >= 0 and id < 4096));
insert into rowver.slot select g from generate_series(0, 4095) g on conflict do nothing;

-- A version handed to a running transaction. The stamp trusts currval() only after a
-- statement has checked the row here for its own transaction id (rowver.allocated). Not
-- unique by xid: rows restored from another cluster may share a transaction id with ours.
create table if not exists rowver.allocation (
  version bigint primary key,
  xid     xid8 not null
);
alter table rowver.allocation drop constraint if exists allocation_xid_key;
-- the versions the transaction gave up renumbering (rowver.renumber), on its current row
alter table rowver.allocation add column if not exists abandoned bigint[] not null default '{}';

-- The keys each statement wrote to a versioned table (a JSON object per line, or '*' for a
-- statement of over 256 rows), so that a transaction that renumbers finds its rows at commit
-- (rowver.track, T's restamp). Written by the capture, as T's owner, under row-level security:
-- a writer cannot hide keys from its own restamp. Unlogged: nothing in it outlives a crash that
-- ends the transactions it serves. publish_head clears what finished transactions left.
create unlogged table if not exists rowver.tracked (
  xid  xid8 not null,
  rel  oid not null,
  keys text not null
);
create index if not exists tracked_xid on rowver.tracked (xid, rel);

-- One row per committed transaction that changed versioned data.
create table if not exists rowver.changeset (
  version     bigint primary key,
  xid         xid8 not null,
  created_at  timestamptz not null default pg_catalog.clock_timestamp(),
  db_user     name not null default session_user,  -- who logged in
  db_role     name not null,                       -- the role the writes ran as
  author      text,                                -- claimed: SET LOCAL rowver.author
  message     text,                                -- claimed: SET LOCAL rowver.message
  meta        jsonb not null default '{}'
);

-- The registry of versioned tables and the names rowver generated for them.
create table if not exists rowver.versioned (
  id              serial primary key,
  relid           regclass not null unique,   -- dumped by name, so it survives restore
  key_columns     name[] not null,
  ignore_columns  name[] not null default '{}',
  triggers        boolean not null,
  history_name    name not null,
  versions_name   name not null,
  as_of_name      name not null,
  stamp_name      name not null,
  capture_name    name not null,
  enabled_version bigint not null,
  definition_hash text not null,
  security_hash   text,           -- T's read security when it was mirrored onto history (rowver.security_hash)
  admin_name      name,           -- T's admin function (null: registered before there was one)
  restamp_name    name,           -- T's restamp function (the same)
  current_floor   bigint          -- no row of T is older than this version (rowver.analyze): as-of
                                  -- reads below it skip T (null: not known)
);
alter table rowver.versioned add column if not exists security_hash text,
                             add column if not exists admin_name name,
                             add column if not exists restamp_name name,
                             add column if not exists current_floor bigint;

-- When each column of a versioned table joined or left it (NULL added_version: there from
-- the start). attnum follows renames; a column added at version D reads NULL as of
-- versions before D; a dropped column stays in history, retired.
create table if not exists rowver.column_life (
  table_id        integer not null references rowver.versioned on delete cascade,
  name            name not null,
  attnum          smallint,
  added_version   bigint,
  dropped_version bigint,
  primary key (table_id, name)
);

-- After rowver.prune: history before `horizon` is gone, except what the tagged versions
-- in `kept` need; as-of reads of other versions before it are refused.
create table if not exists rowver.retention (
  table_id  integer primary key references rowver.versioned on delete cascade,
  horizon   bigint not null,
  kept      bigint[] not null,
  pruned_at timestamptz not null default pg_catalog.clock_timestamp(),
  net       bigint  -- the net row changes of the changesets prune removed (null: not counted)
);
alter table rowver.retention add column if not exists net bigint;

-- Which tables a changeset touched, how many row changes it made there, and by how many
-- rows it grew or shrank the table (net: inserted minus deleted; null where recorded by a
-- rowver that did not count it). No foreign keys: every writer would KEY SHARE-lock the
-- same registry row (multixacts under concurrency); rowver's own functions keep it consistent.
create table if not exists rowver.changeset_table (
  version  bigint not null,
  table_id integer not null,
  rows     bigint not null,
  net      bigint,
  primary key (version, table_id)
);
alter table rowver.changeset_table add column if not exists net bigint;
-- marked by its table's prune when no row of the table names the version any more; rowver's
-- own prune_changesets removes marked rows (table owners may update, never delete, here)
alter table rowver.changeset_table add column if not exists pruned boolean not null default false;
-- rows that entered the table under a key the changeset did not supersede (inserts, keys
-- changed into): a diff scans the table for keys written in a range only where some
-- changeset there inserted (null where recorded by a rowver that did not count it)
alter table rowver.changeset_table add column if not exists inserted bigint;
alter table rowver.changeset_table drop constraint if exists changeset_table_version_fkey,
                                   drop constraint if exists changeset_table_table_id_fkey;

-- The published head: an ordinary row, safe to read in any snapshot and on replicas.
create table if not exists rowver.head_mark (
  singleton boolean primary key default true check (singleton),
  head      bigint not null,
  at        timestamptz not null
);
insert into rowver.head_mark values (true, 0, pg_catalog.clock_timestamp()) on conflict do nothing;
-- the oldest transaction id rowver.tracked may still hold keys of: publishing clears from here
-- on, so that it never walks the index entries of keys it cleared before
alter table rowver.head_mark add column if not exists tracked_from xid8 not null default '0';

-- Every published head with its time: timestamps resolve through this log.
create table if not exists rowver.head_log (
  at   timestamptz not null,
  head bigint not null,
  primary key (at, head)
);
insert into rowver.head_log select at, head from rowver.head_mark on conflict do nothing;

-- Change streams following now (rowver changes --follow), each seen within the last minute:
-- a commit sends its NOTIFY only while one is (sql/10_versions.sql). Written through
-- rowver.follower_seen alone.
create table if not exists rowver.follower (
  id      uuid primary key,
  seen_at timestamptz not null
);

-- Names of versions. Only rowver's functions write them (rowver_tagger may create, move and
-- remove; a protected tag moves or goes only after rowver_admin unprotects it).
create table if not exists rowver.tag (
  name       text primary key,
  version    bigint not null,
  created_at timestamptz not null default pg_catalog.clock_timestamp(),
  db_user    name not null default session_user,
  protected  boolean not null default false
);
alter table rowver.tag add column if not exists protected boolean not null default false;

-- Every change to a tag: who (login and role), when, and the version it named before and
-- after (null: created, removed). Insert-only, by rowver's tag functions.
create table if not exists rowver.tag_log (
  at          timestamptz not null default pg_catalog.clock_timestamp(),
  name        text not null,
  old_version bigint,
  new_version bigint,
  protected   boolean not null,
  db_user     name not null default session_user,
  db_role     name not null,
  action      text not null check (action in ('create', 'move', 'remove', 'protect', 'unprotect'))
);
create index if not exists tag_log_name on rowver.tag_log (name, at);
-- tags made before there was a log: their creation, as recorded on the tag
insert into rowver.tag_log (at, name, old_version, new_version, protected, db_user, db_role, action)
select t.created_at, t.name, null, t.version, t.protected, t.db_user, t.db_user, 'create'
  from rowver.tag t where not exists (select from rowver.tag_log l where l.name = t.name);

-- Readers may see everything; only rowver's own functions write.
grant select on all tables in schema rowver to public;
-- The stamp reads currval(); reading a sequence never moves it (no USAGE, no UPDATE).
grant select on sequence rowver.version_seq to public;

insert into rowver.meta values ('schema_version', '2')
  on conflict (key) do update set value = excluded.value;

reset search_path;
reset role;
