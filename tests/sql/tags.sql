-- Tags and refs as a member of rowver_tagger: a tag names a version for good, each mistake is
-- one clear error with its own SQLSTATE, and a protected tag stays where it is.
select rowver.head() as v0 \gset
update app.items set qty = 4 where id = 1;

-- a tag names a version; reads through it see that version, whatever comes after
select rowver.tag('release', :'v0') - :v0 as tagged;
update app.items set qty = 9 where id = 1;
select id, qty from rowver.as_of(null::app.items, 'release') order by id;
select rowver.resolve('release') - :v0 as release, rowver.resolve('golden') - :v0 as golden;

-- 23505: the name is taken (move => true moves it)
select rowver.tag('release');
select rowver.tag('release', 'head', move => true) - :v0 as moved;
-- 22023: names a ref would read as something else, or that are not names
select rowver.tag('head');
select rowver.tag('now');
select rowver.tag('2026-12-01');
select rowver.tag('model:churn');
select rowver.tag('1st');
select rowver.tag('two words');
-- RV007: no such tag
select rowver.untag('nope');
-- 42501: golden is protected (only rowver_admin may lift that)
select rowver.tag('golden', 'head', move => true);
select rowver.untag('golden');
select rowver.protect_tag('golden', false);
-- RV003: a ref that is no version, tag, head or timestamp
select rowver.resolve('nope');
select rowver.resolve('');

-- untag removes the name, not the version; every change is in the tag log
select rowver.untag('release') - :v0 as was;
select rowver.resolve('release');
select name, action, old_version - :v0 as old, new_version - :v0 as new, db_role = :'app' as by_app
  from rowver.tag_log where name = 'release' order by at;
select name, protected from rowver.tag order by name;
