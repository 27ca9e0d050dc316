-- rowver ui, model page: every state every alias of one model has had, oldest first, with
-- the changeset that made it (who, when, why). model_alias is versioned by rowver itself,
-- so a move, a rollback and a removal are each a version of the alias's row.
select a.alias, a.version as model_version, a.rv_version as changed_at_version,
       a.rv_until, a.rv_deleted, cs.created_at, cs.author, cs.db_user, cs.message
  from rowver.model_alias__versions a
  left join rowver.changeset cs on cs.version = a.rv_version
 where a.model = %(model)s
 order by a.rv_version, a.alias
