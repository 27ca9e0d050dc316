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
-- save only tries for it (rowver/_models.py): anyone can take an advisory lock, and a save
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

-- One clear line for a name that cannot be used (the CHECK constraints are the backstop).
create or replace function rowver.model_check_name(what text, name text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp
as $$
begin
  if what = 'model' and (name is null or name !~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$') then
    raise exception 'rowver: invalid model name %', coalesce(quote_literal(name), 'NULL')
      using errcode = '22023',
      hint = 'a model name has letters, digits, _ . - (no spaces, / or @), at most 128 characters';
  elsif what = 'alias' and (name is null or name !~ '^[A-Za-z_][A-Za-z0-9._-]{0,127}$') then
    raise exception 'rowver: invalid alias %', coalesce(quote_literal(name), 'NULL')
      using errcode = '22023',
      hint = 'an alias starts with a letter or _, then letters, digits, _ . -, at most 128 characters';
  elsif what in ('weight', 'artifact', 'tag')
        and (name is null or name = '' or name ~ '[[:cntrl:]]' or length(name) > 1000) then
    raise exception 'rowver: invalid % name %', what, coalesce(quote_literal(name), 'NULL')
      using errcode = '22023', hint = 'names are non-empty, at most 1000 characters, without control characters';
  end if;
end $$;

-- A model ref (churn, churn/3, churn@production) -> (model, version). A bare name is its
-- newest version. Unknown models, versions and aliases raise RV011 (rowver.UnknownModelError).
create or replace function rowver.model_ref(ref text, out model text, out version integer)
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
  r text := btrim(ref);
  m text[];
  a text;
begin
  if r is null or r = '' then
    raise exception 'rowver: empty model ref' using errcode = '22023',
      hint = 'a model ref is NAME, NAME/N or NAME@ALIAS';
  end if;
  if r ~ '@' then
    m := regexp_match(r, '^([^@/]+)@([^@/]+)$');
  elsif r ~ '/' then
    m := regexp_match(r, '^([^@/]+)/([0-9]{1,9})$');
  else
    m := array[r];
  end if;
  if m is null then
    raise exception 'rowver: invalid model ref %', quote_literal(r) using errcode = '22023',
      hint = 'a model ref is NAME, NAME/N or NAME@ALIAS';
  end if;
  model := m[1];
  if not exists (select from rowver.model x where x.name = model) then
    raise exception 'rowver: unknown model %', quote_literal(model) using errcode = 'RV011',
      hint = 'rowver model list shows the models';
  end if;
  if r ~ '@' then
    select x.version into version from rowver.model_alias x where x.model = m[1] and x.alias = m[2];
    if not found then
      raise exception 'rowver: model % has no alias %', quote_literal(model), quote_literal(m[2])
        using errcode = 'RV011',
        hint = coalesce('its aliases: ' || (select string_agg(x.alias, ', ' order by x.alias)
                                              from rowver.model_alias x where x.model = m[1]),
                        'it has no aliases');
    end if;
  elsif r ~ '/' then
    version := m[2]::integer;
    if not exists (select from rowver.model_version x where x.model = m[1] and x.version = m[2]::integer) then
      raise exception 'rowver: model % has no version %', quote_literal(model), version
        using errcode = 'RV011', hint = 'rowver model versions ' || model || ' lists them';
    end if;
  else
    select max(x.version) into version from rowver.model_version x where x.model = model;
    if version is null then
      raise exception 'rowver: model % has no versions', quote_literal(model) using errcode = 'RV011';
    end if;
  end if;
end $$;

-- The data version a model version was trained on: what `model:REF` means as a data ref
-- (rowver.resolve calls this). It was resolved when the model was saved, so it is <= head.
create or replace function rowver.model_data_version(ref text) returns bigint
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  v bigint;
begin
  select * into r from rowver.model_ref(ref);
  select x.data_version into v from rowver.model_version x where x.model = r.model and x.version = r.version;
  if v is null then
    raise exception 'rowver: model %/% was saved without a data version', r.model, r.version
      using errcode = '22023', hint = 'pass data_version= when saving a model to record its training data';
  end if;
  return v;
end $$;

-- One manifest entry in canonical text: a JSON array, whose text form jsonb fixes.
create or replace function rowver.model_manifest_line(kind text, name text, dtype text, shape bigint[],
                                                      nbytes bigint, chunk_size integer, chunks bytea[])
returns text
language sql immutable parallel safe
return pg_catalog.jsonb_build_array(kind, name, dtype, shape, nbytes, chunk_size,
         array(select pg_catalog.encode(c, 'hex') from unnest(chunks) with ordinality u(c, i) order by i))::text;

-- The content hash of a model version: sha-256 over its params and its manifest lines in
-- a fixed order. Computed by the server on commit and recomputed by check_models.
create or replace function rowver.model_content_hash(params jsonb, lines text[]) returns text
language sql immutable parallel safe
return pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
         params::text || E'\n' || array_to_string(array(select l from unnest(lines) l order by l collate "C"), E'\n'),
         'UTF8')), 'hex');

