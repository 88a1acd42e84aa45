"""`hotline consultations|agents|token|surveys show ID`: one record in full, as JSON.

The listings print one line per record; ``show`` prints everything about one. Showing a
consultation or a survey is a read of residents' data and is audited like the listing.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crm.storage.db import SessionFactory
    from hotline.settings import Settings


class ShowError(Exception):
    """Nothing to show: the message says what was asked for and how to find it."""


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def show(settings: Settings, what: str, key: str | None) -> str:
    """JSON text of consultation ``key`` (id or call id), agent ``key`` (login) or token."""
    if not key:
        raise ShowError(f"usage: hotline {_COMMAND[what]} show "
                        f"{'ID' if what == 'consultation' else 'NAME'}")
    return json.dumps(asyncio.run(_show(settings, what, key)), ensure_ascii=False, indent=2,
                      default=str)


_COMMAND = {"consultation": "consultations", "agent": "agents", "token": "token",
            "survey": "surveys"}


async def _show(settings: Settings, what: str, key: str) -> dict[str, Any]:
    from crm.errors import HotlineError
    from crm.storage.db import open_database

    database = open_database(settings.database_url, echo=settings.database.echo)
    try:
        reader = {"consultation": _consultation, "agent": _agent, "token": _token,
                  "survey": _survey}[what]
        return await reader(database.sessions, key)
    except HotlineError as exc:
        raise ShowError(str(exc)) from None
    finally:
        await database.close()


async def _consultation(sessions: SessionFactory, key: str) -> dict[str, Any]:
    from sqlalchemy import select

    from crm.audit import log as audit
    from crm.consultations.service import get_consultation
    from crm.storage.models import Consultation

    if key.isdigit():
        consultation_id = int(key)
    else:
        async with sessions() as session:
            found = await session.scalar(select(Consultation.id)
                                         .where(Consultation.call_id == key))
        if found is None:
            raise ShowError(f"no consultation with call id {key!r} "
                            "(see: hotline consultations list)")
        consultation_id = found
    detail = await get_consultation(sessions, consultation_id)
    await audit.write(sessions, actor=_actor(), action="consultation.view",
                      object_type="consultation", object_id=detail.id, detail={"via": "cli"})
    return detail.to_json(viewer_role="admin")


async def _agent(sessions: SessionFactory, login: str) -> dict[str, Any]:
    from crm.agents import accounts
    from crm.agents import sessions as browser_sessions

    account = await accounts.get_agent(sessions, login)
    live = await browser_sessions.list_sessions(sessions, login=login)
    return {"login": account.login, "name": account.display_name, "role": account.role,
            "extension": account.extension, "queues": list(account.queues),
            "languages": list(account.languages), "active": account.active,
            "can_log_in": account.can_log_in, "web_sessions": len(live)}


async def _token(sessions: SessionFactory, name: str) -> dict[str, Any]:
    from crm.agents import tokens

    found = [t for t in await tokens.list_tokens(sessions, include_revoked=True)
             if t.name == name]
    if not found:
        raise ShowError(f"no token named {name!r} (see: hotline token list --all)")
    t = found[-1]
    return {"name": t.name, "state": t.state, "scopes": sorted(t.scopes),
            "created_at": t.created_at, "expires_at": t.expires_at,
            "revoked_at": t.revoked_at}


async def _survey(sessions: SessionFactory, key: str) -> dict[str, Any]:
    from crm.audit import log as audit
    from crm.surveys.service import get_survey

    if not key.lstrip("#").isdigit():
        raise ShowError(f"a survey id is a number, as in `hotline surveys list` (#12), "
                        f"not {key!r}")
    view = await get_survey(sessions, int(key.lstrip("#")))
    await audit.write(sessions, actor=_actor(), action="survey.view", object_type="survey",
                      object_id=view.id, detail={"via": "cli"})
    return view.to_json()
