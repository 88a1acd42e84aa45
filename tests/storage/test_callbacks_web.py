"""Callback requests in the browser's routes, on SQLite and PostgreSQL: agents see the
pending list (numbers masked) and, when a callback rings them, a pop with the callback block
(why, when, how long the resident waited, their IVR transcript then), and record its
outcome; supervisors see the list in full, cancel and reassign (audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm.agents.auth import mask_phone
from crm.audit import log as audit
from crm.callbacks import service
from crm.consultations.recorder import ConsultationRecorder
from crm.telephony.events import AgentAnswered, CallerQueued, CallStarted, CallStep
from crm.telephony.steps import (
    CallbackDialling,
    IntentChosen,
    LanguageChosen,
    QueueAbandoned,
    RouteChosen,
)
from tests.desk_bed import PHONE, Desk, desk, message, post, sign_in  # noqa: F401
from tests.storage.test_console_web import Console, console  # noqa: F401 (fixture)

ABANDONED_AT = datetime.now(UTC) - timedelta(minutes=10)


async def _missed_call(sessions, call_id: str) -> int:
    """A call from 张三 who chose an agent in Korean and gave up after 40 s: its request."""
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    for event in (CallStarted(call_id, PHONE, "张三", "PJSIP/gw-1", at=ABANDONED_AT),
                  CallStep(call_id, LanguageChosen("ko", "key"), at=ABANDONED_AT),
                  CallStep(call_id, IntentChosen("agent", "keys"), at=ABANDONED_AT),
                  CallStep(call_id, RouteChosen("agent"), at=ABANDONED_AT),
                  CallerQueued(call_id, "hotline", 1, PHONE, at=ABANDONED_AT),
                  CallStep(call_id, QueueAbandoned("hotline", 1, 40),
                           at=ABANDONED_AT + timedelta(seconds=40))):
        await recorder.handle(event)
    await recorder.close()
    consultation_id = await service.consultation_id_of(sessions, call_id)
    made = await service.request_callback(sessions, number=PHONE, reason="abandoned",
                                          consultation_id=consultation_id, language="ko",
                                          queued_at=ABANDONED_AT, waited_s=40.0)
    return made.request.id


async def test_agents_see_pending_callbacks_and_the_callback_pop(desk: Desk) -> None:  # noqa: F811
    request_id = await _missed_call(desk.sessions, "missed-1")
    client, csrf = await sign_in(desk, "agent1")
    listed = await (await client.get("/desk/callbacks")).json()
    [line] = listed["callbacks"]
    assert (line["id"], line["reason"], line["status"]) == (request_id, "abandoned", "pending")
    assert line["caller_number"] == mask_phone(PHONE, "agent") != PHONE
    assert "call_id" not in line

    # The callback rings agent1: the pop says why, when and how long, and what they did.
    ws = await client.ws_connect("/desk/ws", headers={"Origin": desk.origin})
    await service.begin_attempt(desk.sessions, request_id)
    callback_call = "callback-1"
    recorder = ConsultationRecorder(desk.sessions)  # the service records every call
    recorder.start()
    for event in (CallStep(callback_call, CallbackDialling(request_id, 1, "abandoned",
                                                           "agent_first", 1)),
                  CallStarted(callback_call, PHONE, "callback", "Local/1@x-1;2")):
        await recorder.handle(event)
        await desk.hub.handle(event)
    await recorder.close()
    await desk.hub.handle(AgentAnswered(callback_call, "hotline", "PJSIP/2001", "2001", "王芳",
                                        PHONE, "callback", "Local/1@x-1;2"))
    pop = (await message(ws, "pop"))["call"]["pop"]
    card = pop["callback"]
    assert (card["request_id"], card["reason"], card["attempt"], card["waited_s"]) == (
        request_id, "abandoned", 1, 40.0)
    assert card["reason_label"] == "排队时挂机"  # in the desk's language (the default)
    assert card["called_at"] == ABANDONED_AT.isoformat()
    assert [t["text"] for t in card["transcript"]] == [  # in the desk's language
        "语言：韩语（来自按键）", "来电诉求：人工服务（通过按键）", "转至人工坐席",
        "来电人在等待中挂机"]

    status, recorded = await post(client, csrf, f"/desk/calls/{callback_call}/callback-outcome",
                                  outcome="wrong_number")
    assert status == 200, recorded
    assert (recorded["callback"]["status"], recorded["callback"]["outcome"]) == (
        "failed", "wrong_number")
    status, error = await post(client, csrf, f"/desk/calls/{callback_call}/callback-outcome",
                               outcome="maybe")
    assert status == 400 and error["error"]["code"] == "invalid_callback_outcome"
    [entry] = await audit.entries(desk.sessions, object_type="callback_request")
    assert (entry.actor, entry.action) == ("agent:agent1", "callback_outcome")
    assert (await (await client.get("/desk/callbacks")).json())["callbacks"] == []
    # A call that is no callback takes no callback outcome.
    other, other_csrf = await sign_in(desk, "agent2")
    status, error = await post(other, other_csrf,
                               f"/desk/calls/{callback_call}/callback-outcome",
                               outcome="reached")
    assert status == 404, error
    await ws.close()


async def test_supervisors_cancel_and_reassign_callbacks(console: Console) -> None:  # noqa: F811
    first = await _missed_call(console.sessions, "missed-1")
    second = (await service.request_callback(console.sessions, number="13900139000",
                                             reason="closed")).request.id
    client, csrf = await console.sign_in("supervisor1")
    page = await client.get("/console/callbacks")
    html = await page.text()
    assert page.status == 200 and PHONE in html and f'id="callback-{first}"' in html
    assert html.index(f'id="callback-{first}"') < html.index(f'id="callback-{second}"')
    board = await (await client.get("/console/callbacks.json")).json()
    assert board["pending"] == 2 and board["callbacks"][0]["caller_number"] == PHONE

    moved = await client.post(f"/console/callbacks/{first}/reassign",
                              data={"csrf": csrf, "agent": "agent2"}, allow_redirects=False)
    assert moved.status == 303 and moved.headers["Location"].endswith(f"#callback-{first}")
    assert (await service.get_callback(console.sessions, first)).assigned_agent == "agent2"
    cancelled = await client.post(f"/console/callbacks/{second}/cancel",
                                  data={"csrf": csrf, "note": "spam"}, allow_redirects=False)
    assert cancelled.status == 303
    view = await service.get_callback(console.sessions, second)
    assert (view.status, view.cancelled_by, view.note) == ("cancelled", "agent:supervisor1",
                                                          "spam")
    again = await client.post(f"/console/callbacks/{second}/cancel", data={"csrf": csrf},
                              allow_redirects=False)
    assert again.status == 409
    missing = await client.post("/console/callbacks/999/cancel", data={"csrf": csrf},
                                allow_redirects=False)
    assert missing.status == 404
    entries = await audit.entries(console.sessions, object_type="callback_request")
    assert sorted((e.action, e.object_id, e.actor) for e in entries) == [
        ("callback_cancel", str(second), "agent:supervisor1"),
        ("callback_reassign", str(first), "agent:supervisor1")]
    assert all(e.source and e.web_session for e in entries)
    html = await (await client.get("/console/callbacks")).text()
    assert f'id="callback-{second}" data-status="cancelled"' in html
