-- rowver export: rowver's tags on the version exported, by name.
select name from rowver.tag where version = %(version)s order by name