-- The manifest a client sends, as rows: [{kind, name, dtype, shape, nbytes, chunk_size,
-- chunks: [hex, ...]}, ...].
create or replace function rowver.model_manifest_rows(manifest jsonb)
returns table (kind text, name text, dtype text, shape bigint[], nbytes bigint, chunk_size integer,
               chunks bytea[])
language sql immutable set search_path = pg_catalog, pg_temp
as $$
  select e.kind, e.name, e.dtype, e.shape, e.nbytes, e.chunk_size,
         array(select pg_catalog.decode(h, 'hex') from unnest(e.chunks) with ordinality u(h, i) order by i)
    from jsonb_to_recordset(manifest)
         as e(kind text, name text, dtype text, shape bigint[], nbytes bigint, chunk_size integer, chunks text[])
$$;

-- Whether a manifest (as a client read it, in model_manifest_rows' form) and the stored
-- params hash to the version's content hash: a load checks this before it trusts the
-- manifest to name its chunks.
create or replace function rowver.model_manifest_matches(model text, version integer, manifest jsonb)
returns boolean
language sql stable set search_path = pg_catalog, pg_temp
as $$
  select v.content_hash = rowver.model_content_hash(v.params,
           array(select rowver.model_manifest_line(m.kind, m.name, m.dtype, m.shape, m.nbytes, m.chunk_size, m.chunks)
                   from rowver.model_manifest_rows(manifest) m))
    from rowver.model_version v
   where v.model = model_manifest_matches.model and v.version = model_manifest_matches.version
$$;

-- Commit a saved model version: the version row, its manifest and an optional alias move,
-- in the caller's transaction (one changeset). The chunks were written before, in their
-- own transactions; each one must exist now, and gc cannot remove them until we commit.
create or replace function rowver.model_commit(model text, params jsonb, metrics jsonb, tags text[],
                                               description text, data_version bigint, data_ref text,
                                               code_revision text, author text, manifest jsonb,
                                               alias text default null, expect_hash text default null,
                                               out version integer, out content_hash text)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
  bad  record;
  n    bigint;
begin
  perform rowver.model_check_name('model', model);
  if alias is not null then
    perform rowver.model_check_name('alias', alias);
  end if;
  if jsonb_typeof(coalesce(params, '{}')) <> 'object' or jsonb_typeof(coalesce(metrics, '{}')) <> 'object' then
    raise exception 'rowver: params and metrics must be JSON objects' using errcode = '22023';
  end if;
  if jsonb_typeof(coalesce(manifest, '[]')) <> 'array' then
    raise exception 'rowver: the manifest must be a JSON array' using errcode = '22023';
  end if;
  select t.t into bad from unnest(tags) t(t) where t.t is null or t.t = '' or t.t ~ '[[:cntrl:]]';
  if found then
    raise exception 'rowver: invalid tag %', coalesce(quote_literal(bad.t), 'NULL') using errcode = '22023';
  end if;
  if data_version is not null then
    perform rowver.resolve(data_version::text);  -- at most head
  end if;

  create temp table if not exists rv_model_manifest (kind text, name text, dtype text, shape bigint[],
                                                    nbytes bigint, chunk_size integer, chunks bytea[])
    on commit drop;
  truncate rv_model_manifest;
  insert into rv_model_manifest (kind, name, dtype, shape, nbytes, chunk_size, chunks)
  select e.kind, e.name, e.dtype, coalesce(e.shape, '{}'), e.nbytes,
         coalesce(e.chunk_size, 4194304), coalesce(e.chunks, '{}')
    from rowver.model_manifest_rows(coalesce(manifest, '[]')) e;
  for bad in select m.kind, m.name from rv_model_manifest m loop
    perform rowver.model_check_name(bad.kind, bad.name);
  end loop;
  select m.kind, m.name into bad from rv_model_manifest m
   where m.kind not in ('weight', 'artifact') or m.dtype is null or m.nbytes is null or m.nbytes < 0
      or cardinality(m.chunks) <> (m.nbytes + m.chunk_size - 1) / m.chunk_size
      or exists (select from unnest(m.chunks) c where octet_length(c) is distinct from 32);
  if found then
    raise exception 'rowver: manifest entry % % is malformed', bad.kind, quote_literal(bad.name)
      using errcode = '22023';
  end if;
  select m.kind, m.name into bad from rv_model_manifest m group by 1, 2 having count(*) > 1;
  if found then
    raise exception 'rowver: % % appears twice in the manifest', bad.kind, quote_literal(bad.name)
      using errcode = '22023';
  end if;

  -- gc locks this row FOR UPDATE: chunks that exist now stay until we commit
  perform from rowver.meta m where m.key = 'model_gc' for share;
  select m.kind, m.name, c.c, c.i into bad
    from rv_model_manifest m, unnest(m.chunks) with ordinality c(c, i)
   where not exists (select from rowver.model_chunk k where k.sha256 = c.c) limit 1;
  if found then
    raise exception 'rowver: chunk % of % % (sha256 %) is not stored', bad.i, bad.kind,
      quote_literal(bad.name), encode(bad.c, 'hex') using errcode = '23503',
      hint = 'write the chunks before committing the model version';
  end if;

  content_hash := rowver.model_content_hash(coalesce(params, '{}'),
    array(select rowver.model_manifest_line(m.kind, m.name, m.dtype, m.shape, m.nbytes, m.chunk_size, m.chunks)
            from rv_model_manifest m));
  if expect_hash is not null and expect_hash <> content_hash then
    raise exception 'rowver: content hash % does not match the expected %', content_hash, expect_hash
      using errcode = '22023', hint = 'the params or the manifest differ from what was exported';
  end if;

  -- numbers are per model and never reused (deleted versions are in history): serialise
  perform from rowver.meta m where m.key = 'models' for update;
  if to_regclass('rowver.model_version__versions') is null then
    select coalesce(max(v.version), 0) + 1 into version from rowver.model_version v where v.model = model;
  else
    select coalesce(max(v.version), 0) + 1 into version from rowver.model_version__versions v
     where v.model = model;
  end if;
  -- the message first: the first captured change (or enabling) creates the changeset
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('save model %s/%s', model, version), true);
  end if;
  perform rowver.model_store_init();
  insert into rowver.model (name) values (model) on conflict do nothing;
  select coalesce(sum(m.nbytes), 0) into n from rv_model_manifest m;
  insert into rowver.model_version (model, version, params, metrics, tags, description, data_version,
                                    data_ref, code_revision, author, nbytes, content_hash)
  values (model, version, coalesce(params, '{}'), coalesce(metrics, '{}'), coalesce(tags, '{}'),
          description, data_version, data_ref, code_revision,
          coalesce(author, nullif(current_setting('rowver.author', true), '')), n, content_hash);
  insert into rowver.model_tensor (model, version, kind, name, dtype, shape, nbytes, chunk_size, chunks)
  select model, version, m.kind, m.name, m.dtype, m.shape, m.nbytes, m.chunk_size, m.chunks
    from rv_model_manifest m;
  if alias is not null then
    perform rowver.model_alias_set(model, alias, version);
  end if;
