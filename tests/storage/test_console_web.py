"""The supervisor console's web side over a real database (SQLite and PostgreSQL): sign-in,
session expiry, the follow-up queue's forms, CSV export, a consultation's record and its
recording (Range requests), the audit trail of all of it, and escaping of callers' text."""

from __future__ import annotations

import csv
import io
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from crm.agents import accounts as agents
from crm.audit import log as audit
from crm.consultations.recorder import apply_event
from crm.demo_data import seed_demo
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory
from crm.storage.recordings import RecordingStore
from crm.surveys.service import record_comment, record_transcript
from crm.telephony.events import AgentStatusChanged, CallEnded, CallerQueued, CallStarted, CallStep
from crm.telephony.steps import RecordingStarted, SpeechHeard
from crm.web.app import HealthReport, create_app
from crm.web.console.app import ConsoleDeps
from tests.console_data import Seeded, seed_surveys

PASSWORD = "console-test-pw"
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
WAV = b"RIFF" + (36 + 16).to_bytes(4, "little") + b"WAVEfmt " + bytes(range(40))


@dataclass
class Console:
    sessions: SessionFactory
    server: TestServer
    seeded: Seeded
    monitor: Path
    deps: ConsoleDeps
    clients: list[TestClient] = field(default_factory=list)
    passwords: set[str] = field(default_factory=set)

    async def password(self, login: str) -> None:
        """Give a demo account the test password (argon2 is slow: only those who sign in)."""
        if login not in self.passwords:
            await agents.set_password(self.sessions, login, PASSWORD)
            self.passwords.add(login)

    async def client(self) -> TestClient:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def sign_in(self, login: str = "supervisor1") -> tuple[TestClient, str]:
        await self.password(login)
        client = await self.client()
        form = await client.get("/console/login")
        response = await client.post("/console/login", data={
            "csrf": _csrf(await form.text()), "login": login, "password": PASSWORD})
        assert response.status == 200 and str(response.url).endswith("/console/")
        return client, _csrf(await response.text())


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


@pytest.fixture
async def console(sessions: SessionFactory, db_url: str,
                  tmp_path: Path) -> AsyncIterator[Console]:
    await seed_demo(db_url)
    seeded = await seed_surveys(sessions, TZ)
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    wallboard = Wallboard(sessions, queue="hotline", tz=TZ)
    await wallboard.start()
    comments = tmp_path / "survey-comments"
    comments.mkdir()
    deps = ConsoleDeps(sessions, "console-secret", wallboard=wallboard,
                       recordings=RecordingStore(monitor), survey_comments=comments, tz=TZ,
                       idle_timeout=600)
    server = TestServer(create_app(sessions, lambda: HealthReport("logged_in", 1, 0, 0),
                                   console=deps))
    state = Console(sessions, server, seeded, monitor, deps)
    try:
        yield state
    finally:
        await wallboard.close()  # closes the wallboards' websockets: the server stops at once
        for client in state.clients:
            await client.close()
        await server.close()


async def _actions(sessions: SessionFactory, object_type: str) -> list[audit.AuditEntry]:
    return await audit.entries(sessions, object_type=object_type, limit=500)


