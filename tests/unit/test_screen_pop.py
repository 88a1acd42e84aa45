"""Screen pop building blocks without a database: the IVR summary, masking per viewer, and the
AMI queue events the pop is driven by."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.agents.auth import mask_phone
from crm.cases.numbers import make_case_number
from crm.cases.service import CaseView
from crm.consultations.service import ConsultationDetail
from crm.live.screen_pop import IvrSummary, ResidentCard, ScreenPop, summarise_ivr
from crm.telephony.events import (
    SECRET_INPUT,
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    AgentRingStopped,
    AgentStatusChanged,
    CallerAbandoned,
    CallerQueued,
    CallStep,
    redact_secret_inputs,
)
from hotline.settings import REPO_ROOT
from ivr.ami.codec import AmiEvent, AmiStreamDecoder, Headers
from ivr.asterisk.queue_tracker import extension_of, member_status, queue_event
from ivr.flows.menu import Keys, Speech
from ivr.menu_call import secret_input
from tests.ami_replay import load_session

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
CASE = make_case_number(date(2026, 11, 20), 1)


def step(kind: str, **detail: object) -> dict[str, object]:
    return {"at": NOW.isoformat(), "kind": kind, "detail": detail}


IVR_STEPS = [
    step("ivr_connected", caller_known=True),
    step("language", language="cmn", by="profile"),
    step("prompt", prompt="greeting", language="cmn"),
    step("prompt", prompt="main_menu", language="cmn"),
    step("keys", keys="1"),
    step("intent", intent="check_status", by="keys"),
    step("keys", keys=f"{CASE}#"),
    step("case_number_confirmed", number=CASE),
    step("case_lookup", number=CASE, found=True),
    step("verified", by="calling_number"),
    step("told", case=CASE, stage="in_progress", verified=True),
    step("prompt", prompt="after_status_menu", language="cmn"),
    step("keys", keys="2"),
    step("route", route="agent", reason="after status"),
    step("agent_ringing", agent="2001"),
    step("recording", file="/var/spool/asterisk/monitor/x.wav"),
]


def test_ivr_summary_names_the_case_verification_and_path() -> None:
    summary = summarise_ivr(IVR_STEPS)
    assert summary.asked_case == CASE
    assert summary.verified is True and summary.verified_by == "calling_number"
    assert summary.language == "cmn"
    assert summary.path == ("greeting", "main_menu", "after_status_menu")
    assert summary.recording == "/var/spool/asterisk/monitor/x.wav"
    texts = [line.text for line in summary.transcript]
    assert f"Told case {CASE} is In handling (full status)" in texts  # codes by their names
    assert "Routed to an agent (after the status)" in texts
    assert "Caller verified by calling number" in texts
    kinds = {line.kind for line in summary.transcript}
    assert not kinds & {"prompt", "ivr_connected", "agent_ringing", "recording"}


def test_ivr_summary_of_a_failed_verification_and_speech() -> None:
    summary = summarise_ivr([
        step("speech", text="查询 工单", intent="check_status", confidence=0.9),
        step("case_lookup", number=CASE, found=True),
        step("verified", by="last4", result=False),
        step("told", case=CASE, stage="accepted", verified=False),
    ])
    assert summary.verified is False and summary.verified_by == "last4"
    assert summary.transcript[0].text == "Said: “查询 工单” → case status"
    assert "(stage only)" in summary.transcript[-1].text


def test_ivr_summary_ignores_an_invalid_case_number_and_may_know_nothing() -> None:
    assert summarise_ivr([step("case_number_confirmed", number="123")]).asked_case is None
    empty = summarise_ivr([])
    assert empty == IvrSummary()


def _case(phone: str) -> CaseView:
    return CaseView(number=CASE, stage="in_progress", category_code="repair",
                    category_name="房屋维修", department_code="housing",
                    department_name="住房保障科", description="楼道灯不亮", contact_phone=phone,
                    address="幸福社区3号楼", resident_name="张三", resident_id_last4="2316",
                    deadline=NOW + timedelta(days=5), latest_update=None, created_at=NOW,
                    updated_at=NOW)


def _pop(caller: str = "13800138000", case_phone: str = "13800138000") -> ScreenPop:
    recent = ConsultationDetail(
        id=7, call_id="old", caller_number=caller, caller_name="张三", started_at=NOW,
        ended_at=NOW, duration_s=30.0, outcome="to_agent", ivr_route="agent",
        hangup_cause="16", hangup_party="caller", notes=None, disposition="information_given",
        agent_login="agent1",
        agent_name="王芳", resident_name="张三", resident_id_last4="2316", case_numbers=(CASE,),
        steps=())
    return ScreenPop("call-1", 9, caller, "<script>alert(1)</script>",
                     ResidentCard(3, "张三", "幸福社区", "cmn", "2316"), summarise_ivr(IVR_STEPS),
                     _case(case_phone), (), (recent,), "幸福社区3号楼")


def test_agents_see_masked_phones_until_the_caller_is_connected_to_them() -> None:
    ringing = _pop().to_json(viewer_role="agent")
    assert ringing["caller"]["number"] == "138********"
    assert ringing["case"]["contact_phone"] == "138********"
    assert ringing["recent"][0]["caller_number"] == "138********"
    assert ringing["new_case"]["contact_phone"] is None
    assert ringing["new_case"]["contact_phone_hint"] == "138********"
    assert ringing["resident"]["id_number"] == "****2316"
    connected = _pop().to_json(viewer_role="agent", reveal=True)
    assert connected["caller"]["number"] == "13800138000"
    assert connected["case"]["contact_phone"] == "13800138000"
    assert connected["new_case"]["contact_phone"] == "13800138000"
    assert connected["resident"]["id_number"] == "****2316"  # never whole, for anyone


def test_revealing_the_caller_does_not_reveal_other_numbers() -> None:
    pop = _pop(case_phone="13912345678").to_json(viewer_role="agent", reveal=True)
    assert pop["caller"]["number"] == "13800138000"
    assert pop["case"]["contact_phone"] == "139********"


def test_supervisors_see_numbers_and_names_come_through_as_data() -> None:
    pop = _pop().to_json(viewer_role="supervisor")
    assert pop["caller"]["number"] == "13800138000"
    assert pop["caller"]["name"] == "<script>alert(1)</script>"  # escaped where it is shown
    assert pop["case"]["history"] == [] and pop["case"]["next_stages"] == ["resolved"]
    assert _pop().audit_detail == {"call_id": "call-1", "resident": 3, "case": CASE,
                                   "consultations": [7]}


# -- the verification secret is never shown -----------------------------------------------------
@pytest.mark.parametrize(("phone", "role", "reveal", "shown"), [
    ("13800138000", "agent", False, "138********"),
    ("13800138000", "agent", True, "13800138000"),
    ("13800138000", "supervisor", False, "13800138000"),
    ("13800138000", "admin", False, "13800138000"),
    ("13800138000", "someone", False, "138********"),
    ("+8613800138000", "agent", False, "+86***********"),
    ("02512345678", "agent", False, "025********"),
    ("1234567", "agent", False, "123****"),
    ("12345", "agent", False, "1****"),
    ("2001", "agent", False, "****"),
    ("", "agent", False, ""),
    (None, "agent", False, None),
])
def test_mask_phone(phone: str | None, role: str, reveal: bool, shown: str | None) -> None:
    assert mask_phone(phone, role, reveal=reveal) == shown


@given(st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True))
def test_no_agent_mask_shows_any_of_the_last_four_digits(phone: str) -> None:
    masked = mask_phone(phone, "agent")
    assert masked is not None and len(masked) == len(phone)
    assert set(masked[-4:]) == {"*"}
    assert masked.rstrip("*") == phone[:len(masked.rstrip("*"))]  # the shown part is the start


def test_secret_answers_are_recorded_as_their_length_only() -> None:
    assert secret_input(Keys("8000#")).detail() == {"secret": SECRET_INPUT, "length": 4}
    spoken = secret_input(Speech("八零零零", digits="8000", confidence=0.7)).detail()
    assert spoken == {"secret": SECRET_INPUT, "length": 4, "confidence": 0.7}
    asked = secret_input(Speech("转人工 八零", intent="agent", digits="80")).detail()
    assert "八零" not in json.dumps(asked, ensure_ascii=False) and asked["intent"] == "agent"


LEGACY_STEPS = [  # as the IVR stored them before it redacted verification digits
    step("case_lookup", number=CASE, found=True),
    step("prompt", prompt="ask_phone_last4", language="cmn"),
    step("keys", keys="80#"),
    step("no_match", state="verify_last4", count=1),
    step("prompt", prompt="ask_phone_last4_short", language="cmn"),
    step("barge_in", prompt="ask_phone_last4_short"),
    step("speech", text="八零零零", digits="8000", confidence=0.9, intent=None),
    step("verified", by="last4"),
    step("told", case=CASE, stage="in_progress", verified=True),
    step("keys", keys="3"),
]


def test_verification_digits_in_old_steps_are_taken_out() -> None:
    scrubbed = redact_secret_inputs(LEGACY_STEPS)
    assert [s["detail"] for s in scrubbed if s["kind"] in ("keys", "speech")] == [
        {"secret": SECRET_INPUT, "length": 2}, {"secret": SECRET_INPUT, "length": 4},
        {"keys": "3"}]
    text = json.dumps([s["detail"] for s in scrubbed], ensure_ascii=False)
    assert "8000" not in text and "80#" not in text and "八零" not in text
    assert LEGACY_STEPS[2]["detail"] == {"keys": "80#"}  # the input is not changed
    # Keys typed ahead of the question (no prompt step) are caught by what follows them.
    typed_ahead = redact_secret_inputs([step("case_lookup", number=CASE, found=True),
                                        step("keys", keys="8000"),
                                        step("verified", by="last4", result=False)])
    assert typed_ahead[1]["detail"] == {"secret": SECRET_INPUT, "length": 4}
    assert redact_secret_inputs(IVR_STEPS) == IVR_STEPS  # nothing secret there


def test_the_pop_says_digits_were_entered_and_the_outcome_never_the_digits() -> None:
    summary = summarise_ivr(LEGACY_STEPS)
    texts = [line.text for line in summary.transcript]
    assert "Verification digits keyed (2 digits, not recorded)" in texts
    assert "Verification digits said (4 digits, not recorded)" in texts
    assert "Verification by the last four digits of the contact phone: ok" in texts
    assert summary.verified is True and summary.verified_by == "last4"
    assert not any("8000" in t or "80#" in t or "八" in t for t in texts)
    now = summarise_ivr([step("keys", secret=SECRET_INPUT, length=4),
                         step("verified", by="last4", result=False, length=4)])
    assert [line.text for line in now.transcript] == [
        "Verification digits keyed (4 digits, not recorded)",
        "Verification by the last four digits of the contact phone: failed"]
    locked = summarise_ivr([step("verified", result=False, reason="verification_locked")])
    assert locked.verified is False and "too many failed verifications" in (
        locked.transcript[0].text)


def test_an_agents_pop_shows_no_last_four_digits_anywhere() -> None:
    pop = ScreenPop("call-1", 9, "13911112222", "王五", None, summarise_ivr(LEGACY_STEPS),
                    _case("13800138000"))
    for reveal in (False, True):  # revealing the caller does not reveal the case's contact
        shown = json.dumps(pop.to_json(viewer_role="agent", reveal=reveal), ensure_ascii=False)
        assert "8000" not in shown.replace(CASE, "|") and "八零" not in shown


# -- AMI queue events -> bus events -------------------------------------------------------------
def _event(name: str, *pairs: tuple[str, str]) -> AmiEvent:
    return AmiEvent(name, Headers([("Event", name), *pairs]))


def test_member_interfaces_and_states() -> None:
    assert extension_of("PJSIP/2001") == "2001"
    assert extension_of("Local/2002@hotline-agents/n") == "2002"
    assert extension_of("bogus") is None
    assert member_status(1, False, False) == "available"
    assert member_status(6, True, False) == "ringing"
    assert member_status(2, True, True) == "on_call"
    assert member_status(1, True, False) == "paused"
    assert member_status(5, False, False) == "unavailable"


def test_queue_member_events_become_agent_states() -> None:
    status = queue_event(_event("QueueMemberStatus", ("Queue", "hotline"),
                                ("Interface", "PJSIP/2001"), ("MemberName", "王芳"),
                                ("Status", "6"), ("Paused", "0"), ("InCall", "0")))
    assert status == AgentStatusChanged("PJSIP/2001", "2001", "hotline", "ringing", False, "王芳",
                                        at=status.at)
    removed = queue_event(_event("QueueMemberRemoved", ("Queue", "hotline"),
                                 ("Interface", "PJSIP/2001"), ("MemberName", "王芳")))
    assert isinstance(removed, AgentStatusChanged) and removed.status == "logged_out"
    paused = queue_event(_event("QueueMemberPause", ("Queue", "hotline"),
                                ("Interface", "PJSIP/2002"), ("Status", "1"), ("Paused", "1")))
    assert isinstance(paused, AgentStatusChanged) and paused.status == "paused" and paused.paused
    listed = queue_event(_event("QueueMember", ("Queue", "hotline"), ("Location", "PJSIP/2003"),
                                ("Name", "陈静"), ("Status", "5"), ("Paused", "0")))
    assert isinstance(listed, AgentStatusChanged) and listed.status == "unavailable"


def test_a_recorded_queue_call_becomes_queue_events() -> None:
    decoder = AmiStreamDecoder()
    decoder.feed(b"Asterisk Call Manager/11.0.0\r\n")
    raw = load_session(REPO_ROOT / "tests/data/ami/queue_call.txt")
    events = [e for e in (queue_event(m) for m in decoder.feed(raw)) if e is not None]
    call = "c7d4e2a0-5b1f-4e0a-9a61-2f0d3b8c9e11"
    kinds = [type(e) for e in events]
    assert kinds == [CallerQueued, AgentRinging, AgentAnswered, AgentCallEnded]
    joined, ringing, answered, ended = events
    assert isinstance(ringing, AgentRinging) and ringing.call_id == call
    assert (ringing.extension, ringing.member_name, ringing.caller_name) == ("2001", "王芳", "张三")
    assert ringing.channel == "PJSIP/1001-00000000"
    assert ringing.agent_channel == "PJSIP/2001-00000001"
    assert isinstance(answered, AgentAnswered) and answered.hold_time_s == 12
    assert isinstance(ended, AgentCallEnded) and (ended.talk_time_s, ended.reason) == (95, "caller")
    assert isinstance(joined, CallerQueued) and joined.position == 1


def test_abandon_no_answer_and_recording_events() -> None:
    var = ("ChanVariable", "CALL_ID=abc")
    abandoned = queue_event(_event("QueueCallerAbandon", var, ("Queue", "hotline"),
                                   ("Position", "1"), ("OriginalPosition", "2"),
                                   ("HoldTime", "14")))
    assert abandoned == CallerAbandoned("abc", "hotline", 1, 2, 14, at=abandoned.at)
    no_answer = queue_event(_event("AgentRingNoAnswer", var, ("Queue", "hotline"),
                                   ("Interface", "PJSIP/2002"), ("RingTime", "15000")))
    assert isinstance(no_answer, AgentRingStopped) and no_answer.ring_time_s == 15
    recording = queue_event(_event("UserEvent", ("UserEvent", "HotlineRecording"),
                                   ("CallId", "abc"), ("File", "/spool/monitor/abc.wav")))
    assert isinstance(recording, CallStep) and recording.kind == "recording"
    assert recording.detail["file"] == "/spool/monitor/abc.wav"
    assert queue_event(_event("AgentCalled", ("Queue", "hotline"))) is None  # no CALL_ID
    assert queue_event(_event("Newchannel", var)) is None


def test_a_nodes_queue_and_recording_events_name_it() -> None:
    """AMI's SystemName (a cluster's Asterisk) is the node of the queue events and of the
    recording step; one box (no SystemName) names none."""
    var, node = ("ChanVariable", "CALL_ID=abc"), ("SystemName", "media-2")
    for name in ("QueueCallerJoin", "AgentCalled", "AgentRingNoAnswer", "AgentConnect",
                 "AgentComplete", "QueueCallerAbandon"):
        on_node = queue_event(_event(name, var, ("Queue", "hotline"), node))
        one_box = queue_event(_event(name, var, ("Queue", "hotline")))
        assert on_node is not None and one_box is not None
        assert (on_node.node, one_box.node) == ("media-2", None), name  # type: ignore[union-attr]
    recording = queue_event(_event("UserEvent", ("UserEvent", "HotlineRecording"),
                                   ("CallId", "abc"), ("File", "/spool/monitor/abc.wav"), node))
    assert isinstance(recording, CallStep) and recording.node == "media-2"
