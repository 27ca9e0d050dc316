-- Every scenario's start, run as the superuser (the table owner's part): table app.items,
-- versioned, and a role :app that may connect and read and write it, nothing more. The
-- grants come before rowver.enable, which mirrors them onto the history it makes.
revoke all on database :"db" from public;
grant connect on database :"db" to :"app";

create schema app;
create table app.items (id integer primary key, name text not null, qty integer not null default 0);
insert into app.items values (1, 'apple', 3), (2, 'pear', 5);
grant usage on schema app to :"app";
grant select, insert, update, delete on app.items to :"app";
select rowver.enable('app.items');