async def test_agents_are_refused_and_sessions_end(console: Console,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await console.password("agent1")
    client = await console.client()
    form = await client.get("/console/login")
    assert "script-src 'self'" in form.headers["Content-Security-Policy"]
    refused = await client.post("/console/login", data={
        "csrf": _csrf(await form.text()), "login": "agent1", "password": PASSWORD})
    assert refused.status == 403 and "supervisors and admins" in await refused.text()
    page = await client.get("/console/dashboard?since=2026-11-01", allow_redirects=False)
    assert page.status == 303
    location = URL(page.headers["Location"])
    assert location.path == "/console/login"
    assert location.query["next"] == "/console/dashboard?since=2026-11-01"
    form = await client.get(page.headers["Location"])
    await console.password("supervisor1")
    back = await client.post("/console/login", data={
        "csrf": _csrf(await form.text()), "login": "supervisor1", "password": PASSWORD,
        "next": "/console/dashboard?since=2026-11-01"}, allow_redirects=False)
    assert back.headers["Location"] == "/console/dashboard?since=2026-11-01"
    for elsewhere in ("https://evil.example/", "//evil.example/console/", "/desk/"):
        form = await client.get(f"/console/login?next={elsewhere}", allow_redirects=False)
        assert form.headers["Location"] == "/console/"  # signed in already: not elsewhere

    client, _ = await console.sign_in()
    cookie = next(c for c in client.session.cookie_jar if c.key == "hotline_console")
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert (await client.get("/console/dashboard")).status == 200
    import crm.web.console.auth as auth_module

    later = auth_module.time.time() + console.deps.idle_timeout + 1
    monkeypatch.setattr(auth_module.time, "time", lambda: later)
    expired = await client.get("/console/dashboard", allow_redirects=False)
    assert expired.status == 303 and expired.headers["Location"].startswith("/console/login?")
    assert (await client.get("/console/surveys.csv")).status == 401
    actions = {e.action for e in await _actions(console.sessions, "agent")}
    assert {"console.login_refused", "console.login"} <= actions


async def test_the_follow_up_queue_is_assigned_and_closed_with_a_note(console: Console) -> None:
    client, csrf = await console.sign_in()
    page = await (await client.get("/console/follow-ups")).text()
    ids = re.findall(r'id="follow-up-(\d+)" data-status="open" data-score="(\d)"', page)
    assert sorted(score for _, score in ids) == ["1", "2"]
    item = ids[0][0]

    forged = await client.post(f"/console/follow-ups/{item}/assign",
                               data={"assignee": "admin"})
    assert forged.status == 403
    assigned = await client.post(f"/console/follow-ups/{item}/assign",
                                 data={"csrf": csrf, "assignee": "admin",
                                       "back": "https://evil.example/"}, allow_redirects=False)
    assert assigned.status == 303
    assert assigned.headers["Location"] == f"/console/follow-ups#follow-up-{item}"
    mine = await (await client.get("/console/follow-ups?assignee=admin")).text()
    assert f'id="follow-up-{item}"' in mine and 'data-assignee="admin"' in mine

    empty = await client.post(f"/console/follow-ups/{item}/close",
                              data={"csrf": csrf, "note": "  "})
    assert empty.status == 400 and "需要填写备注" in await empty.text()  # needs a note
    closed = await client.post(f"/console/follow-ups/{item}/close",
                               data={"csrf": csrf, "note": "已回电致歉 <i>called back</i>",
                                     "back": "/console/follow-ups?status=all"})
    assert closed.status == 200 and str(closed.url).endswith("/console/follow-ups?status=all")
    text = await closed.text()
    assert "已回电致歉 &lt;i&gt;called back&lt;/i&gt;" in text and "<i>called" not in text
    again = await client.post(f"/console/follow-ups/{item}/close",
                              data={"csrf": csrf, "note": "twice"})
    assert again.status == 409
    still_open = await (await client.get("/console/follow-ups")).text()
    assert f'id="follow-up-{item}"' not in still_open
    actions = [e.action for e in await _actions(console.sessions, "survey_follow_up")]
    assert {"survey_follow_up.assign", "survey_follow_up.close",
            "survey_follow_up.search"} <= set(actions)


async def test_csv_export_of_a_filtered_list_is_audited_and_safe(console: Console) -> None:
    low = console.seeded.surveys[2]  # the score 1
    await record_transcript(console.sessions, low, '=HYPERLINK("http://evil.example","点我")')
    client, _ = await console.sign_in()
    response = await client.get("/console/surveys.csv?max_score=2")
    assert response.status == 200 and response.content_type == "text/csv"
    assert 'filename="surveys_' in response.headers["Content-Disposition"]
    body = (await response.read()).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body[1:])))
    assert sorted(r["score"] for r in rows) == ["1", "2"]
    assert {r["agent_name"] for r in rows} == {"Kim Jisoo"}
    formula = next(r for r in rows if r["score"] == "1")["comment_text"]
    assert formula.startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    calls = await client.get("/console/consultations.csv?department=housing")
    assert len(list(csv.DictReader(io.StringIO((await calls.text())[1:])))) == 3
    exports = [e for e in await _actions(console.sessions, "survey") if e.action == "export.csv"]
    assert exports[0].detail["rows"] == 2 and exports[0].detail["query"]["max_score"] == "2"
    assert exports[0].actor == "agent:supervisor1"


