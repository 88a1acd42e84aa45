"""Agents, passwords, roles, masking, API tokens and the audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from crm.agents import sessions as browser_sessions
from crm.agents import tokens as api_tokens
from crm.agents.accounts import (
    authenticate,
    create_agent,
    disable_agent,
    enable_agent,
    find_agent_by_extension,
    get_agent,
    list_agents,
    set_password,
    update_agent,
)
from crm.agents.auth import has_role, hash_password, mask_id_number, verify_password
from crm.audit import log as audit
from crm.demo_data import seed_demo
from crm.errors import (
    AgentNotFound,
    AlreadyExists,
    InvalidInput,
    InvalidScope,
    InvalidToken,
)
from crm.storage.models import Agent, ApiToken, utcnow

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only
STRONGER = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)


# -- passwords (no database) ------------------------------------------------------------------
def test_default_hash_is_memory_hard_argon2id() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    check = verify_password(stored, "correct horse battery")
    assert check.ok and check.new_hash is None


def test_verify_and_rehash_when_parameters_change() -> None:
    stored = hash_password("correct horse battery", hasher=FAST)
    assert verify_password(stored, "correct horse battery", hasher=FAST).new_hash is None
    assert not verify_password(stored, "wrong horse battery", hasher=FAST).ok
    check = verify_password(stored, "correct horse battery", hasher=STRONGER)
    assert check.ok and check.new_hash is not None and "t=2" in check.new_hash
    assert not verify_password("not a hash", "x", hasher=FAST).ok
    assert not verify_password(None, "anything", hasher=FAST).ok


def test_short_passwords_are_refused() -> None:
    with pytest.raises(InvalidInput):
        hash_password("short", hasher=FAST)


# -- roles and masking ------------------------------------------------------------------------
def test_role_order() -> None:
    assert has_role("admin", "supervisor") and has_role("supervisor", "supervisor")
    assert not has_role("agent", "supervisor") and not has_role("intruder", "agent")
    assert has_role("admin", "admin") and not has_role("supervisor", "admin")
    with pytest.raises(InvalidInput):
        has_role("agent", "root")


def test_id_numbers_only_ever_show_the_last_four() -> None:
    assert mask_id_number("110101195003072316") == "****2316"
    assert mask_id_number("2316") == "****2316"
    assert mask_id_number(None) is None


# -- agents -----------------------------------------------------------------------------------
async def test_create_and_find_agents(sessions) -> None:
    made = await create_agent(sessions, login="agent1", display_name="王芳", extension="2001",
                              password="s3cret-pass", hasher=FAST)
    assert (made.role, made.queues, made.active, made.can_log_in) == (
        "agent", ("hotline",), True, True)
    await create_agent(sessions, login="boss", display_name="陈静", role="supervisor",
                       extension="2003", queues=["hotline", "complaints"])
    assert (await find_agent_by_extension(sessions, "2001")).login == "agent1"
    assert await find_agent_by_extension(sessions, "2999") is None
    assert (await get_agent(sessions, "boss")).queues == ("hotline", "complaints")
    assert [a.login for a in await list_agents(sessions)] == ["agent1", "boss"]
    async with sessions() as s:
        stored = await s.scalar(select(Agent.password_hash).where(Agent.login == "agent1"))
    assert stored.startswith("$argon2id$") and "s3cret" not in stored


async def test_agent_validation_and_duplicates(sessions) -> None:
    await create_agent(sessions, login="agent1", display_name="A", extension="2001")
    with pytest.raises(AlreadyExists):
        await create_agent(sessions, login="agent1", display_name="B")
    with pytest.raises(AlreadyExists):
        await create_agent(sessions, login="agent2", display_name="B", extension="2001")
    for bad in [{"login": "Bad Login"}, {"role": "root"}, {"extension": "20a1"},
                {"queues": ["Hot Line"]}, {"display_name": " "}]:
        with pytest.raises(InvalidInput):
            await create_agent(sessions, **({"login": "x1", "display_name": "X"} | bad))
    with pytest.raises(AgentNotFound):
        await get_agent(sessions, "ghost")


async def test_update_agent(sessions) -> None:
    await create_agent(sessions, login="agent1", display_name="A", extension="2001")
    await create_agent(sessions, login="agent2", display_name="B", extension="2002")
    changed = await update_agent(sessions, "agent1", role="supervisor", queues=["vip"],
                                 clear_extension=True, active=False)
    assert (changed.role, changed.queues, changed.extension, changed.active) == (
        "supervisor", ("vip",), None, False)
    assert [a.login for a in await list_agents(sessions)] == ["agent2"]
    assert len(await list_agents(sessions, include_inactive=True)) == 2
    with pytest.raises(AlreadyExists):
        await update_agent(sessions, "agent1", extension="2002")


async def test_agents_speak_languages(sessions) -> None:
    """Language skills: Mandarin by default, set with update_agent (hotline agents
    set-languages), checked against the IVR's languages; a bad list changes nothing."""
    created = await create_agent(sessions, login="agent1", display_name="A", extension="2001")
    assert created.languages == ("cmn",)
    changed = await update_agent(sessions, "agent1", languages=["cmn", "en", "en", " ko"])
    assert changed.languages == ("cmn", "en", "ko")
    for bad in (["fr"], [], [" "]):
        with pytest.raises(InvalidInput):
            await update_agent(sessions, "agent1", languages=bad)
    assert (await get_agent(sessions, "agent1")).languages == ("cmn", "en", "ko")
    korean = await create_agent(sessions, login="agent2", display_name="B", languages=["ko"])
    assert korean.languages == ("ko",)


