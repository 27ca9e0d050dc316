-- Revert: app.items goes back to how it was at a ref, as a new changeset. Nothing is erased:
-- the state it left stays readable, and a revert of the revert goes forward again.
select rowver.head() as v0 \gset
update app.items set qty = 0 where id = 1;
insert into app.items (id, name) values (3, 'plum');
delete from app.items where id = 2;
select rowver.head() as v1 \gset
select id, name, qty from app.items order by id;

select inserted, updated, deleted, unchanged, version - :v0 as v from rowver.revert('app.items', :'v0');
select id, name, qty, rv_version - :v0 as v from app.items order by id;
select message = format('revert app.items to %s', :v0) as says_what from rowver.log(1);

-- the reverted-from state is still there, and reverting to it restores it
select id, name, qty from rowver.as_of(null::app.items, :'v1') order by id;
select inserted, updated, deleted, unchanged, version - :v0 as v from rowver.revert('app.items', :'v1');
select count(*) as differences from rowver.diff('app.items', :'v1', 'head');

-- reverting to where it is changes nothing and records nothing
select inserted, updated, deleted, unchanged from rowver.revert('app.items', 'head');
select rowver.head() - :v0 as head;

-- a revert needs a version the table has (its SQLSTATE only: the message names the version)
\set VERBOSITY sqlstate
select * from rowver.revert('app.items', (:v0 - 1)::text);
\set VERBOSITY verbose
select * from rowver.revert('app.items', 'no-such-tag');
