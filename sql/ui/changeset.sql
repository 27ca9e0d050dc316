-- rowver ui, changeset page: one changeset and the tables it touched, with the rows it
-- changed in each, by how many rows it grew or shrank each (net; null where not counted),
-- and whether it is the changeset that enabled versioning there (no diff before it).
select cs.version, cs.created_at, cs.author, cs.message, cs.db_user, cs.db_role,
       coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'table', v.relid::text, 'rows', ct.rows, 'net', ct.net,
                          'enabled_here', v.enabled_version = cs.version) order by v.relid::text)
                   from rowver.changeset_table ct
                   join rowver.versioned v on v.id = ct.table_id
                  where ct.version = cs.version), '[]') as tables,
       (select max(p.version) from rowver.changeset p where p.version < cs.version) as previous
  from rowver.changeset cs
 where cs.version = %(version)s
