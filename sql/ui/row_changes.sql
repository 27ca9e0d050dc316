-- rowver ui, diff page: how many row changes the changesets between two versions made in
-- one table (from the catalog, without reading the table): what a diff between them costs.
select coalesce(sum(ct.rows), 0)
  from rowver.changeset_table ct
 where ct.table_id = (rowver.registered(%(table)s::regclass)).id
   and ct.version > %(a)s and ct.version <= %(b)s
