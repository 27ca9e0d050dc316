-- CSV by COPY (rowver show and diff --format csv): for each column of a read (the name to read
-- it by and the type oid its result describes, in order), the expressions that make COPY
-- (format csv) print it exactly as rowver's Python encoder does (rowver/_output.py):
--   csv:  the value's CSV text (to_csv, csv_value); NULL stays NULL, an empty field;
--   json: the value's JSON text inside a row object (json_value), 'null' for NULL.
-- Both are null for a type only Python encodes (json, interval, ranges, numeric[] ...): the
-- caller then encodes the whole read in Python. In each template, {c} stands for the column,
-- quoted as an identifier. json kinds: bare (the CSV text is JSON), string (a JSON string of
-- it), numeric (a string, NaN null), float (NaN null, infinities strings), jsonb (its own text).
with encoder(type_oid, template, json) as (
    values
    -- COPY prints these as Python does: digits, the text itself, 8-4-4-4-12 hex, true/false
    ('int2'::regtype, '{c}', 'bare'), ('int4'::regtype, '{c}', 'bare'), ('int8'::regtype, '{c}', 'bare'),
    ('oid'::regtype, '{c}', 'bare'),
    ('text'::regtype, '{c}', 'string'), ('varchar'::regtype, '{c}', 'string'), ('bpchar'::regtype, '{c}', 'string'),
    ('name'::regtype, '{c}::text', 'string'),
    ('uuid'::regtype, '{c}::text', 'string'),
    ('bool'::regtype, '{c}::text', 'bare'),
    -- numerics as exact decimal strings, NaN and Infinity as words
    ('numeric'::regtype, '{c}::text', 'numeric'),
    -- Python's repr of the float (a float4 read as its text, as Python reads it): the shortest text
    -- that reads back, as PostgreSQL's, but whole numbers end in .0, and [1e15, 1e16) is
    -- written out where PostgreSQL switches to an exponent; NaN is an empty field
    -- (the commonest case first: NaN and the infinities compare above every number)
    ('float8'::regtype, $f$case when pg_catalog.abs({c}) < 1e15::float8 and {c} <> pg_catalog.trunc({c}) then {c}::text
         when {c} = 'NaN' then null when {c} = 'Infinity' then 'inf' when {c} = '-Infinity' then '-inf'
         when pg_catalog.abs({c}) >= 1e16::float8 then {c}::text
         when pg_catalog.abs({c}) < 1e15::float8 then {c}::text || '.0'
         else {c}::text::numeric::text || case when {c} = pg_catalog.trunc({c}) then '.0' else '' end end$f$,
     'float'),
    ('float4'::regtype, 'float8', 'float'),  -- (the float8 template on {c}::text::float8, below)
    -- bytea as base64 on one line
    ('bytea'::regtype, $b$pg_catalog.translate(pg_catalog.encode({c}, 'base64'), E'\n', '')$b$, 'string'),
    -- ISO-8601 as Python's isoformat: microseconds only when not zero, the offset as +HH:MM
    -- (and :SS when it has seconds); infinity as the largest and smallest values Python reads;
    -- a year Python cannot hold (BC, or after 9999), or the time 24:00, an error, as in Python
    -- (the cast fails, naming the value), never a year without its era or the next day's 00:00
    ('date'::regtype, $d$case when {c} = 'infinity' then '9999-12-31' when {c} = '-infinity' then '0001-01-01'
         when {c} < '0001-01-01'::date or {c} >= '10000-01-01'::date then {beyond}
         else pg_catalog.to_char({c}, 'YYYY-MM-DD') end$d$, 'string'),
    ('timestamp'::regtype, $t$case when {c} = 'infinity' then '9999-12-31T23:59:59.999999'
         when {c} = '-infinity' then '0001-01-01T00:00:00'
         when {c} < '0001-01-01'::timestamp or {c} >= '10000-01-01'::timestamp then {beyond}
         else pg_catalog.replace(pg_catalog.to_char({c}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '') end$t$,
     'string'),
    ('timestamptz'::regtype, $t$case when {c} = 'infinity' then '9999-12-31T23:59:59.999999+00:00'
         when {c} = '-infinity' then '0001-01-01T00:00:00+00:00'
         when ({c} < '0001-01-02 00:00+00'::timestamptz or {c} >= '9999-12-31 00:00+00'::timestamptz)
              and pg_catalog.date_part('year', {c}) not between 1 and 9999 then {beyond}
         else pg_catalog.replace(pg_catalog.to_char({c}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '.000000', '')
              || pg_catalog.to_char({c}, 'TZH:TZM')
              || case when pg_catalog.mod(extract(timezone from {c})::int, 60) <> 0
                      then ':' || pg_catalog.lpad(pg_catalog.abs(pg_catalog.mod(extract(timezone from {c})::int, 60))::text,
                                                  2, '0')
                      else '' end end$t$,
     'string'),
    ('time'::regtype, $t$case when {c} >= '24:00:00'::time then {beyond}
         else pg_catalog.replace(pg_catalog.to_char(date '2000-01-01' + {c}, 'HH24:MI:SS.US'), '.000000', '') end$t$,
     'string'),
    -- jsonb as its text (a top-level string as the string itself, JSON null as an empty field);
    -- Python's JSON (json_value) spaces and escapes as jsonb's text does
    ('jsonb'::regtype, $j$case pg_catalog.jsonb_typeof({c}) when 'string' then {c} #>> '{}' when 'null' then null
         else {c}::text end$j$, 'jsonb'),
    -- arrays of integers, text and booleans as JSON arrays
    ('int2[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare'), ('int4[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare'),
    ('int8[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare'), ('text[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare'),
    ('varchar[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare'), ('bool[]'::regtype, 'pg_catalog.to_jsonb({c})::text', 'bare')
),
chosen as (
    select c.n, pg_catalog.format('rv_q.%%I', c.name) as ref,
           case when t.typtype = 'e' then '{c}::text'  -- an enum's label
                when e.template = 'float8' then pg_catalog.replace(f.template, '{c}', '({c}::text::float8)')
                else pg_catalog.replace(e.template, '{beyond}',
                    $e$(pg_catalog.format('%%s: outside the dates and times rowver prints (years 1 to 9999, hours 0 to 23)',
                                         {c})::date)::text$e$)
                end as template,
           case when t.typtype = 'e' then 'string' else e.json end as json
      from unnest(%(names)s::text[], %(types)s::oid[]) with ordinality as c(name, type_oid, n)
      left join encoder e on e.type_oid = c.type_oid::regtype
      left join encoder f on f.type_oid = 'float8'::regtype
      left join pg_catalog.pg_type t on t.oid = c.type_oid
)
select pg_catalog.replace(template, '{c}', ref) as csv,
       pg_catalog.replace(case json
           when 'bare' then 'coalesce((' || template || ')::text, ''null'')'
           when 'string' then 'coalesce(pg_catalog.to_json(' || template || ')::text, ''null'')'
           when 'float' then 'case when {c} = ''NaN'' then ''null'' when {c} = ''Infinity'' then ''"Infinity"'''
                             || ' when {c} = ''-Infinity'' then ''"-Infinity"'' else coalesce(' || template || ', ''null'') end'
           when 'numeric' then 'case when {c} = ''NaN'' then ''null'' else coalesce(pg_catalog.to_json(' || template
                               || ')::text, ''null'') end'
           when 'jsonb' then 'coalesce({c}::text, ''null'')' end, '{c}', ref) as json
  from chosen
 order by n
