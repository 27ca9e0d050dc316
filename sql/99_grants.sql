-- Privileges: EXECUTE is revoked from PUBLIC on every rowver function and granted back
-- per function. Allocation, capture and registration stay with rowver_owner and its
-- members; what is granted here either only reads, or writes through the caller's own
-- privileges on the table (the capture triggers record those writes).

set role rowver_owner;

revoke execute on all functions in schema rowver from public;

grant execute on function
  -- head, refs and tags
  rowver.head(), rowver.publish_head(), rowver.resolve(text), rowver.tag(text, text), rowver.untag(text),
  rowver.current_version(),
  -- reading
  rowver.as_of(anyelement, text), rowver.history(regclass, jsonb), rowver.diff(regclass, text, text),
  rowver.log(integer, regclass), rowver.registered(regclass), rowver.as_of_sql(regclass, bigint), rowver.versions_sql(regclass),
  rowver.payload_columns(regclass, name[]), rowver.has_btree_eq(oid),
  rowver.same_value_sql(name, boolean, text, text), rowver.key_join_sql(name[], text, text),
  rowver.status(), rowver.in_flight(), rowver.check(regclass),
  -- writing as the caller
  rowver.stage(regclass, name[]), rowver.load(regclass, regclass, text),
  rowver.apply_rows(regclass, regclass, text, bigint), rowver.revert(regclass, text),
  -- planning (read-only): shows what enable would run
  rowver.enable_ddl(regclass, name[], boolean, name[]), rowver.disable_ddl(regclass, boolean),
  rowver.generated_name(name, text), rowver.row_columns(regclass), rowver.qualified(regclass), rowver.table_key(regclass, name[]),
  rowver.check_versionable(regclass), rowver.capture_body(regclass, text, name[], text, text, text, text),
  rowver.lock_key1(bigint), rowver.lock_key2(bigint), rowver.mutex()
to public;

reset role;
