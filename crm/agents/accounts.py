"""Agents, supervisors and admins of the agent desk: accounts, desk phones, queues, log-in.

Password hashing is deliberately slow (argon2id), so it runs on the argon2 threads of a
:class:`crm.agents.auth.PasswordWork` (the web app's own, or the process's shared one), never on the
event loop or its default executor.

Changing an account's password or role, or disabling it, ends its desk and console sessions
in the same transaction (crm.agents.sessions), and this process's open websockets of those
sessions close at once.
"""

from __future__ import annotations

import logging
import re

from argon2 import PasswordHasher
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.agents import sessions as browser_sessions
from crm.agents.auth import DEFAULT_HASHER, PasswordWork, check_role_name, default_password_work
from crm.agents.view import AgentView, agent_view
from crm.errors import AgentNotFound, AlreadyExists, InvalidInput
from crm.i18n.phrases import Labels, Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import Agent

log = logging.getLogger(__name__)

LOGIN_PATTERN = re.compile(r"[a-z][a-z0-9._-]{1,63}")
EXTENSION_PATTERN = re.compile(r"[0-9]{2,16}")
QUEUE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")
DEFAULT_QUEUES = ("hotline",)
AGENT_LANGUAGES = ("cmn", "en", "ko")
"""Languages an agent may speak at the desk (the IVR's languages)."""
DEFAULT_LANGUAGES = ("cmn",)


def _check_login(login: str) -> str:
    if not LOGIN_PATTERN.fullmatch(login):
        raise InvalidInput(Phrase("login {login} must be 2-64 lower-case letters, digits, '.', "
                                  "'_' or '-', starting with a letter", {"login": repr(login)}))
    return login


def _check_extension(extension: str | None) -> str | None:
    if extension is not None and not EXTENSION_PATTERN.fullmatch(extension):
        raise InvalidInput(Phrase("extension {extension} must be 2-16 digits",
                                  {"extension": repr(extension)}))
    return extension


def _check_queues(queues: list[str] | tuple[str, ...]) -> list[str]:
    bad = [q for q in queues if not QUEUE_PATTERN.fullmatch(q)]
    if bad:
        raise InvalidInput(Phrase("invalid queue names: {queues}",
                                  {"queues": ", ".join(map(repr, bad))}))
    return list(dict.fromkeys(queues))


def check_languages(languages: list[str] | tuple[str, ...]) -> list[str]:
    """Language codes, each once, in the given order; at least one."""
    codes = [code.strip() for code in languages if code.strip()]
    bad = [c for c in codes if c not in AGENT_LANGUAGES]
    if bad:
        raise InvalidInput(Phrase("unknown language(s) {bad}: use {languages}",
                                  {"bad": ", ".join(map(repr, bad)),
                                   "languages": Labels("language", AGENT_LANGUAGES)}))
    if not codes:
        raise InvalidInput(Phrase("an agent speaks at least one language ({languages})",
                                  {"languages": Labels("language", AGENT_LANGUAGES)}))
    return list(dict.fromkeys(codes))


def _check_display_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInput(Phrase("display name must be 1-128 characters"))
    return name


async def _hash(password: str, hasher: PasswordHasher, work: PasswordWork | None) -> str:
    return await (work or default_password_work()).hash(password, hasher=hasher)


async def create_agent(sessions: SessionFactory, *, login: str, display_name: str,
                       role: str = "agent", extension: str | None = None,
                       queues: list[str] | tuple[str, ...] = DEFAULT_QUEUES,
                       languages: list[str] | tuple[str, ...] = DEFAULT_LANGUAGES,
                       password: str | None = None, active: bool = True,
                       hasher: PasswordHasher = DEFAULT_HASHER,
                       work: PasswordWork | None = None) -> AgentView:
    """Add an account. Without a password it exists (for queues and pops) but cannot log in."""
    agent = Agent(login=_check_login(login), display_name=_check_display_name(display_name),
                  role=check_role_name(role), extension=_check_extension(extension),
                  queues=_check_queues(queues), languages=check_languages(languages),
                  active=active,
                  password_hash=(await _hash(password, hasher, work)
                                 if password is not None else None))
    try:
        async with sessions() as session, session.begin():
            same = [Agent.login == login]
            if extension is not None:
                same.append(Agent.extension == extension)
            clash = await session.scalar(select(Agent).where(or_(*same)))
            if clash is not None:
                raise AlreadyExists(
                    Phrase("an agent with login {login} exists", {"login": repr(login)})
                    if clash.login == login else
                    Phrase("an agent with extension {extension} exists",
                           {"extension": repr(clash.extension)}))
            session.add(agent)
    except IntegrityError as exc:  # a concurrent create won the race
        raise AlreadyExists(Phrase("an agent with login {login} or extension {extension} "
                                   "exists",
                                   {"login": repr(login), "extension": repr(extension)})) from exc
    log.info("agent %s created (role %s, extension %s)", login, role, extension)
    return agent_view(agent)