async def _call_with_recording(console: Console, announced: str | None) -> int:
    call_id = str(uuid.uuid4())
    async with console.sessions() as session, session.begin():
        await apply_event(session, CallStarted(call_id, "13900139000",
                                               '<script>alert("x")</script>', "PJSIP/gw-2"))
        await apply_event(session, CallStep(call_id, SpeechHeard("<img src=x onerror=alert(1)>")))
        if announced is not None:
            await apply_event(session, CallStep(call_id, RecordingStarted(announced)))
        await apply_event(session, CallEnded(call_id, "agent", "16"))
    (console.monitor / f"{call_id}.wav").write_bytes(WAV)
    async with console.sessions() as session:
        from sqlalchemy import select

        from crm.storage.models import Consultation

        return int(await session.scalar(select(Consultation.id)
                                        .where(Consultation.call_id == call_id)))


async def test_a_consultation_and_its_recording_are_audited_and_ranges_work(
        console: Console) -> None:
    consultation = await _call_with_recording(console, None)
    client, _ = await console.sign_in()
    page = await client.get(f"/console/consultations/{consultation}")
    html = await page.text()
    assert page.status == 200 and "media-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert f'src="/console/consultations/{consultation}/recording"' in html

    whole = await client.get(f"/console/consultations/{consultation}/recording")
    assert whole.status == 200 and whole.content_type == "audio/wav"
    assert await whole.read() == WAV and whole.headers["Accept-Ranges"] == "bytes"
    part = await client.get(f"/console/consultations/{consultation}/recording",
                            headers={"Range": "bytes=4-11"})
    assert part.status == 206 and await part.read() == WAV[4:12]
    assert part.headers["Content-Range"] == f"bytes 4-11/{len(WAV)}"
    entries = await audit.entries(console.sessions, object_type="consultation",
                                  object_id=consultation)
    assert [e.action for e in entries] == ["recording.range", "recording.play",
                                           "consultation.read"]
    assert entries[0].detail["range"] == "bytes=4-11" and entries[0].actor == "agent:supervisor1"

    listed = await (await client.get("/console/consultations?phone=13900139000")).text()
    assert "&lt;script&gt;" in listed and "<script>alert" not in listed
    seeded = console.seeded.consultations[0]
    record = await (await client.get(f"/console/consultations/{seeded}")).text()
    assert "来电咨询 &lt;b&gt;repair&lt;/b&gt;" in record  # the agent's note, escaped
    assert 'data-score="5"' in record and "本次通话没有录音" in record


async def test_recordings_stay_inside_the_monitor_directory(console: Console) -> None:
    secret = console.monitor.parent / "secret.wav"
    secret.write_bytes(WAV)
    escaping = await _call_with_recording(console, "/var/spool/asterisk/monitor/../secret.wav")
    (console.monitor / "x").mkdir()
    client, _ = await console.sign_in()
    response = await client.get(f"/console/consultations/{escaping}/recording")
    assert response.status == 200  # not the announced file outside: <call_id>.wav instead
    store = console.deps.recordings
    assert store is not None
    assert store.locate("x", "/var/spool/asterisk/monitor/../secret.wav") is None
    assert store.locate("../secret", None) is None
    assert store.locate("call", "/etc/passwd") is None
    assert (await client.get("/console/consultations/999999/recording")).status == 404


