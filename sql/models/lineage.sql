-- db.models.lineage: a model version's data version and ref, its code revision, the newest
-- changeset at or below the data version, and the changeset that saved it.
select v.data_version, v.data_ref, v.code_revision,
       (select to_jsonb(c) - 'xid' from rowver.changeset c
         where c.version <= v.data_version order by c.version desc limit 1),
       (select to_jsonb(c) - 'xid' from rowver.changeset c where c.version = v.rv_version)
  from rowver.model_version v
 where v.model = %(model)s and v.version = %(version)s