end $$;

-- Point an alias at a version (creating it if need be). Returns its previous target.
create or replace function rowver.model_alias_set(model text, alias text, version integer,
                                                  out old_version integer, out new_version integer)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
begin
  perform rowver.model_check_name('alias', alias);
  perform rowver.model_ref(format('%s/%s', model, version));  -- one clear line if unknown
  perform rowver.model_store_init();
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('alias %s@%s -> %s', model, alias, version), true);
  end if;
  select a.version into old_version from rowver.model_alias a
   where a.model = model and a.alias = alias for update;
  if old_version is null then
    insert into rowver.model_alias (model, alias, version) values (model, alias, version);
  elsif old_version <> version then
    update rowver.model_alias a set version = model_alias_set.version where a.model = model and a.alias = alias;
  end if;
  new_version := version;
end $$;

-- Move an alias back to the target it had before its current state, as a new changeset:
-- read from history, so a rollback of a rollback goes forward again.
create or replace function rowver.model_rollback(model text, alias text,
                                                 out old_version integer, out new_version integer)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
  since bigint;
begin
  perform rowver.model_ref(model);
  select a.version, a.rv_version into old_version, since from rowver.model_alias a
   where a.model = model and a.alias = alias for update;
  if not found then
    raise exception 'rowver: model % has no alias %', quote_literal(model), quote_literal(alias)
      using errcode = 'RV011';
  end if;
  select h.version into new_version from rowver.model_alias__history h
   where h.model = model and h.alias = alias and h.rv_until = since and not h.rv_deleted;
  if not found then
    raise exception 'rowver: alias %@% has no earlier target to roll back to', model, alias
      using errcode = '22023', hint = format('it has pointed at version %s since it was created', old_version);
  end if;
  if not exists (select from rowver.model_version v where v.model = model and v.version = new_version) then
    raise exception 'rowver: alias %@% pointed at %/% before, which was deleted', model, alias, model, new_version
      using errcode = '22023';
  end if;
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message',
                       format('rollback %s@%s from %s to %s', model, alias, old_version, new_version), true);
  end if;
  update rowver.model_alias a set version = new_version where a.model = model and a.alias = alias;
