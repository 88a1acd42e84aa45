"""Agents' accounts as CSV (login, name, role, extension, languages), on both databases:
a round trip, updates by login without touching passwords, a bad file named by line and
field, and the real ``hotline agents import|export`` command."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.agents import accounts
from crm.agents import sessions as browser_sessions
from crm.directory.csv_io import CsvImportError, export_csv, import_csv
from crm.storage.db import SessionFactory
from crm.storage.models import Agent
from tests.storage.test_directory_csv import _hotline

AGENTS = """login,name,role,extension,languages
amy,王艾米,agent,2001,cmn;en
"kim.s","Kim, Seo-yeon",supervisor,2002,ko;cmn
root,=管理员,admin,,cmn
"""


async def _export(sessions: SessionFactory) -> str:
    out = io.StringIO()
    await export_csv(sessions, "agents", out)
    return out.getvalue()


async def test_agents_round_trip_and_update_by_login(sessions: SessionFactory) -> None:
    result = await import_csv(sessions, "agents", io.StringIO(AGENTS))
    assert (result.created, result.updated) == (3, 0)
    exported = await _export(sessions)
    assert exported == ("login,name,role,extension,languages\n"
                        "amy,王艾米,agent,2001,cmn;en\n"
                        "kim.s,\"Kim, Seo-yeon\",supervisor,2002,ko;cmn\n"
                        "root,'=管理员,admin,,cmn\n")  # not a formula in a sheet
    again = await import_csv(sessions, "agents", io.StringIO(exported))
    assert (again.created, again.updated) == (0, 3)
    assert await _export(sessions) == exported
    assert (await accounts.get_agent(sessions, "root")).display_name == "=管理员"
    async with sessions() as session:  # nobody got a password from a file
        assert [a.password_hash for a in await session.scalars(select(Agent))] == [None] * 3
    await accounts.set_password(sessions, "amy", "correct horse")
    result = await import_csv(sessions, "agents", io.StringIO(
        "login,name,extension,languages\namy,Amy Wang,2009,en\n"))
    assert (result.created, result.updated) == (0, 1)
    amy = await accounts.get_agent(sessions, "amy")
    assert (amy.display_name, amy.role, amy.extension, amy.languages, amy.can_log_in) == (
        "Amy Wang", "agent", "2009", ("en",), True)  # role kept; password kept
    swapped = await import_csv(sessions, "agents", io.StringIO(
        "login,name,extension\namy,Amy Wang,2002\nkim.s,Kim,2009\n"))  # phones change hands
    assert (swapped.created, swapped.updated) == (0, 2)
    assert (await accounts.get_agent(sessions, "amy")).extension == "2002"
    await import_csv(sessions, "agents", io.StringIO("login,name\nkim.s,Kim\n"))
    kim = await accounts.get_agent(sessions, "kim.s")  # no extension column: phone kept
    assert (kim.display_name, kim.role, kim.extension, kim.languages) == (
        "Kim", "supervisor", "2009", ("ko", "cmn"))


async def test_a_bad_agents_file_writes_nothing_and_names_line_and_field(
        sessions: SessionFactory) -> None:
    await accounts.create_agent(sessions, login="bob", display_name="Bob", extension="2005")
    bad = ("login,name,role,extension,languages\n"
           "Amy!,王艾米,agent,2001,cmn\n"
           "carl,,boss,20a,fr;cmn\n"
           "dan,Dan,agent,2005,en\n"
           "eve,Eve,agent,2001,\n"
           "eve,Eve 2,agent,,\n")
    with pytest.raises(CsvImportError) as caught:
        await import_csv(sessions, "agents", io.StringIO(bad), source="agents.csv")
    assert sorted(caught.value.problems) == sorted([
        "line 2, field 'login': 'amy!' is not a login (2-64 lower-case letters, digits, . _ -, "
        "starting with a letter)",
        "line 3, field 'name': required, empty",
        "line 3, field 'role': 'boss' is not one of agent, supervisor, admin",
        "line 3, field 'extension': '20a' is not an extension (2-16 digits)",
        "line 3, field 'languages': 'fr': use cmn, en, ko, ';'-separated",
        "line 4, field 'extension': '2005' is already agent 'bob''s",
        "line 6, field 'login': 'eve' also on line 5",
    ])
    assert [a.login for a in await accounts.list_agents(sessions)] == ["bob"]


async def test_the_hotline_agents_command_imports_and_exports(
        sessions: SessionFactory, db_url: str, tmp_path: Path) -> None:
    good, bad, out_file = tmp_path / "a.csv", tmp_path / "bad.csv", tmp_path / "out.csv"
    good.write_text(AGENTS, encoding="utf-8")
    bad.write_text("login,name,languages\nzoe,Zoe,xx\n", encoding="utf-8")
    state = tmp_path / "state"
    code, out, err = await _hotline(db_url, state, "agents", "import", str(good))
    assert code == 0, err
    assert out.strip() == (f"agents: 3 added, 0 updated from {good} (new accounts have no "
                           "password and cannot sign in until given one: hotline agents "
                           "set-password LOGIN)")
    code, out, err = await _hotline(db_url, state, "agents", "import", str(bad))
    assert code == 1
    assert "line 2, field 'languages': 'xx': use cmn, en, ko" in err
    code, out, err = await _hotline(db_url, state, "agents", "export", str(out_file))
    assert code == 0, err
    assert out_file.read_text(encoding="utf-8").splitlines()[1] == "amy,王艾米,agent,2001,cmn;en"
    assert stat.S_IMODE(out_file.stat().st_mode) & 0o077 == 0


async def test_a_changed_role_ends_that_accounts_sessions(sessions: SessionFactory) -> None:
    await import_csv(sessions, "agents", io.StringIO(AGENTS))
    for login in ("amy", "kim.s"):
        await browser_sessions.open_session(
            sessions, app="console", agent=await accounts.get_agent(sessions, login),
            max_age=600, source="127.0.0.1", user_agent="test")
    heard: list[browser_sessions.Revoked] = []

    async def listener(revoked: list[browser_sessions.Revoked]) -> None:
        heard.extend(revoked)

    browser_sessions.add_listener(listener)
    try:
        await import_csv(sessions, "agents", io.StringIO(
            "login,name,role\namy,王艾米,agent\nkim.s,Kim,agent\n"))  # amy's role unchanged
    finally:
        browser_sessions.remove_listener(listener)
    assert [(r.login, r.reason) for r in heard] == [("kim.s", "role_changed")]
    assert [s.login for s in await browser_sessions.list_sessions(sessions)] == ["amy"]
