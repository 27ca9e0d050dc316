-- rowver export after a former one: whether writing only the keys that changed between the
-- version exported there (since) and this one (version) gives exactly the table as of it. Not
-- when history between them was pruned (the change feed no longer knows every key), nor when a
-- column was added or dropped in between (the target's schema changes: it is written whole).
-- Where it does: the change feed's query of those keys, the as-of function at the version and
-- the join of its rows (x) to a key (rv_k), all written by the server with identifiers quoted.
select rowver.diff_by_keys(%(table)s::regclass, %(since)s, %(version)s)
       and not exists (select from rowver.column_life c
                        where c.table_id = (rowver.registered(%(table)s::regclass)).id
                          and (c.added_version > %(since)s or c.dropped_version > %(since)s)) as by_keys,
       rowver.changed_keys_sql(%(table)s::regclass, %(since)s, %(version)s) as keys_sql,
       rowver.as_of_sql(%(table)s::regclass, %(version)s) as as_of,
       rowver.key_join_sql(%(table)s::regclass, (rowver.registered(%(table)s::regclass)).key_columns,
                           'x', 'rv_k') as key_join
