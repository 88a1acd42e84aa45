"""Agents' accounts as CSV: ``login,name,role,extension,languages`` (the languages route
calls: an agent is offered the calls of the languages they speak, ``;``-separated).

Never passwords: a new account has none and cannot sign in until given one with
``hotline agents set-password LOGIN``; an existing account keeps its own. A row whose
``login`` exists updates that account; an empty ``role`` or ``languages`` leaves an existing
account's as it is (a new one: ``agent``, ``cmn``); an empty ``extension`` means no desk
phone, a file without that column leaves desk phones alone. A changed role ends that
account's web sessions, as ``hotline agents set-role`` does.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from crm.agents import sessions as browser_sessions
from crm.agents.accounts import (
    AGENT_LANGUAGES,
    DEFAULT_LANGUAGES,
    DEFAULT_QUEUES,
    EXTENSION_PATTERN,
    LOGIN_PATTERN,
)
from crm.agents.auth import ROLES
from crm.directory.rows import ImportResult, Problems, Row, check_unique, field_text
from crm.i18n.phrases import Label, Labels, Phrase
from crm.storage.models import Agent

NO_PASSWORD_NOTE = ("new accounts have no password and cannot sign in until given one: "
                    "hotline agents set-password LOGIN")


def split_languages(value: str) -> list[str]:
    return list(dict.fromkeys(code for code in re.split(r"[;,\s]+", value) if code))


def _parse(row: Row, problems: Problems) -> tuple[str, dict[str, Any]] | None:
    login = row.values.get("login", "").lower()
    if not login:
        problems.add(row.line, "login", Phrase("required, empty"))
    elif not LOGIN_PATTERN.fullmatch(login):
        problems.add(row.line, "login", Phrase("{value} is not a login (2-64 lower-case "
                                               "letters, digits, . _ -, starting with a "
                                               "letter)", {"value": repr(login)}))
        login = ""
    name = field_text(row, "name", problems, required=True)
    fields: dict[str, Any] = {"display_name": name}
    role = row.values.get("role", "").lower()
    if role and role not in ROLES:
        problems.add(row.line, "role", Phrase("{value} is not one of {roles}",
                                              {"value": repr(role),
                                               "roles": Labels("role", tuple(ROLES))}))
    elif role:
        fields["role"] = role
    if "extension" in row.values:  # a file without the column leaves desk phones alone
        extension = row.values["extension"] or None
        if extension is not None and not EXTENSION_PATTERN.fullmatch(extension):
            problems.add(row.line, "extension",
                         Phrase("{value} is not an extension (2-16 digits)",
                                {"value": repr(extension)}))
        fields["extension"] = extension
    if row.values.get("languages"):
        languages = split_languages(row.values["languages"])
        bad = [code for code in languages if code not in AGENT_LANGUAGES]
        if bad:
            problems.add(row.line, "languages",
                         Phrase("{bad}: use {languages}, ';'-separated",
                                {"bad": ", ".join(map(repr, bad)),
                                 "languages": Labels("language", AGENT_LANGUAGES)}))
        fields["languages"] = languages
    return (login, fields) if login and name else None


async def import_agents(session: Any, rows: list[Row], problems: Problems, *,
                        revoked: list[browser_sessions.Revoked],
                        importer: str | None = None) -> ImportResult:
    """Checks every row, then adds or updates accounts in ``session``'s transaction; the
    sessions a role change ends are appended to ``revoked`` (announce them after commit).
    The ``importer``'s own role is not changed by its own file (it would lock itself out)."""
    parsed = [(row.line, item) for row in rows if (item := _parse(row, problems))]
    check_unique(((line, login) for line, (login, _) in parsed), "login", problems)
    existing = {a.login: a for a in await session.scalars(select(Agent))}
    own = existing.get(importer or "")
    for line, (login, fields) in parsed:
        if own is not None and login == own.login and fields.get("role", own.role) != own.role:
            problems.add(line, "role", Phrase("your own role ({role}) cannot be changed by "
                                              "your own import; another admin or `hotline "
                                              "agents set-role` can",
                                              {"role": Label("role", own.role)}))
    moving = {login for _, (login, fields) in parsed if "extension" in fields}
    phones = {a.extension: Phrase("agent {login}", {"login": repr(a.login)})
              for a in existing.values()
              if a.extension and a.login not in moving}
    for line, (_, fields) in parsed:
        extension = fields.get("extension")
        if extension in phones:
            problems.add(line, "extension", Phrase("{extension} is already {owner}'s",
                                                   {"extension": repr(extension),
                                                    "owner": phones[extension]}))
        elif extension:
            phones[extension] = Phrase("line {line}", {"line": line})
    if problems.items:
        return ImportResult(0, 0)
    moved = [a for login, a in existing.items() if login in moving and a.extension]
    for agent in moved:  # desk phones may change hands within the file: free them first
        agent.extension = None
    if moved:
        await session.flush()
    created = updated = 0
    for _, (login, fields) in parsed:
        agent = existing.get(login)
        if agent is None:
            session.add(Agent(login=login, role=fields.get("role", "agent"),
                              display_name=fields["display_name"],
                              extension=fields.get("extension"), queues=list(DEFAULT_QUEUES),
                              languages=fields.get("languages", list(DEFAULT_LANGUAGES)),
                              password_hash=None, active=True))
            created += 1
            continue
        role = fields.pop("role", agent.role)
        for key, value in fields.items():
            setattr(agent, key, value)
        if role != agent.role:
            agent.role = role
            revoked += await browser_sessions.revoke_in(session, agent.id, "role_changed")
        updated += 1
    return ImportResult(created, updated)


async def export_agents(session: Any, writer: Any) -> int:
    """Every account (disabled ones too), by login; never a password or its hash."""
    count = 0
    for agent in await session.scalars(select(Agent).order_by(Agent.login)):
        writer.writerow([agent.login, agent.display_name, agent.role, agent.extension or "",
                         ";".join(agent.languages or [])])
        count += 1
    return count