end $$;

-- One number from a metric: a number itself, or the last/first/min/max of a per-step
-- series (an array of numbers or of {"step": .., "value": ..}). Null when absent.
create or replace function rowver.model_metric(metrics jsonb, name text, agg text default 'last')
returns double precision
language plpgsql immutable parallel safe set search_path = pg_catalog, pg_temp
as $$
declare
  v jsonb := metrics -> name;
begin
  if agg is null or agg not in ('last', 'first', 'min', 'max') then
    raise exception 'rowver: unknown metric aggregate %', coalesce(quote_literal(agg), 'NULL')
      using errcode = '22023', hint = 'use last, first, min or max';
  end if;
  if v is null or jsonb_typeof(v) = 'null' then
    return null;
  elsif jsonb_typeof(v) = 'number' then
    return v::double precision;
  elsif jsonb_typeof(v) = 'object' and jsonb_typeof(v -> 'value') = 'number' then
    return (v -> 'value')::double precision;
  elsif jsonb_typeof(v) = 'array' then
    return (select case agg when 'last' then (array_agg(x order by i desc))[1]
                            when 'first' then (array_agg(x order by i))[1]
                            when 'min' then min(x) else max(x) end
              from (select i, case when jsonb_typeof(e) = 'number' then e::double precision
                                   when jsonb_typeof(e -> 'value') = 'number' then (e -> 'value')::double precision
                              end as x
                      from jsonb_array_elements(v) with ordinality a(e, i)) s
             where x is not null);
  end if;
  return null;
