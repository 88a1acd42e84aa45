"""The browser-session pieces the agent desk and the supervisor console share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_session import get_session, session_middleware
from cryptography.fernet import InvalidToken

from crm.agents.throttle import ThrottlePolicy, account_key, address_key
from crm.errors import PermissionDenied
from crm.i18n.catalogs import translator
from crm.i18n.phrases import Phrase
from crm.settings import WebSettings
from crm.web import desk
from crm.web.console import auth as console_auth
from crm.web.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_EXPIRED,
    SessionPolicy,
    SignInResult,
    SocketRegistry,
    check_csrf,
    csrf_token,
    hold_until_expired,
)
from hotline.settings import SettingsError, load_settings

SECRET = "test-secret"
Deadline = Callable[[], float | None]


async def _client(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def csrf_site() -> AsyncIterator[TestClient]:
    """/token gives the session's CSRF token; /post answers the check's verdict."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"csrf": csrf_token(await get_session(request))})

    async def post(request: web.Request) -> web.Response:
        try:
            await check_csrf(request, await get_session(request), reload="the test")
        except PermissionDenied as exc:
            return web.json_response({"refused": exc.message}, status=403)
        return web.json_response({"ok": True})

    storage = desk.session_storage(SECRET, idle_timeout=3600, secure=False)
    app = web.Application(middlewares=[session_middleware(storage)])
    app.router.add_get("/desk/token", token)
    app.router.add_post("/desk/post", post)
    client = await _client(app)
    try:
        yield client
    finally:
        await client.close()


async def test_the_csrf_token_comes_from_the_header_or_the_form(csrf_site: TestClient) -> None:
    token = (await (await csrf_site.get("/desk/token")).json())["csrf"]
    assert token == (await (await csrf_site.get("/desk/token")).json())["csrf"]  # kept
    by_header = await csrf_site.post("/desk/post", headers={CSRF_HEADER: token})
    by_form = await csrf_site.post("/desk/post", data={CSRF_FIELD: token})
    assert by_header.status == by_form.status == 200


async def test_a_missing_or_wrong_token_or_another_site_is_refused(
        csrf_site: TestClient) -> None:
    token = (await (await csrf_site.get("/desk/token")).json())["csrf"]
    for kwargs in ({}, {"data": {CSRF_FIELD: token + "x"}}, {"headers": {CSRF_HEADER: ""}}):
        refused = await csrf_site.post("/desk/post", **kwargs)
        assert refused.status == 403
        assert (await refused.json())["refused"] == ("missing or wrong CSRF token; "
                                                     "reload the test")
    elsewhere = await csrf_site.post("/desk/post", headers={CSRF_HEADER: token,
                                                            "Origin": "http://evil.example"})
    assert (await elsewhere.json())["refused"] == "request from another site refused"
    same_site = await csrf_site.post("/desk/post", headers={
        CSRF_HEADER: token, "Origin": str(csrf_site.make_url("")).rstrip("/")})
    assert same_site.status == 200


def test_each_application_has_its_own_strict_cookie() -> None:
    desk_cookie = desk.session_storage(SECRET, idle_timeout=600, secure=True)
    console_cookie = console_auth.session_storage(SECRET, idle_timeout=10**6, secure=False)
    assert desk_cookie.cookie_name == desk.COOKIE_NAME == "hotline_desk"
    assert console_cookie.cookie_name == console_auth.COOKIE_NAME == "hotline_console"
    for storage, path, max_age, secure in ((desk_cookie, "/desk", 600, True),
                                           (console_cookie, "/console",
                                            int(console_auth.MAX_SESSION_AGE), False)):
        params = storage.cookie_params
        assert params["path"] == path and params["max_age"] == max_age
        assert params["httponly"] is True and params["samesite"] == "Strict"
        assert params["secure"] is secure
    sealed = desk_cookie._fernet.encrypt(b"{}")  # the desk's key does not open the console's
    assert desk_cookie._fernet.decrypt(sealed) == b"{}"
    with pytest.raises(InvalidToken):
        console_cookie._fernet.decrypt(sealed)


async def _socket_site(deadline: Deadline) -> TestClient:
    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await hold_until_expired(ws, deadline)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    return await _client(app)


async def test_a_socket_is_closed_when_its_session_expires() -> None:
    expires = time.time() + 0.3
    client = await _socket_site(lambda: expires)
    try:
        ws = await client.ws_connect("/ws")
        await ws.send_str("ping")  # what the page sends is ignored
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and msg.data == SESSION_EXPIRED == 4401
        assert msg.extra == "session expired"
    finally:
        await client.close()


async def test_a_socket_ends_when_the_session_is_gone_or_the_page_closes_it() -> None:
    signed_in = [True]
    client = await _socket_site(lambda: time.time() + 0.2 if signed_in[0] else None)
    try:
        ws = await client.ws_connect("/ws")
        signed_in[0] = False
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.CLOSE and msg.data != SESSION_EXPIRED
        other = await client.ws_connect("/ws")
        signed_in[0] = True
        await other.close()
        assert other.closed
    finally:
        await client.close()


