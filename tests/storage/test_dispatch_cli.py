"""`hotline dispatch bind-token|bind-account|remind`: the real command in a child process,
over each database backend."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from crm.agents import tokens
from crm.agents.accounts import create_agent, get_agent
from crm.cases import dispatch
from crm.cases.service import change_stage, create_case
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from tests.storage.test_directory_csv import _hotline


async def test_bind_and_remind(sessions: SessionFactory, db_url: str, tmp_path: Path) -> None:
    await seed_demo(db_url)
    await tokens.create_token(sessions, "housing-sys", ["cases:read"])
    await create_agent(sessions, login="housing1", display_name="住房科", role="agent")
    state = tmp_path / "state"
    code, out, err = await _hotline(db_url, state, "dispatch", "bind-token", "housing-sys",
                                    "housing")
    assert code == 0 and "housing only" in out, err
    code, out, err = await _hotline(db_url, state, "dispatch", "bind-account", "housing1",
                                    "housing")
    assert code == 0, err
    assert await dispatch.agent_department(sessions, (await get_agent(sessions,
                                                                        "housing1")).id) \
        == "housing"
    code, out, err = await _hotline(db_url, state, "dispatch", "bind-token", "nope", "housing")
    assert code != 0 and "no live token named 'nope'" in err
    code, out, err = await _hotline(db_url, state, "dispatch", "bind-account", "housing1",
                                    "moon")
    assert code != 0 and "unknown department" in err

    case = await create_case(sessions, category="garbage", description="垃圾", actor="t",
                             contact_phone="13800138000", now=utcnow() - timedelta(days=9))
    await change_stage(sessions, case.number, "dispatched", actor="t")
    code, out, err = await _hotline(db_url, state, "dispatch", "remind")
    assert code == 0 and f"{case.number} overdue  -> sanitation" in out, (out, err)
    code, out, err = await _hotline(db_url, state, "dispatch", "remind")
    assert code == 0 and case.number not in out  # once per deadline