end $$;

-- Move an alias to a candidate only if it is at least as good as the current holder on
-- a metric (mode max: higher is better; min: lower). A refusal changes nothing.
create or replace function rowver.model_promote(model text, alias text, version integer, metric text,
                                                mode text default 'max', agg text default 'last',
                                                out promoted boolean, out previous integer,
                                                out candidate_value double precision,
                                                out holder_value double precision, out reason text)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
begin
  if mode is null or mode not in ('max', 'min') then
    raise exception 'rowver: promote mode must be max or min, not %', coalesce(quote_literal(mode), 'NULL')
      using errcode = '22023';
  end if;
  perform rowver.model_check_name('alias', alias);
  perform rowver.model_ref(format('%s/%s', model, version));
  select rowver.model_metric(v.metrics, metric, agg) into candidate_value
    from rowver.model_version v where v.model = model and v.version = version;
  if candidate_value is null or candidate_value = 'NaN' then
    raise exception 'rowver: %/% has no metric % to promote on', model, version, quote_literal(metric)
      using errcode = '22023';
  end if;
  select a.version, rowver.model_metric(v.metrics, metric, agg) into previous, holder_value
    from rowver.model_alias a join rowver.model_version v on v.model = a.model and v.version = a.version
   where a.model = model and a.alias = alias
     for update of a;
  if previous = version then
    promoted := false;
    reason := format('%s@%s already points at version %s', model, alias, version);
    return;
  elsif previous is not null and (holder_value is null or holder_value = 'NaN') then
    promoted := false;
    reason := format('the current holder %s/%s has no metric %s to compare with', model, previous, metric);
    return;
  elsif previous is not null and (case mode when 'max' then candidate_value < holder_value
                                            else candidate_value > holder_value end) then
    promoted := false;
    reason := format('%s/%s has %s %s = %s, worse than %s/%s (%s@%s) with %s', model, version, agg, metric,
                     candidate_value, model, previous, model, alias, holder_value);
    return;
  end if;
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('promote %s/%s to %s@%s on %s %s = %s', model, version,
                                                model, alias, agg, metric, candidate_value), true);
  end if;
  perform rowver.model_alias_set(model, alias, version);
  promoted := true;
  reason := case when previous is null then format('%s@%s is new', model, alias)
                 else format('%s %s = %s is at least as good as %s', agg, metric, candidate_value, holder_value) end;
end $$;

-- Delete a model version: a tombstone in history, like any delete. Its chunks stay until
-- retention removes the history that names them.
create or replace function rowver.model_delete(ref text, out model text, out version integer)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_variable
declare
  r record;
  held text;
begin
  select * into r from rowver.model_ref(ref);
  model := r.model;
  version := r.version;
  select string_agg(a.alias, ', ' order by a.alias) into held from rowver.model_alias a
   where a.model = r.model and a.version = r.version;
  if held is not null then
    raise exception 'rowver: %/% is the target of alias %; move it first', r.model, r.version, held
      using errcode = '22023';
  end if;
  if coalesce(current_setting('rowver.message', true), '') = '' then
    perform set_config('rowver.message', format('delete model %s/%s', r.model, r.version), true);
  end if;
  delete from rowver.model_version v where v.model = r.model and v.version = r.version;
end $$;

