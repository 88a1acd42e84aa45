"""`hotline consultations|agents|token show` and `token disable`: the real command in a child
process, over each database backend."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

from crm.agents import tokens
from crm.agents.accounts import create_agent
from crm.audit import log as audit
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation
from tests.console_data import seed_surveys
from tests.storage.test_directory_csv import _hotline


async def test_show_one_consultation_agent_and_token(sessions: SessionFactory, db_url: str,
                                                     tmp_path: Path) -> None:
    async with sessions() as session, session.begin():
        call = Consultation(call_id="call-show-1", caller_number="13800138000",
                            caller_name="张三", started_at=datetime(2026, 5, 1, 8, tzinfo=UTC),
                            outcome="to_agent", ivr_route="agent")
        session.add(call)
        await session.flush()
        call_pk = call.id
    await create_agent(sessions, login="agent7", display_name="王七", role="agent",
                       extension="2007")
    await tokens.create_token(sessions, "dept-housing", ["cases:read"])
    state = tmp_path / "state"

    for key in (str(call_pk), "call-show-1"):
        code, out, err = await _hotline(db_url, state, "consultations", "show", key)
        assert code == 0, err
        shown = json.loads(out)
        assert (shown["id"], shown["call_id"], shown["caller_number"]) == \
            (call_pk, "call-show-1", "13800138000")
    views = await audit.entries(sessions, object_type="consultation")
    assert [e.action for e in views].count("consultation.view") == 2

    code, out, err = await _hotline(db_url, state, "agents", "show", "agent7")
    assert code == 0, err
    agent = json.loads(out)
    assert {k: agent[k] for k in ("login", "name", "role", "extension", "languages", "active",
                                  "can_log_in", "web_sessions")} == {
        "login": "agent7", "name": "王七", "role": "agent", "extension": "2007",
        "languages": ["cmn"], "active": True, "can_log_in": False, "web_sessions": 0}

    code, out, err = await _hotline(db_url, state, "token", "show", "dept-housing")
    assert code == 0, err
    assert json.loads(out)["scopes"] == ["cases:read"]
    assert json.loads(out)["state"] == "live"
    code, out, err = await _hotline(db_url, state, "token", "disable", "dept-housing")
    assert code == 0, err
    code, out, err = await _hotline(db_url, state, "token", "show", "dept-housing")
    assert json.loads(out)["state"] == "revoked"

    code, out, err = await _hotline(db_url, state, "consultations", "show", "call-nope")
    assert code == 1 and "no consultation with call id 'call-nope'" in err
    code, out, err = await _hotline(db_url, state, "agents", "show", "nobody")
    assert code == 1 and "nobody" in err
    code, out, err = await _hotline(db_url, state, "token", "show")
    assert code == 1 and "usage: hotline token show NAME" in err


async def test_surveys_list_names_ids_that_show_opens(sessions: SessionFactory, db_url: str,
                                                      tmp_path: Path) -> None:
    await seed_demo(db_url)
    seeded = await seed_surveys(sessions, zoneinfo.ZoneInfo("Asia/Shanghai"))
    state = tmp_path / "state"
    code, out, err = await _hotline(db_url, state, "surveys", "list")
    assert code == 0, err
    listed = sorted(int(line.split()[0].lstrip("#")) for line in out.splitlines())
    assert listed == sorted(seeded.surveys)
    code, out, err = await _hotline(db_url, state, "surveys", "show", f"#{listed[0]}")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["id"] == listed[0] and "score" in shown and "case_numbers" in shown
    views = [e for e in await audit.entries(sessions, object_type="survey")
             if e.action == "survey.view"]
    assert [e.object_id for e in views] == [str(listed[0])]
    code, out, err = await _hotline(db_url, state, "surveys", "show", "latest")
    assert code == 1 and "a survey id is a number" in err
