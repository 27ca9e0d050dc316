-- A revert stages the rows it writes in a temporary table (rowver.apply_rows): its role needs
-- TEMPORARY on the database, which PUBLIC has by default and _setup.sql revoked.
grant temporary on database :"db" to :"app";
