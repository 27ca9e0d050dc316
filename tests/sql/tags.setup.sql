-- The tags scenario's role may tag (rowver_tagger); rowver_admin protected the tag golden.
grant rowver_tagger to :"app";
select rowver.tag('golden');
select rowver.protect_tag('golden');
