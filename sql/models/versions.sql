-- db.models.get/versions/search: the model versions named by two parallel arrays (model names,
-- version numbers), in the arrays' order, with their aliases; the columns in ModelVersion's
-- field order (the manifest follows from tensors.sql).
select v.model, v.version, v.params, v.metrics, v.tags, v.description, v.data_version,
       v.data_ref, v.code_revision, v.author, v.db_user, v.created_at, v.nbytes,
       v.content_hash, v.rv_version,
       array(select a.alias from rowver.model_alias a
              where a.model = v.model and a.version = v.version order by 1)
  from unnest(%(models)s::text[], %(versions)s::integer[]) with ordinality k(model, version, i)
  join rowver.model_version v on v.model = k.model and v.version = k.version
 order by k.i