async def test_authenticate(sessions) -> None:
    await create_agent(sessions, login="agent1", display_name="A", password="s3cret-pass",
                       hasher=FAST)
    await create_agent(sessions, login="nopass", display_name="N")
    assert (await authenticate(sessions, "agent1", "s3cret-pass", hasher=FAST)).login == "agent1"
    assert await authenticate(sessions, "agent1", "wrong-pass", hasher=FAST) is None
    assert await authenticate(sessions, "ghost", "s3cret-pass", hasher=FAST) is None
    assert await authenticate(sessions, "nopass", "", hasher=FAST) is None
    await update_agent(sessions, "agent1", active=False)
    assert await authenticate(sessions, "agent1", "s3cret-pass", hasher=FAST) is None


async def test_login_upgrades_an_outdated_hash(sessions) -> None:
    await create_agent(sessions, login="agent1", display_name="A", password="s3cret-pass",
                       hasher=FAST)
    assert await authenticate(sessions, "agent1", "s3cret-pass", hasher=STRONGER)
    async with sessions() as s:
        stored = await s.scalar(select(Agent.password_hash).where(Agent.login == "agent1"))
    assert "t=2" in stored
    assert await authenticate(sessions, "agent1", "s3cret-pass", hasher=STRONGER)
    await set_password(sessions, "agent1", "another-pass", hasher=FAST)
    assert await authenticate(sessions, "agent1", "s3cret-pass", hasher=FAST) is None
    assert await authenticate(sessions, "agent1", "another-pass", hasher=FAST)


async def test_demo_accounts(sessions, db_url) -> None:
    await seed_demo(db_url)
    agents = {a.login: a for a in await list_agents(sessions)}
    assert {a.role for a in agents.values()} == {"agent", "supervisor", "admin"}
    assert agents["agent1"].extension == "2001" and not agents["agent1"].can_log_in
    assert agents["agent1"].languages == ("cmn",)
    assert {"en", "ko"} <= set(agents["agent2"].languages)
    # With a password given, accounts made from then on can log in.
    async with sessions() as s, s.begin():
        await s.delete(await s.scalar(select(Agent).where(Agent.login == "admin")))
    await seed_demo(db_url, agent_password="demo-password")
    assert (await authenticate(sessions, "admin", "demo-password")).role == "admin"


