-- db.models.list: every registered model with its version count, newest version,
-- description, last save and aliases (alias -> version).
select m.name, count(v.version), max(v.version), m.description, max(v.created_at),
       coalesce((select jsonb_object_agg(a.alias, a.version) from rowver.model_alias a
                  where a.model = m.name), '{}')
  from rowver.model m
  left join rowver.model_version v on v.model = m.name
 group by m.name, m.description
 order by m.name
