-- rowver export: what a commit to the target names (Delta commitInfo, an Iceberg snapshot's
-- summary): the changesets of the table after the version exported before (none: from the
-- start) up to the version exported, the newest %(limit)s first, with author and message.
select version, author, message
  from rowver.log(%(limit)s::integer, %(table)s::regclass, null, null, %(since)s, %(version)s)
