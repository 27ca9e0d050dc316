-- Versioned rows read back through SQL alone: each write is a changeset, every version stays
-- readable as of its number, and diff and history say what changed. Versions are printed
-- relative to v0, head when the scenario starts (app.items was enabled at v0).
select rowver.head() as v0 \gset

-- three changesets: one statement each in autocommit, then a transaction with a message
update app.items set qty = qty + 1 where id = 1;
insert into app.items (id, name) values (3, 'plum');
begin;
set local rowver.message = 'restock';
update app.items set qty = 10 where id = 2;
delete from app.items where id = 3;
commit;
select rowver.head() - :v0 as head;

-- every row carries the version that last wrote it
select id, name, qty, rv_version - :v0 as v from app.items order by id;

-- as of each version, as it was then
select id, name, qty from rowver.as_of(null::app.items, :'v0') order by id;
select id, name, qty from rowver.as_of(null::app.items, (:v0 + 2)::text) order by id;
select id, name, qty from app.items__as_of(:v0 + 1) order by id;

-- what changed between two refs, cell by cell
select op, key, changed, old, new from rowver.diff('app.items', :'v0', 'head') order by key->>'id';
select op, key from rowver.diff('app.items', (:v0 + 2)::text, 'head') order by key->>'id';

-- one key's history, and the changesets with who and why
select rv_version - :v0 as v, rv_until - :v0 as until, rv_deleted, message, "row"
  from rowver.history('app.items', '{"id": 3}') order by rv_version, rv_deleted;
select version - :v0 as v, message, db_role = :'app' as by_app, tables, rows
  from rowver.log(10) where version > :v0 order by version;

-- refused: a version above head, and one before the table was versioned (their messages
-- name absolute versions, so only the SQLSTATEs are printed)
\set VERBOSITY sqlstate
select count(*) from rowver.as_of(null::app.items, (:v0 + 100)::text);
select count(*) from rowver.as_of(null::app.items, (:v0 - 1)::text);
\set VERBOSITY verbose
select count(*) from rowver.as_of(null::app.items, 'no-such-ref');