# -- API tokens -------------------------------------------------------------------------------
async def test_token_is_shown_once_and_stored_only_as_its_hash(sessions) -> None:
    token = await api_tokens.create_token(sessions, "dept-housing",
                                          ["cases:read", "cases:write", "cases:read"])
    assert token.startswith("hlt_") and len(token) > 40
    async with sessions() as s:
        row = await s.scalar(select(ApiToken))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row.__dict__)
    record = await api_tokens.verify(sessions, token)
    assert record.name == "dept-housing" and record.actor == "token:dept-housing"
    assert record.scopes == {"cases:read", "cases:write"}
    assert record.allows("cases:write") and not record.allows("consultations:read")
    [entry] = await audit.entries(sessions, object_type="api_token")
    assert entry.action == "api_token.create"


async def test_unknown_and_revoked_tokens_do_not_verify(sessions) -> None:
    token = await api_tokens.create_token(sessions, "old", ["cases:read"])
    other = await api_tokens.create_token(sessions, "keep", ["cases:read"])
    for garbage in ["", "hlt_", "hlt_nope", token[:-1], "Bearer " + token, "x" * 10_000]:
        assert await api_tokens.verify(sessions, garbage) is None
    assert await api_tokens.revoke(sessions, "old") == 1
    assert await api_tokens.revoke(sessions, "old") == 0
    assert await api_tokens.verify(sessions, token) is None
    assert await api_tokens.verify(sessions, other) is not None
    assert [t.name for t in await api_tokens.list_tokens(sessions)] == ["keep"]
    assert len(await api_tokens.list_tokens(sessions, include_revoked=True)) == 2


async def test_token_scopes_and_names_are_checked(sessions) -> None:
    with pytest.raises(InvalidScope) as err:
        await api_tokens.create_token(sessions, "x", ["cases:read", "cases:delete"])
    assert "cases:delete" in err.value.message
    assert "cases:read, cases:write, consultations:read" in err.value.message
    with pytest.raises(InvalidScope):
        await api_tokens.create_token(sessions, "x", [])
    with pytest.raises(InvalidInput):
        await api_tokens.create_token(sessions, "no spaces please", ["cases:read"])
    assert await api_tokens.list_tokens(sessions) == []


async def test_audit_entries(sessions) -> None:
    await audit.write(sessions, actor="token:a", action="case.read", object_type="case",
                      object_id="26112200017")
    await audit.write(sessions, actor="agent:b", action="case.read", object_type="case",
                      object_id="26112200025", detail={"why": "call"})
    newest, older = await audit.entries(sessions, object_type="case")
    assert (newest.actor, newest.detail) == ("agent:b", {"why": "call"})
    assert newest.at >= older.at and newest.at.tzinfo is not None
    assert [e.actor for e in await audit.entries(sessions, object_id="26112200017")] == [
        "token:a"]


async def test_audit_entries_carry_the_source_and_session(sessions) -> None:
    await audit.write(sessions, actor="agent:b", action="desk.login", object_type="agent",
                      object_id="b", source="192.0.2.7", web_session="s" * 80)
    [entry] = await audit.entries(sessions)
    assert entry.source == "192.0.2.7" and entry.web_session == "s" * 64


# -- token expiry -------------------------------------------------------------------------------
async def test_tokens_expire_with_a_message_that_says_so(sessions) -> None:
    made = utcnow()
    plaintext, record = await api_tokens.create(sessions, "temp", ["cases:read"],
                                                expires_in_days=1, now=made)
    assert record.expires_at == made + timedelta(days=1)
    assert (await api_tokens.verify(sessions, plaintext, now=made + timedelta(hours=23))).name \
        == "temp"
    with pytest.raises(api_tokens.TokenExpired) as expired:
        await api_tokens.verify(sessions, plaintext, now=made + timedelta(days=1))
    assert isinstance(expired.value, InvalidToken) and expired.value.code == "token_expired"
    assert "'temp' expired at" in expired.value.message
    forever = await api_tokens.create_token(sessions, "forever", ["cases:read"])
    assert (await api_tokens.verify(sessions, forever)).expires_at is None
    await api_tokens.create(sessions, "old", ["cases:read"], expires_in_days=1,
                            now=made - timedelta(days=2))
    assert [(t.name, t.state) for t in await api_tokens.list_tokens(sessions)] == [
        ("temp", "live"), ("forever", "live"), ("old", "expired")]
    assert [t.name for t in await api_tokens.list_tokens(sessions, include_expired=False)] == [
        "temp", "forever"]
    for bad in (0, -1, api_tokens.MAX_EXPIRES_IN_DAYS + 1):
        with pytest.raises(InvalidInput):
            await api_tokens.create(sessions, "bad", ["cases:read"], expires_in_days=bad)