-- Model versions matching every filter given (nulls: no filter). params: JSON containment;
-- metrics: [{"name": "auc", "agg": "last", "op": ">=", "value": 0.9}, ...]; tags: all of them.
-- Static SQL only: nothing from the filters is pasted into a statement.
create or replace function rowver.model_search(name text default null, params jsonb default null,
                                               metrics jsonb default null, tags text[] default null,
                                               since timestamptz default null, until timestamptz default null)
returns table (model text, version integer)
language plpgsql stable set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  bad text;
begin
  select f.op into bad from jsonb_to_recordset(coalesce(metrics, '[]')) f(op text)
   where f.op is null or f.op not in ('<', '<=', '=', '>=', '>', '!=');
  if found then
    raise exception 'rowver: unknown comparison %', coalesce(quote_literal(bad), 'NULL') using errcode = '22023',
      hint = 'use <, <=, =, >=, > or !=';
  end if;
  return query
    select v.model, v.version from rowver.model_version v
     where (model_search.name is null or v.model = model_search.name)
       and (model_search.params is null or v.params @> model_search.params)
       and (model_search.tags is null or v.tags @> model_search.tags)
       and (since is null or v.created_at >= since)
       and (until is null or v.created_at <= until)
       and not exists (
         select from jsonb_to_recordset(coalesce(model_search.metrics, '[]'))
                  f(name text, agg text, op text, value double precision),
                lateral (select rowver.model_metric(v.metrics, f.name, coalesce(f.agg, 'last')) as x) m
          where not coalesce(case f.op when '<' then m.x < f.value when '<=' then m.x <= f.value
                                       when '=' then m.x = f.value when '>=' then m.x >= f.value
                                       when '>' then m.x > f.value else m.x <> f.value end, false))
     order by v.model, v.version;
end $$;

-- Model versions trained on the data version a ref names (lineage, data -> models).
create or replace function rowver.models_trained_on(ref text) returns table (model text, version integer)
language sql volatile set search_path = pg_catalog, pg_temp
as $$
  select v.model, v.version from rowver.model_version v
   where v.data_version = rowver.resolve(ref) order by 1, 2
$$;

-- Reclaim chunks that no model version names, current or historical, and that are older
-- than `grace` (so a save still writing its chunks keeps them). Only when asked.
create or replace function rowver.model_gc(grace interval default '1 day', out chunks bigint, out bytes bigint)
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  -- waits for saves in flight: each holds this lock shared from its first chunk to its commit
  perform pg_advisory_xact_lock(l.key1, l.key2) from rowver.model_gc_lock() l;
  perform from rowver.meta m where m.key = 'model_gc' for update;
  create temp table rv_model_live (h bytea primary key) on commit drop;
  insert into rv_model_live select distinct c from rowver.model_tensor t, unnest(t.chunks) c
    on conflict do nothing;
  if to_regclass('rowver.model_tensor__history') is not null then
    execute 'insert into rv_model_live select distinct c from rowver.model_tensor__history t, unnest(t.chunks) c
               where t.chunks is not null on conflict do nothing';
  end if;
  with gone as (
    delete from rowver.model_chunk k
     where k.created_at < clock_timestamp() - grace
       and not exists (select from rv_model_live l where l.h = k.sha256)
    returning octet_length(k.data) as n
  )
  select count(*), coalesce(sum(n), 0) into chunks, bytes from gone;
  drop table rv_model_live;
end $$;

