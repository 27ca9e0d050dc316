-- The model store (60_model_tables.sql), part 3: a version's content hash and manifest, and
-- every change to the metadata: commit a saved version, move, roll back or promote an alias,
-- delete a version. Each runs in the caller's transaction, so it is one changeset.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

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

grant execute on function rowver.model_manifest_line(text, text, text, bigint[], bigint, integer, bytea[]),
  rowver.model_content_hash(jsonb, text[]), rowver.model_manifest_rows(jsonb),
  rowver.model_manifest_matches(text, integer, jsonb),
  rowver.model_commit(text, jsonb, jsonb, text[], text, bigint, text, text, text, jsonb, text, text),
  rowver.model_alias_set(text, text, integer), rowver.model_rollback(text, text),
  rowver.model_metric(jsonb, text, text),
  rowver.model_promote(text, text, integer, text, text, text), rowver.model_delete(text)
to public;

reset search_path;
reset role;
