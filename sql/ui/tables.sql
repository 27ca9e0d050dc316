-- rowver ui, home page: every versioned table with its estimated size (pg_class.reltuples:
-- exact counts scan, and this page must stay fast on large tables), the version it was
-- enabled at, its last change, and how many changesets touched it on each of the last
-- %(days)s days (oldest first, today last).
select v.relid::text                              as table_name,
       v.key_columns,
       v.enabled_version,
       case when c.reltuples >= 0 then c.reltuples::bigint end as rows_estimate,  -- (null: never analyzed)
       last.version                               as last_version,
       last.created_at                            as last_change,
       array(select coalesce(per_day.n, 0)
               from pg_catalog.generate_series(0, %(days)s - 1) as d(ago)
               left join (select (current_date - cs.created_at::date) as ago, count(*) as n
                            from rowver.changeset_table ct
                            join rowver.changeset cs on cs.version = ct.version
                           where ct.table_id = v.id
                             and cs.created_at >= current_date - (%(days)s - 1)
                           group by 1) per_day on per_day.ago = d.ago
              order by d.ago desc)                as changes_per_day
  from rowver.versioned v
  join pg_catalog.pg_class c on c.oid = v.relid
  left join lateral (select ct.version, cs.created_at
                       from rowver.changeset_table ct
                       join rowver.changeset cs on cs.version = ct.version
                      where ct.table_id = v.id
                      order by ct.version desc
                      limit 1) last on true
 order by v.relid::text
