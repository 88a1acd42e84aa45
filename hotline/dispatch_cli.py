"""``hotline dispatch``: bind an API token or a console account to a department (it then
sees and changes only that department's cases), and send the due-soon/overdue reminders
(for cron or a systemd timer; each case is reminded once per deadline). The running service
sends them itself every ``[dispatch] remind_every_s`` (crm/cases/reminder_timer.py)."""

from __future__ import annotations

import argparse
import asyncio

from hotline.settings import Settings


class DispatchCommandError(Exception):
    pass


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dispatch", help="departments' tokens and accounts; reminders")
    p.add_argument("action", choices=["bind-token", "bind-account", "remind"])
    p.add_argument("who", nargs="?", metavar="NAME",
                   help="bind-token: the token's name; bind-account: the login")
    p.add_argument("department", nargs="?", help="the department's code")


def run(settings: Settings, args: argparse.Namespace) -> list[str]:
    """What to print; :class:`DispatchCommandError` for bad arguments or data."""
    from sqlalchemy import select

    from crm.agents.accounts import get_agent
    from crm.cases import dispatch
    from crm.errors import HotlineError
    from crm.storage.db import open_database
    from crm.storage.migrate import upgrade
    from crm.storage.models import ApiToken

    if args.action != "remind" and not (args.who and args.department):
        raise DispatchCommandError(f"usage: hotline dispatch {args.action} NAME DEPARTMENT")

    async def go() -> list[str]:
        await upgrade(settings.database_url)
        database = open_database(settings.database_url, echo=settings.database.echo)
        sessions = database.sessions
        try:
            if args.action == "remind":
                made = await dispatch.send_reminders(sessions)
                return [f"{r.case_number} {r.kind:8} -> {r.department}" for r in made] or [
                    "no reminders due"]
            if args.action == "bind-token":
                async with sessions() as session:
                    token_id = await session.scalar(select(ApiToken.id).where(
                        ApiToken.name == args.who, ApiToken.revoked.is_(False)))
                if token_id is None:
                    raise DispatchCommandError(f"no live token named {args.who!r}")
                await dispatch.bind_token(sessions, token_id, args.department, actor="cli")
                return [f"token {args.who!r} now acts for {args.department} only"]
            agent = await get_agent(sessions, args.who)
            await dispatch.bind_agent(sessions, agent.id, args.department, actor="cli")
            return [f"account {args.who!r} now acts for {args.department} in the console"]
        finally:
            await database.close()

    try:
        return asyncio.run(go())
    except HotlineError as exc:
        raise DispatchCommandError(str(exc)) from None
