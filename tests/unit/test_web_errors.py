"""The one error middleware factory (crm.web.errors) over real HTTP: the lookup from the
domain exception tree, an app's own statuses, its renderer, the headers it adds, and what
goes on to aiohttp. (The API, desk and console are tested with their own apps elsewhere.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crm.errors import CaseNotFound, HotlineError, InvalidTransition
from crm.web.errors import STATUS_FOR_ERROR, ErrorReply, error_middleware, json_error


class OutOfOrder(HotlineError):
    code = "out_of_order"


class Unmapped(HotlineError):
    code = "unmapped"


async def missing(request: web.Request) -> web.Response:
    raise CaseNotFound("no case 20261122-0001", details={"number": "20261122-0001"})


async def moved_on(request: web.Request) -> web.Response:
    raise InvalidTransition("accepted", "closed", ["dispatched"])


async def unmapped(request: web.Request) -> web.Response:
    raise Unmapped("a secret the client must not see")


async def out_of_order(request: web.Request) -> web.Response:
    raise OutOfOrder("the phones are down")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/elsewhere")


async def bug(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def fine(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"Cache-Control": "max-age=60"})


def page(request: web.Request, reply: ErrorReply) -> web.Response:
    return web.Response(text=f"<h1>{reply.status}</h1><p>{reply.message}</p>",
                        content_type="text/html", status=reply.status)


def make_app(middleware: object) -> web.Application:
    app = web.Application(middlewares=[middleware])  # type: ignore[list-item]
    for path, handler in (("/missing", missing), ("/moved-on", moved_on),
                          ("/unmapped", unmapped), ("/out-of-order", out_of_order),
                          ("/redirect", redirect), ("/bug", bug), ("/fine", fine)):
        app.router.add_get(path, handler)
    return app


@pytest.fixture
async def client_for() -> AsyncIterator:
    clients: list[TestClient] = []

    async def start(middleware: object) -> TestClient:
        client = TestClient(TestServer(make_app(middleware)))
        await client.start_server()
        clients.append(client)
        return client
    yield start
    for client in clients:
        await client.close()


async def test_domain_errors_are_looked_up_and_rendered_as_json(
        client_for, caplog: pytest.LogCaptureFixture) -> None:
    client = await client_for(error_middleware(
        json_error, statuses={**STATUS_FOR_ERROR, OutOfOrder: 503},
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"}))
    resp = await client.get("/missing")
    assert resp.status == 404
    assert await resp.json() == {"error": {"code": "case_not_found",
                                           "message": "no case 20261122-0001",
                                           "details": {"number": "20261122-0001"}}}
    assert resp.headers["Cache-Control"] == "no-store"  # on errors too
    resp = await client.get("/moved-on")
    assert resp.status == 409
    assert (await resp.json())["error"]["details"]["allowed"] == ["dispatched"]
    resp = await client.get("/out-of-order")  # the app's own status for its own error
    assert (resp.status, (await resp.json())["error"]["code"]) == (503, "out_of_order")
    resp = await client.get("/unmapped")
    assert resp.status == 500
    assert await resp.json() == {"error": {"code": "internal_error",
                                           "message": "internal error"}}
    assert "unmapped domain error" in caplog.text and "a secret" in caplog.text
    resp = await client.get("/fine")
    assert (resp.status, resp.headers["Cache-Control"]) == (200, "max-age=60")
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_routing_errors_and_bugs_go_on_to_aiohttp_unless_answer_all(client_for) -> None:
    pages = await client_for(error_middleware(page))
    resp = await pages.get("/missing")
    assert resp.status == 404 and "<p>no case 20261122-0001</p>" in await resp.text()
    resp = await pages.get("/redirect", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/elsewhere")
    resp = await pages.get("/no-such-page")
    assert resp.status == 404 and resp.content_type == "text/plain"  # aiohttp's own
    resp = await pages.get("/bug")
    assert resp.status == 500 and resp.content_type == "text/plain"


async def test_answer_all_renders_routing_errors_and_bugs_too(
        client_for, caplog: pytest.LogCaptureFixture) -> None:
    client = await client_for(error_middleware(json_error, answer_all=True))
    resp = await client.get("/no-such-page")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.post("/fine")
    assert (resp.status, (await resp.json())["error"]["code"]) == (405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    with caplog.at_level(logging.ERROR, logger="crm.web.errors"):
        resp = await client.get("/bug")
    assert resp.status == 500
    assert (await resp.json())["error"] == {"code": "internal_error",
                                            "message": "internal error"}
    assert "RuntimeError: a bug" in caplog.text
    resp = await client.get("/redirect", allow_redirects=False)
    assert resp.status == 303
