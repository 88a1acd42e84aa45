"""The command line's listings of residents' data (consultations, surveys, follow-ups) are
audited under the operating-system user who ran them: the real ``hotline`` command in a child
process, over each database backend."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import zoneinfo
from pathlib import Path

from crm.audit import log as audit
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory
from hotline.settings import REPO_ROOT
from tests.console_data import seed_surveys

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


async def _hotline(db_url: str, state: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_STATE_DIR=str(state), HOTLINE_DATABASE__URL=db_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", *args, cwd=REPO_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_cli_listings_are_audited_under_the_os_user(sessions: SessionFactory,
                                                          db_url: str, tmp_path: Path) -> None:
    await seed_demo(db_url)
    seeded = await seed_surveys(sessions, TZ)
    actor = f"cli:{getpass.getuser()}"

    listed = json.loads(await _hotline(db_url, tmp_path, "consultations", "list", "--json",
                                       "--limit", "3"))
    assert len(listed) == 3
    [search] = [e for e in await audit.entries(sessions, object_type="consultation")
                if e.action == "consultation.search"]
    assert search.actor == actor and search.detail["via"] == "cli"
    assert search.detail["ids"] == [c["id"] for c in listed]
    assert search.detail["query"] == {"limit": 3, "phone": None}

    lines = (await _hotline(db_url, tmp_path, "surveys", "list")).splitlines()
    [surveys] = [e for e in await audit.entries(sessions, object_type="survey")
                 if e.action == "survey.search"]
    assert surveys.actor == actor and sorted(surveys.detail["ids"]) == sorted(seeded.surveys)
    assert len(lines) == len(seeded.surveys)

    lines = (await _hotline(db_url, tmp_path, "surveys", "follow-ups")).splitlines()
    [follow_ups] = [e for e in await audit.entries(sessions, object_type="survey_follow_up")
                    if e.action == "survey_follow_up.search"]
    assert follow_ups.actor == actor and follow_ups.detail["ids"]
    assert len(lines) == len(follow_ups.detail["ids"])
    assert all(line.startswith(f"#{i} ") for line, i in zip(lines, follow_ups.detail["ids"],
                                                               strict=True))
