-- rowver ui, model page: every live version of one model with its params, aliases and
-- metrics. The metrics come as JSON text: the page summarizes each series (last, min, max,
-- steps), and parsing a long series as floats on the client is several times cheaper than
-- casting every element on the server or reading every number exactly.
select v.version, v.params, v.tags, v.data_version, v.data_ref, v.author, v.db_user, v.created_at,
       v.rv_version as changeset,
       array(select a.alias from rowver.model_alias a
              where a.model = v.model and a.version = v.version order by 1) as aliases,
       v.metrics::text as metrics
  from rowver.model_version v
 where v.model = %(model)s
 order by v.version
