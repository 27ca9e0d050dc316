-- The model store (60_model_tables.sql), part 4: reading across it and keeping it: search by
-- params, metrics and tags, the models trained on a data version, gc of unnamed chunks, and
-- the store's invariants for rowver check.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

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

grant execute on function rowver.model_search(text, jsonb, jsonb, text[], timestamptz, timestamptz),
  rowver.models_trained_on(text), rowver.check_models(boolean)
to public;
-- reclaiming space is maintenance, not an application's business
grant execute on function rowver.model_gc(interval) to rowver_admin;

reset search_path;
reset role;
