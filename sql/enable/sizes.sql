-- What enable's progress watches (rowver/_schema.py). PostgreSQL reports no progress for the
-- copy ALTER TABLE makes of a table (enable's rewrite), so the copy written so far is read as
-- the growth of the database's files, watched from a second connection, out of the table's own
-- size before it.
--   copies:         whether this enable copies the table (rewrite, else rowver.rewrite_by_default)
--   table_bytes:    the table's heap, TOAST and indexes, every partition's
--   database_bytes: every file of the database (its growth: the copy made so far)
select coalesce(%(rewrite)s::boolean, rowver.rewrite_by_default(%(table)s::regclass)) as copies,
       coalesce((select pg_catalog.sum(pg_catalog.pg_total_relation_size(t.relid))
                   from pg_catalog.pg_partition_tree(%(table)s::regclass) t),  -- (none: not partitioned)
                pg_catalog.pg_total_relation_size(%(table)s::regclass))::bigint as table_bytes,
       pg_catalog.pg_database_size(pg_catalog.current_database()) as database_bytes