async def _load(session: AsyncSession, login: str) -> Agent:
    agent = await session.scalar(select(Agent).where(Agent.login == login))
    if agent is None:
        raise AgentNotFound(Phrase("no agent with login {login}", {"login": repr(login)}))
    return agent


async def get_agent(sessions: SessionFactory, login: str) -> AgentView:
    async with sessions() as session:
        return agent_view(await _load(session, login))


async def find_agent_by_extension(sessions: SessionFactory, extension: str) -> AgentView | None:
    """The active agent whose desk phone this is (for screen pops on AgentConnect)."""
    async with sessions() as session:
        agent = await session.scalar(select(Agent).where(Agent.extension == extension,
                                                         Agent.active.is_(True)))
    return agent_view(agent) if agent else None


async def list_agents(sessions: SessionFactory, *,
                      include_inactive: bool = False) -> list[AgentView]:
    query = select(Agent).order_by(Agent.login)
    if not include_inactive:
        query = query.where(Agent.active.is_(True))
    async with sessions() as session:
        return [agent_view(a) for a in (await session.scalars(query)).all()]


async def update_agent(sessions: SessionFactory, login: str, *,
                       display_name: str | None = None, role: str | None = None,
                       extension: str | None = None, clear_extension: bool = False,
                       queues: list[str] | None = None,
                       languages: list[str] | None = None,
                       active: bool | None = None) -> AgentView:
    """Change an account; a new role or disabling it ends the account's web sessions."""
    revoked: list[browser_sessions.Revoked] = []
    try:
        async with sessions() as session, session.begin():
            agent = await _load(session, login)
            if display_name is not None:
                agent.display_name = _check_display_name(display_name)
            if role is not None and check_role_name(role) != agent.role:
                agent.role = role
                revoked += await browser_sessions.revoke_in(session, agent.id, "role_changed")
            if extension is not None or clear_extension:
                agent.extension = _check_extension(extension)
            if queues is not None:
                agent.queues = _check_queues(queues)
            if languages is not None:
                agent.languages = check_languages(languages)
            if active is not None and active != agent.active:
                agent.active = active
                if not active:
                    revoked += await browser_sessions.revoke_in(session, agent.id, "disabled")
    except IntegrityError as exc:
        raise AlreadyExists(Phrase("extension {extension} belongs to another agent",
                                   {"extension": repr(extension)})) from exc
    if revoked:
        log.info("agent %s: %d web session(s) ended (%s)", login, len(revoked),
                 revoked[0].reason)
    await browser_sessions.announce(revoked)
    return agent_view(agent)


async def disable_agent(sessions: SessionFactory, login: str) -> AgentView:
    """The account can no longer sign in; its sessions and open websockets end now."""
    return await update_agent(sessions, login, active=False)


async def enable_agent(sessions: SessionFactory, login: str) -> AgentView:
    return await update_agent(sessions, login, active=True)


async def set_locale(sessions: SessionFactory, login: str, locale: str | None) -> AgentView:
    """The language of the account's pages (None: the hotline's default); the caller checks
    that it is one the catalogs have."""
    async with sessions() as session, session.begin():
        agent = await _load(session, login)
        agent.locale = locale
        return agent_view(agent)


async def set_password(sessions: SessionFactory, login: str, password: str, *,
                       hasher: PasswordHasher = DEFAULT_HASHER,
                       work: PasswordWork | None = None) -> int:
    """A new password; the account's web sessions end. How many sessions ended."""
    new_hash = await _hash(password, hasher, work)
    async with sessions() as session, session.begin():
        agent = await _load(session, login)
        agent.password_hash = new_hash
        revoked = await browser_sessions.revoke_in(session, agent.id, "password_changed")
    await browser_sessions.announce(revoked)
    return len(revoked)


async def authenticate(sessions: SessionFactory, login: str, password: str, *,
                       hasher: PasswordHasher = DEFAULT_HASHER,
                       work: PasswordWork | None = None) -> AgentView | None:
    """The active agent with this login and password, or None (same answer, and about the same
    time, for an unknown login, a wrong password and a disabled account). A hash made with
    outdated parameters is replaced on success."""
    async with sessions() as session:
        agent = await session.scalar(select(Agent).where(Agent.login == login))
    stored = agent.password_hash if agent is not None else None
    check = await (work or default_password_work()).verify(stored, password, hasher=hasher)
    if agent is None or not check.ok or not agent.active:
        return None
    if check.new_hash is not None:
        async with sessions() as session, session.begin():
            fresh = await session.get(Agent, agent.id)
            if fresh is not None and fresh.password_hash == stored:
                fresh.password_hash = check.new_hash
        log.info("agent %s: password hash upgraded to current parameters", login)
    return agent_view(agent)