async def test_ending_a_session_closes_its_sockets_only() -> None:
    registry = SocketRegistry()
    opened: dict[str, list[web.WebSocketResponse]] = {"a": [], "b": []}

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session_id = request.query["session"]
        opened[session_id].append(ws)
        with registry.track(session_id, ws):
            await hold_until_expired(ws, lambda: time.time() + 3600)
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    client = await _client(app)
    try:
        first, second = (await client.ws_connect("/ws?session=a"),
                         await client.ws_connect("/ws?session=a"))
        other = await client.ws_connect("/ws?session=b")
        for _ in range(500):  # until the server holds all three
            if registry.count() == 3:
                break
            await asyncio.sleep(0.01)
        assert registry.count("a") == 2 and registry.count("b") == 1
        assert await registry.close(["a", "missing"]) == 2
        for ws in (first, second):
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.CLOSE and msg.data == SESSION_EXPIRED
            assert msg.extra == "session ended"
        assert not other.closed and registry.session_ids() == ["b"]
        await other.close()
    finally:
        await client.close()


def test_the_sign_in_page_says_why() -> None:
    assert SignInResult(None, 401).explain("Wrong login or password.") == (
        "Wrong login or password.")
    locked = SignInResult(None, 401, Phrase("too many failed sign-ins, try again in {seconds} s",
                                            {"seconds": 60}), 60)
    assert locked.explain("Wrong.") == "Wrong. Too many failed sign-ins, try again in 60 s."
    refused = SignInResult(None, 429, Phrase("too many failed sign-ins, try again in {seconds} s",
                                             {"seconds": 7}), 7)
    assert refused.explain("Wrong.") == "Too many failed sign-ins, try again in 7 s."
    busy = SignInResult(None, 503, Phrase("Sign-in is busy; try again in a few seconds."), 5)
    assert busy.explain("Wrong.") == "Sign-in is busy; try again in a few seconds."


def test_the_sign_in_page_says_why_in_its_language() -> None:
    zh, en = translator("zh_CN"), translator("en")
    assert SignInResult(None, 401).explain("Wrong login or password.", zh) == "账号或密码错误。"
    locked = SignInResult(None, 401, Phrase("Too many failed sign-ins, try again in {seconds} s.",
                                            {"seconds": 60}), 60)
    assert locked.explain("Wrong login or password.", zh) == (
        "账号或密码错误。登录失败次数过多，请 60 秒后再试。")
    assert locked.explain("Wrong login or password.", en) == (
        "Wrong login or password. Too many failed sign-ins, try again in 60 s.")


def test_the_wait_grows_from_the_first_lock_and_is_capped() -> None:
    policy = ThrottlePolicy(base_delay=2, max_delay=30, forget_after=60)
    assert [policy.delay(n, 3) for n in range(1, 9)] == [0, 0, 2, 4, 8, 16, 30, 30]
    assert policy.delay(10**6, 3) == 30  # no overflow
    for bad in ({"base_delay": 0}, {"base_delay": 10, "max_delay": 5},
                {"max_delay": 100, "forget_after": 50}, {"account_free_failures": 0}):
        with pytest.raises(ValueError):
            ThrottlePolicy(**bad)


def test_accounts_and_addresses_are_counted_by_what_they_are() -> None:
    assert account_key(" Agent1 ") == "account:agent1"
    assert address_key("192.0.2.7") == "address:192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "address:192.0.2.7"
    assert address_key("2001:db8:a:b:1:2:3:4") == "address:2001:db8:a:b::/64"
    assert address_key("fe80::1%eth0") == "address:fe80::/64"
    assert address_key(None) == address_key("") == "address:unknown"
    assert address_key("not an address") == "address:not an address"


def test_session_settings_reach_the_policy(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOTLINE_WEB__SESSION_MAX_AGE", "3600")
    monkeypatch.setenv("HOTLINE_WEB__SIGN_IN_ACCOUNT_FAILURES", "3")
    monkeypatch.setenv("HOTLINE_WEB__PASSWORD_HASH_THREADS", "2")
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    policy = SessionPolicy.from_settings(load_settings().web)
    assert policy.max_age == 3600 and policy.hash_workers == 2
    assert policy.throttle.account_free_failures == 3
    assert policy.throttle == ThrottlePolicy(account_free_failures=3)  # the rest: defaults
    defaults = WebSettings()
    assert (defaults.session_max_age, defaults.sign_in_max_delay) == (12 * 3600, 900)
    monkeypatch.setenv("HOTLINE_WEB__SIGN_IN_MAX_DELAY", "7200")
    with pytest.raises(SettingsError, match="sign_in_max_delay <= sign_in_forget_after"):
        load_settings()
