-- The model store (60_model_tables.sql), part 2: names and model refs. A model ref is NAME
-- (the newest version), NAME/N or NAME@ALIAS; `model:REF` as a data ref is the data version
-- the model was trained on.

set role rowver_owner;
set search_path = pg_catalog, pg_temp;  -- SQL bodies below are bound now, whatever a caller's path

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

grant execute on function rowver.model_check_name(text, text), rowver.model_ref(text),
  rowver.model_data_version(text)
to public;

reset search_path;
reset role;
