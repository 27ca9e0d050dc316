-- What a role that may write app.items cannot do (README, Security model): write history or
-- the changesets, move the version sequence, choose a row's version, or borrow a version
-- with a forged rowver.allocation setting. Each attempt fails or changes nothing.
select rowver.head() as v0 \gset
update app.items set qty = 4 where id = 1;

-- history and the changesets are written only by rowver's capture
insert into app.items__history (id, name, qty, rv_version, rv_until) values (9, 'fake', 1, 1, 2);
update app.items__history set qty = 100;
delete from app.items__history;
insert into rowver.changeset (version, message) values (:v0 + 1, 'forged');
update rowver.changeset set message = 'forged';
delete from rowver.changeset;

-- the version sequence moves only with a write to a versioned table
select nextval('rowver.version_seq');
select setval('rowver.version_seq', 1000000);

-- rv_version is stamped by the server, whatever a writer puts there
insert into app.items (id, name, qty, rv_version) values (4, 'kiwi', 1, 0);
update app.items set rv_version = 0 where id = 2;
select id, rv_version - :v0 as v from app.items order by id;

-- rowver.allocation points at this transaction's allocation row: a forged pointer is refused
begin;
select set_config('rowver.allocation', '(0,1)', true) is not null as forged;
update app.items set qty = 7 where id = 1;
rollback;
begin;
set local rowver.allocation = '(0,1)';
delete from app.items where id = 2;
commit;

-- nothing above was recorded or changed: the past reads as before
select version - :v0 as v, message from rowver.log(10) where version > :v0 order by version;
select id, name, qty, rv_version - :v0 as v from app.items__as_of(:v0 + 1) order by id;
select count(*) as history_rows from app.items__history;
