"""Class 7: TRUNCATE under row-level security, terminal escapes in what rowver prints, and
the trusted-writer mode of tables versioned without triggers (DESIGN §6)."""

from __future__ import annotations

import json

import psycopg
import pytest
from logins import Logins, violations
from typer.testing import CliRunner

from rowver.cli import app

runner = CliRunner(env={"COLUMNS": "200", "ROWVER_URL": None, "ROWVER_DEBUG": None})


def test_truncate_is_refused_where_rows_are_hidden(logins: Logins) -> None:
    su = logins.su
    outsider = logins.role("tenant")
    su.execute("create table docs (id integer primary key, tenant name not null)")
    su.execute("insert into docs values (1, 'someone'), (2, 'someone else')")
    su.execute("alter table docs enable row level security")
    su.execute("create policy own_rows on docs using (tenant = current_user)")
    su.execute(f"grant select, delete, truncate on docs to {outsider}")
    su.execute("select rowver.enable('docs')")
    tenant = logins.login(outsider)
    assert tenant.execute("select count(*) from docs").fetchone() == (0,)  # it sees none of them
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="row-level security may hide rows"):
        tenant.execute("truncate docs")
    assert tenant.execute("select rowver.truncate('docs')").fetchone() == (0,)  # deletes what it sees
    assert su.execute("select count(*) from docs").fetchone() == (2,)
    assert violations(su) == []


def test_terminal_escapes_are_shown_not_obeyed(logins: Logins) -> None:
    su = logins.su
    clear, title = "\x1b[2J", "\x1b]0;pwned\x07"
    su.execute("create table notes (id integer primary key, body text)")
    su.execute("select rowver.enable('notes')")
    with su.transaction():
        su.execute("select set_config('rowver.message', %s, true)", (f"note {clear}",))
        su.execute("insert into notes values (1, %s)", (f"hi {title}",))
    for args in (["log"], ["show", "notes"], ["history", "notes", "1"], ["diff", "notes", "1", "head"]):
        shown = runner.invoke(app, [*args, "--url", logins.url])
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout, args
        assert "\\x1b" in shown.stdout, args
    exact = json.loads(runner.invoke(app, ["show", "notes", "--format", "json", "--url", logins.url]).stdout)
    assert exact[0]["body"] == f"hi {title}"  # JSON (and CSV) stay exact
    failed = runner.invoke(app, ["history", "notes", f"1{clear}", "--url", logins.url])
    assert failed.exit_code == 1 and "\x1b" not in failed.stderr and "\\x1b" in failed.stderr


def test_enabling_without_triggers_says_it_trusts_every_writer(logins: Logins) -> None:
    logins.su.execute("create table fast (id integer primary key)")
    result = runner.invoke(app, ["enable", "fast", "--no-triggers", "--url", logins.url])
    assert result.exit_code == 0, result.output
    assert "every role that may write fast may also write its rv_version" in result.stderr