async def test_the_audit_log_page_is_for_admins(console: Console) -> None:
    supervisor, _ = await console.sign_in()
    refused = await supervisor.get("/console/audit")
    assert refused.status == 403 and "需要管理员" in await refused.text()  # needs admin
    admin, _ = await console.sign_in("admin")
    page = await admin.get("/console/audit?action=console.login")
    html = await page.text()
    assert page.status == 200
    assert html.count('data-action="console.login"') == 2  # supervisor1 and admin
    exported = await admin.get("/console/audit.csv?actor=agent:")
    rows = list(csv.DictReader(io.StringIO((await exported.text())[1:])))
    assert rows and all(r["actor"].startswith("agent:") for r in rows)
    reads = {e.action for e in await _actions(console.sessions, "audit")}
    assert reads == {"audit.read", "export.csv"}


async def test_the_wallboard_socket_pushes_changes_to_signed_in_supervisors(
        console: Console) -> None:
    anonymous = await console.client()
    origin = f"http://{console.server.host}:{console.server.port}"
    assert (await anonymous.get("/console/wallboard/ws", headers={"Origin": origin})).status == 401
    client, _ = await console.sign_in()
    elsewhere = await client.get("/console/wallboard/ws", headers={
        "Origin": "http://evil.example", "Upgrade": "websocket", "Connection": "Upgrade"})
    assert elsewhere.status == 403
    ws = await client.ws_connect("/console/wallboard/ws", headers={"Origin": origin})
    first = await ws.receive_json(timeout=5)
    assert first["type"] == "wallboard" and first["waiting"]["count"] == 0
    board = console.deps.wallboard
    assert board is not None
    await board.handle(AgentStatusChanged("PJSIP/2001", "2001", "hotline", "available", False,
                                          "王芳"))
    await board.handle(CallerQueued("call-w", "hotline", 1, channel="PJSIP/gw-w"))
    while (message := await ws.receive_json(timeout=5))["waiting"]["count"] == 0:
        pass
    assert message["waiting"]["count"] == 1 and message["agents"]["available"] == 1
    assert message["members"] == [{"name": "王芳", "extension": "2001", "status": "available"}]
    state = await (await client.get("/console/wallboard/state")).json()
    assert state["version"] == message["version"]
    await ws.close()


async def test_a_spoken_survey_comment_plays_for_supervisors_and_is_audited(
        console: Console) -> None:
    comments = console.deps.survey_comments
    assert comments is not None
    [first, second, *_] = console.seeded.surveys
    (comments / "2026-11-22").mkdir()
    inside = comments / "2026-11-22" / "comment-1.wav"
    inside.write_bytes(WAV)
    outside = comments.parent / "elsewhere.wav"
    outside.write_bytes(WAV)
    await record_comment(console.sessions, first, path=str(inside), seconds=3.2)
    await record_comment(console.sessions, second, path=str(comments / ".." / "elsewhere.wav"),
                         seconds=1.0)
    client, _ = await console.sign_in()
    html = await (await client.get(
        f"/console/consultations/{console.seeded.consultations[0]}")).text()
    assert f'src="/console/surveys/{first}/comment"' in html

    whole = await client.get(f"/console/surveys/{first}/comment")
    assert whole.status == 200 and whole.content_type == "audio/wav"
    assert await whole.read() == WAV
    part = await client.get(f"/console/surveys/{first}/comment", headers={"Range": "bytes=4-7"})
    assert part.status == 206 and await part.read() == WAV[4:8]
    entries = await audit.entries(console.sessions, object_type="survey", object_id=first)
    assert [e.action for e in entries] == ["survey_comment.range", "survey_comment.play"]
    assert entries[1].detail["consultation"] == console.seeded.consultations[0]
    assert entries[1].actor == "agent:supervisor1"

    # A stored path that leads out of the comment directory is never served.
    assert (await client.get(f"/console/surveys/{second}/comment")).status == 404
    html = await (await client.get(
        f"/console/consultations/{console.seeded.consultations[1]}")).text()
    assert f"/console/surveys/{second}/comment" not in html and "no-comment-audio" in html
    assert (await client.get("/console/surveys/999999/comment")).status == 404
    assert not await audit.entries(console.sessions, object_type="survey", object_id=second)