# -- what ends an account's web sessions ----------------------------------------------------------
async def test_password_role_and_disable_end_the_accounts_sessions(sessions) -> None:
    agent = await create_agent(sessions, login="agent1", display_name="A", password="s3cret-pass",
                               hasher=FAST)
    other = await create_agent(sessions, login="agent2", display_name="B")
    heard: list[browser_sessions.Revoked] = []

    async def listener(revoked: list[browser_sessions.Revoked]) -> None:
        heard.extend(revoked)

    async def sign_in(account, app: str = "desk") -> str:
        secret, _ = await browser_sessions.open_session(
            sessions, app=app, agent=account, max_age=3600, source="127.0.0.1",
            user_agent="test")
        return secret

    async def live(secret: str, app: str = "desk") -> bool:
        return await browser_sessions.check(sessions, secret, app=app,
                                            idle_timeout=600) is not None

    browser_sessions.add_listener(listener)
    try:
        desk, console, bystander = (await sign_in(agent), await sign_in(agent, "console"),
                                    await sign_in(other))
        assert await live(desk) and await live(console, "console")
        assert not await live(desk, "console")  # one application's session opens no other
        assert await set_password(sessions, "agent1", "another-pass", hasher=FAST) == 2
        assert not await live(desk) and not await live(console, "console")
        assert {(r.app, r.login, r.reason) for r in heard} == {
            ("desk", "agent1", "password_changed"), ("console", "agent1", "password_changed")}

        heard.clear()
        desk = await sign_in(await get_agent(sessions, "agent1"))
        await update_agent(sessions, "agent1", display_name="A2", queues=["vip"])
        assert await live(desk) and heard == []  # other changes keep the session
        await update_agent(sessions, "agent1", role="supervisor")
        assert not await live(desk) and [r.reason for r in heard] == ["role_changed"]

        heard.clear()
        desk = await sign_in(await get_agent(sessions, "agent1"))
        await disable_agent(sessions, "agent1")
        assert not await live(desk) and [r.reason for r in heard] == ["disabled"]
        await enable_agent(sessions, "agent1")
        assert not await live(desk)  # enabling again does not bring old sessions back
        assert await live(bystander)
    finally:
        browser_sessions.remove_listener(listener)


async def test_a_session_ends_when_idle_past_its_end_or_when_its_role_no_longer_matches(
        sessions) -> None:
    agent = await create_agent(sessions, login="agent1", display_name="A")
    start = utcnow()
    secret, opened = await browser_sessions.open_session(
        sessions, app="desk", agent=agent, max_age=1000, source=None, user_agent=None,
        now=start)

    async def check(seconds: float):
        return await browser_sessions.check(sessions, secret, app="desk", idle_timeout=300,
                                            now=start + timedelta(seconds=seconds))

    assert (await check(299))[1] is True  # used again: last seen moves on
    assert await check(590) is not None
    assert await check(899) is None  # 309 s since the last use: idle
    assert await check(880) is not None  # 290 s since the last use
    assert await check(1000) is None  # the absolute end, however active
    async with sessions() as s, s.begin():  # a role changed behind the session's back
        (await s.scalar(select(Agent).where(Agent.login == "agent1"))).role = "admin"
    assert await check(10) is None
    [ended] = await browser_sessions.list_sessions(sessions, include_ended=True)
    assert ended.revoked_reason == "role_changed" and ended.id == opened.id