-- The model store's invariants (DESIGN §7), shaped like rowver.check: every chunk a
-- visible model version names exists, has the right length and (with verify_data) the
-- hash it is stored under; every version's content hash matches its params and manifest.
create or replace function rowver.check_models(verify_data boolean default true)
returns table (table_name text, invariant text, detail text)
language plpgsql volatile set search_path = pg_catalog, pg_temp
as $$
begin
  -- the server verifies every chunk stored from now on (the hash check below, the older ones)
  return query
    select 'rowver.model_chunk', 'chunk check', 'the constraint model_chunk_verified is missing: chunks are stored unverified'
     where not exists (select from pg_constraint c where c.conrelid = 'rowver.model_chunk'::regclass
                                                    and c.conname = 'model_chunk_verified' and c.contype = 'c');
  return query
    select 'rowver.model_chunk', 'chunk missing',
           format('%s/%s %s %s: chunk %s (sha256 %s) is not stored', t.model, t.version, t.kind,
                  quote_literal(t.name), c.i, encode(c.h, 'hex'))
      from rowver.model_tensor t, unnest(t.chunks) with ordinality c(h, i)
     where not exists (select from rowver.model_chunk k where k.sha256 = c.h);
  return query
    select 'rowver.model_tensor', 'size',
           format('%s/%s %s %s: %s bytes in %s chunk(s), its manifest says %s', t.model, t.version, t.kind,
                  quote_literal(t.name), s.n, cardinality(t.chunks), t.nbytes)
      from rowver.model_tensor t,
           lateral (select coalesce(sum(octet_length(k.data)), 0) as n
                      from unnest(t.chunks) c(h) join rowver.model_chunk k on k.sha256 = c.h) s
     where s.n <> t.nbytes
       and not exists (select from unnest(t.chunks) c(h)
                        where not exists (select from rowver.model_chunk k where k.sha256 = c.h));
  if verify_data then
    return query
      select 'rowver.model_chunk', 'chunk hash',
             format('chunk %s does not match its sha-256 (named by %s)', encode(k.sha256, 'hex'),
                    (select string_agg(distinct format('%s/%s', t.model, t.version), ', ')
                       from rowver.model_tensor t where k.sha256 = any (t.chunks)))
        from (select distinct c.h from rowver.model_tensor t, unnest(t.chunks) c(h)) r
        join rowver.model_chunk k on k.sha256 = r.h
       where pg_catalog.sha256(k.data) <> k.sha256;
  end if;
  return query
    select 'rowver.model_version', 'content hash',
           format('%s/%s: content hash %s, its params and manifest hash to %s', v.model, v.version,
                  v.content_hash, h.h)
      from rowver.model_version v,
           lateral (select rowver.model_content_hash(v.params,
                      array(select rowver.model_manifest_line(t.kind, t.name, t.dtype, t.shape, t.nbytes,
                                                              t.chunk_size, t.chunks)
                              from rowver.model_tensor t where t.model = v.model and t.version = v.version)) as h) h
     where h.h <> v.content_hash;
  -- lineage names data that exists: a model is trained on a version at or below head
  return query
    select 'rowver.model_version', 'data version',
           format('%s/%s was trained on version %s, above head %s', v.model, v.version, v.data_version, h.head)
      from rowver.model_version v, (select rowver.head() as head) h
     where v.data_version > h.head;
end $$;

grant execute on function rowver.model_gc_lock(), rowver.model_chunk_data(bytea[]),
  rowver.model_check_name(text, text), rowver.model_ref(text), rowver.model_data_version(text),
  rowver.model_manifest_line(text, text, text, bigint[], bigint, integer, bytea[]),
  rowver.model_content_hash(jsonb, text[]), rowver.model_manifest_rows(jsonb),
  rowver.model_manifest_matches(text, integer, jsonb),
  rowver.model_commit(text, jsonb, jsonb, text[], text, bigint, text, text, text, jsonb, text, text),
  rowver.model_alias_set(text, text, integer), rowver.model_rollback(text, text),
  rowver.model_metric(jsonb, text, text),
  rowver.model_promote(text, text, integer, text, text, text), rowver.model_delete(text),
  rowver.model_search(text, jsonb, jsonb, text[], timestamptz, timestamptz),
  rowver.models_trained_on(text), rowver.check_models(boolean)
to public;
-- reclaiming space is maintenance, not an application's business; model_store_init is
-- called by the functions above
revoke execute on function rowver.model_store_init() from public;
grant execute on function rowver.model_gc(interval) to rowver_admin;

reset search_path;
reset role;
