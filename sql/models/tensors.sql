-- The manifests of the same model versions: weights, then artifacts, by name.
select t.model, t.version, t.kind, t.name, t.dtype, t.shape, t.nbytes, t.chunk_size, t.chunks
  from rowver.model_tensor t
  join unnest(%(models)s::text[], %(versions)s::integer[]) k(model, version)
    on t.model = k.model and t.version = k.version
 order by t.model, t.version, t.kind desc, t.name
