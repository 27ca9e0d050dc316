-- The model-as-rows store (DESIGN §5): registered models, model versions, their manifests
-- and aliases as rows that rowver versions like any other, plus content-addressed chunks.
--
--   rowver.model          one row per registered model
--   rowver.model_version  one row per saved version: params, metrics, tags, lineage, hash
--   rowver.model_tensor   the manifest: each weight or artifact of a version, by its chunks
--   rowver.model_alias    production, staging, ...: (model, alias) -> version
--   rowver.model_chunk    sha-256 -> bytes; immutable, NOT versioned (history would copy
--                         every megabyte, and gc could then free nothing)
--
-- The four metadata tables are versioned by rowver itself, so moving an alias is an UPDATE
-- and rollback reads the alias's previous state from history. They are enabled on first
-- write (rowver.model_store_init), not at install: enabling here would spend a changeset
-- on every fresh install, before the user has written anything.
--
-- The store's SQL, in install order (each file may use what the ones before it define):
--   60_model_tables.sql      the tables, their grants, the store's locks and first-write setup,
--                            chunk reads
--   61_model_refs.sql        names and model refs (churn, churn/3, churn@production, model:REF)
--   62_model_commit.sql      content hashes and manifests; commit, alias, rollback, promote, delete
--   63_model_search_gc.sql   search, lineage (data -> models), gc, check_models

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

create table if not exists rowver.model (
  name        text primary key check (name ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$'),
  description text,
  created_at  timestamptz not null default pg_catalog.clock_timestamp(),
  db_user     name not null default session_user
);

create table if not exists rowver.model_version (
  model         text not null references rowver.model (name),
  version       integer not null check (version > 0),  -- numbered per model, never reused
  params        jsonb not null default '{}',
  metrics       jsonb not null default '{}',             -- a number, or a per-step series
  tags          text[] not null default '{}',
  description   text,
  data_version  bigint,          -- the data version it was trained on (a resolved ref)
  data_ref      text,            -- the ref as the caller wrote it
  code_revision text,
  author        text,            -- claimed, like rowver.changeset.author
  db_user       name not null default session_user,
  created_at    timestamptz not null default pg_catalog.clock_timestamp(),
  nbytes        bigint not null default 0,  -- weights and artifacts together
  content_hash  text not null,   -- rowver.model_content_hash over params and manifest
  primary key (model, version)
);

-- Immutable once written; deleting a version deletes its manifest too (both tombstoned).
create table if not exists rowver.model_tensor (
  model      text not null,
  version    integer not null,
  kind       text not null check (kind in ('weight', 'artifact')),
  name       text not null check (name <> '' and name !~ '[[:cntrl:]]' and length(name) <= 1000),
  dtype      text not null,      -- numpy's dtype.str ('<f4'), a JSON descr, or 'torch.bfloat16'
  shape      bigint[] not null,
  nbytes     bigint not null check (nbytes >= 0),
  chunk_size integer not null check (chunk_size > 0),
  chunks     bytea[] not null,   -- sha-256 of each slice, in order
  primary key (model, version, kind, name),
  foreign key (model, version) references rowver.model_version on delete cascade
);

create table if not exists rowver.model_alias (
  model   text not null,
  alias   text not null check (alias ~ '^[A-Za-z_][A-Za-z0-9._-]{0,127}$'),
  version integer not null,
  primary key (model, alias),
  foreign key (model, version) references rowver.model_version
);

-- Float data does not compress: EXTERNAL stores it out of line without trying.
create table if not exists rowver.model_chunk (
  sha256     bytea primary key check (octet_length(sha256) = 32),
  data       bytea not null,
  created_at timestamptz not null default pg_catalog.clock_timestamp()
);
alter table rowver.model_chunk alter column data set storage external;
-- A chunk is stored under its own sha-256 or not at all: the server hashes what it stores,
-- so nobody can plant other bytes under a hash an honest save will name later. (Not
-- validated against chunks stored before it existed: rowver check hashes those.)
do $$
begin
  if not exists (select from pg_catalog.pg_constraint c
                  where c.conrelid = 'rowver.model_chunk'::regclass and c.conname = 'model_chunk_verified') then
    alter table rowver.model_chunk add constraint model_chunk_verified
      check (sha256 operator(pg_catalog.=) pg_catalog.sha256(data)) not valid;
  end if;
end $$;

-- Everyone reads the store and adds chunks (COPY, verified above); the metadata changes
-- only through rowver's functions, which run as rowver_owner and set who and when
-- themselves (the capture triggers record the session's role). Chunks are never changed
-- and only gc (rowver_admin's) removes them. SELECT is granted before versioning is
-- enabled, so enable mirrors it onto the history tables.
revoke insert, update, delete on rowver.model, rowver.model_version, rowver.model_tensor, rowver.model_alias
  from public;
grant select on rowver.model, rowver.model_version, rowver.model_tensor, rowver.model_alias to public;
grant select, insert on rowver.model_chunk to public;

-- Saves, first-time setup and gc take row locks on these rows (rowver_owner's, so no other
-- role can hold them): 'models' serialises model numbering and the store's setup, and
-- 'model_gc' keeps gc out while a save commits (gc locks it FOR UPDATE, a commit FOR SHARE).
insert into rowver.meta values ('models', ''), ('model_gc', '') on conflict (key) do nothing;
drop function if exists rowver.model_lock_key1();

-- The one advisory lock of the store: a save holds it shared from its first chunk to its
-- commit (across transactions, which no row lock can), and gc waits for it exclusively. A
-- save only tries for it (rowver/models/_store.py): anyone can take an advisory lock, and a save
-- that goes without it is still guarded by its commit's check that every chunk is stored.
create or replace function rowver.model_gc_lock(out key1 integer, out key2 integer)
language sql immutable parallel safe
begin atomic
  select (x'5256'::integer << 16) | x'fffd'::integer, 1;
end;

-- Version the metadata tables, once, in the transaction of the first write to them.
create or replace function rowver.model_store_init() returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  t regclass;
begin
  if (select count(*) from rowver.versioned v where v.relid in
        ('rowver.model'::regclass, 'rowver.model_version'::regclass,
         'rowver.model_tensor'::regclass, 'rowver.model_alias'::regclass)) = 4 then
    return;
  end if;
  perform from rowver.meta m where m.key = 'models' for update;  -- two first saves at once
  foreach t in array array['rowver.model', 'rowver.model_version', 'rowver.model_tensor',
                           'rowver.model_alias']::regclass[] loop
    if not exists (select from rowver.versioned v where v.relid = t) then
      perform rowver.enable(t);
    end if;
  end loop;
end $$;

-- The data of the chunks named, in the order given (null for a missing one), for a load's
-- binary COPY: one index lookup per chunk (the LIMIT keeps the lateral from being turned
-- into a join over the whole store), so a load costs the same whatever the store holds.
create or replace function rowver.model_chunk_data(hashes bytea[]) returns table (data bytea)
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select c.data
    from unnest(hashes) with ordinality u(h, i)
    left join lateral (select k.data from rowver.model_chunk k where k.sha256 = u.h limit 1) c on true
   order by u.i
$$;

grant execute on function rowver.model_gc_lock(), rowver.model_chunk_data(bytea[]) to public;
-- model_store_init is called by the store's functions (61-63), not by applications
revoke execute on function rowver.model_store_init() from public;

reset search_path;
reset role;
