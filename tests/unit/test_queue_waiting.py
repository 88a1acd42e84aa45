"""Waiting in the queue, without Asterisk: the rendered queues.conf / dialplan / pjsip /
musiconhold for [queue_wait] and [service_hours], the settings' validation, who hung up and
the cause, and the AMI translators (announcements, unreachable phones) fed recorded events.
The real-stack tests are tests/integration/test_queue_waiting.py."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentStatusChanged,
    CallEnded,
    CallStep,
)
from crm.telephony.steps import QueuePositionAnnounced, step_from_row
from hotline.asterisk.render import render_config
from hotline.asterisk.sounds import (
    HOLD_MUSIC_FILE,
    hold_tones,
    install_hold_music,
    sound_ref,
    ulaw,
)
from hotline.settings import Settings
from ivr.ami.codec import AmiEvent
from ivr.asterisk.call_tracker import CallTracker
from ivr.asterisk.hangup import HangupCauses, describe_cause, hangup_party
from ivr.asterisk.queue_announcements import QueueAnnouncements, is_hotline_queue
from ivr.asterisk.queue_tracker import QueueTracker
from speech.languages import LANGUAGES
from speech.queue_prompts import QUEUE_PROMPT_IDS, number_texts, queue_prompt_texts


def settings_with(**sections: Any) -> Settings:
    return Settings(
        asterisk={"softphone_password": "soft-pw-1", "agent_extensions": ["2001", "2002"],
                  "agent_passwords": {"2001": "agent-pw-1", "2002": "agent-pw-2"}},
        ami={"secret": "ami-secret-1"}, **sections)


def section(text: str, name: str) -> str:
    match = re.search(rf"^\[{re.escape(name)}\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert match, f"no [{name}] section"
    return match.group(1)


# --- rendering -------------------------------------------------------------------------------


def test_every_hotline_queue_inherits_the_waiting_options() -> None:
    config = render_config(settings_with(queue_wait={"announce_frequency": 45,
                                                     "callback_key": "7"}))
    queues = config["queues.conf"]
    assert re.search(r"^\[hotline\]\(hotline-queue\)$", queues, re.M)
    template = section(queues, "hotline-queue")
    for line in ("musicclass = hotline", "announce-frequency = 45",
                 "announce-position = yes", "announce-holdtime = yes",
                 "context = hotline-queue-keys", "joinempty = yes", "timeoutpriority = app",
                 "queue-thereare = hotline/queue-thereare",
                 "queue-thankyou = hotline/queue-thankyou"):
        assert re.search(rf"^{re.escape(line)}$", template, re.M), line
    keys = section(config["hotline.conf"], "hotline-queue-keys")
    assert keys.startswith("exten => 7,1,Set(CALLBACK_REASON=chosen)")
    assert "Goto(hotline-callback-offer,s,1)" in keys
    assert re.findall(r"^exten => ([^,]+),", keys, re.M) == ["7"]  # no other key leaves


def test_no_announcements_when_neither_position_nor_wait_is_said() -> None:
    config = render_config(settings_with(queue_wait={"announce_position": False,
                                                     "announce_holdtime": "no"}))
    template = section(config["queues.conf"], "hotline-queue")
    assert "announce-frequency = 0" in template and "announce-position = no" in template


def test_the_queue_times_out_at_the_maximum_wait_into_the_callback_offer() -> None:
    inbound = section(render_config(settings_with(queue_wait={"max_wait": 90}))["hotline.conf"],
                      "hotline-inbound")
    assert ("Queue(${HOTLINE_QUEUE},c,,,90,,,hotline-language,"
            "${FILTER(0123456789,${REQUEUE_POSITION})})") in inbound
    assert 'GotoIf($["${QUEUESTATUS}" = "TIMEOUT"]?max_wait)' in inbound
    assert re.search(r"n\(max_wait\),Set\(CALLBACK_REASON=max_wait\)\n same => n,"
                     r"Goto\(hotline-callback-offer,s,1\)", inbound)
    unlimited = render_config(settings_with(queue_wait={"max_wait": 0}))["hotline.conf"]
    assert ("Queue(${HOTLINE_QUEUE},c,,,,,,hotline-language,"
            "${FILTER(0123456789,${REQUEUE_POSITION})})") in unlimited
    # The caller's language is the queue's before it speaks (default Mandarin).
    assert inbound.index("Set(CHANNEL(language)=${IF(") < inbound.index("Queue(${HOTLINE_QUEUE}")


def test_a_line_open_around_the_clock_renders_no_closing_check() -> None:
    config = render_config(settings_with())
    assert "hotline-service-hours" not in config["hotline.conf"]


def test_closing_hours_and_holidays_are_rendered_with_the_zone() -> None:
    hours = {"timezone": "Asia/Shanghai",
             "weekly": {"mon": "08:30-12:00,13:30-18:00", "sat": "09:00-24:00", "sun": ""},
             "holidays": ["2026-10-01", "2026-10-02"]}
    config = render_config(settings_with(service_hours=hours))["hotline.conf"]
    inbound = section(config, "hotline-inbound")
    start = inbound.index("UserEvent(HotlineCallStart")
    assert start < inbound.index("Gosub(hotline-service-hours,s,1)") < inbound.index(
        "TryExec(AudioSocket")
    assert "Set(CALLBACK_REASON=closed)" in inbound
    assert inbound.index("Playback(hotline/closed)") < inbound.index(
        "Goto(hotline-callback-offer,s,1)")
    check = section(config, "hotline-service-hours")
    assert "STRFTIME(${EPOCH},Asia/Shanghai,%Y-%m-%d)" in check
    assert 'GotoIf($["${today}" = "2026-10-01"]?done)' in check
    assert 'GotoIf($["${today}" = "2026-10-02"]?done)' in check
    spans = re.findall(r"GotoIfTime\(([^,]+),(\w+),\*,\*,Asia/Shanghai\?open\)", check)
    # Asterisk's ranges exclude their end minute; 24:00 is written as 00:00 (wraps).
    assert spans == [("08:30-12:00", "mon"), ("13:30-18:00", "mon"), ("09:00-00:00", "sat")]
    assert check.index("GotoIf($") < check.index("GotoIfTime(")  # holidays win


def test_every_way_out_of_the_wait_reaches_the_one_callback_offer_with_its_reason() -> None:
    config = render_config(settings_with())["hotline.conf"]
    assert config.count("[hotline-callback-offer]") == 1
    offer = section(config, "hotline-callback-offer")
    assert "Reason: ${CALLBACK_REASON}" in offer
    keys = section(config, "hotline-queue-keys")
    inbound = section(config, "hotline-inbound")
    for context, reason in ((keys, "chosen"), (inbound, "max_wait")):
        assert f"Set(CALLBACK_REASON={reason})" in context
        assert context.index(f"Set(CALLBACK_REASON={reason})") < context.index(
            "Goto(hotline-callback-offer,s,1)", context.index(f"Set(CALLBACK_REASON={reason})"))


def test_the_hangup_handler_reports_party_source_and_cause() -> None:
    end = section(render_config(settings_with())["hotline.conf"], "hotline-call-end")
    assert ("UserEvent(HotlineCallEnd,CallId: ${CALL_ID},Route: ${IVR_ROUTE},"
            "Cause: ${HANGUPCAUSE},HangupSource: ${CHANNEL(hangupsource)},"
            "Party: ${HANGUP_PARTY}") in end
    inbound = section(render_config(settings_with())["hotline.conf"], "hotline-inbound")
    assert "n(ivr_end),Set(HANGUP_PARTY=ivr)" in inbound
    assert "Set(HANGUP_PARTY=agent)" in inbound


def test_agent_phones_are_qualified_and_hold_music_is_loaded() -> None:
    config = render_config(settings_with(queue_wait={"agent_qualify_frequency": 4,
                                                     "agent_qualify_timeout": 1.5}))
    pjsip = config["pjsip.conf"]
    for ext in ("2001", "2002"):
        aor = re.search(rf"^\[{ext}\]\(aor-phone\)\n(.*?)(?=^\[|\Z)", pjsip, re.M | re.S)
        assert aor and "qualify_frequency = 4" in aor.group(1)
        assert "qualify_timeout = 1.5" in aor.group(1)
    softphone = re.search(r"^\[1001\]\(aor-phone\)\n(.*?)(?=^\[|\Z)", pjsip, re.M | re.S)
    assert softphone and "qualify" not in softphone.group(1)
    off = render_config(settings_with(queue_wait={"agent_qualify_frequency": 0}))
    assert "qualify_frequency" not in off["pjsip.conf"]
    assert "load = res_musiconhold.so" in config["modules.conf"]
    moh = section(config["musiconhold.conf"], "hotline")
    assert "mode = files" in moh and "directory = /var/lib/asterisk/moh/hotline" in moh


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("hours", "message"), [
    ({"weekly": {"mon": "18:00-08:00"}}, "end after start"),
    ({"weekly": {"mon": "8:00-18:00"}}, "HH:MM-HH:MM"),
    ({"weekly": {"monday": "08:00-18:00"}}, "unknown day"),
    ({"timezone": "Mars/Olympus"}, "IANA zone"),
    ({"holidays": ["2026-13-01"]}, "date"),
])
def test_bad_service_hours_are_refused_with_a_clear_message(hours: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(service_hours=hours)


def test_bad_queue_wait_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="callback_key"):
        Settings(queue_wait={"callback_key": "12"})
    with pytest.raises(ValidationError, match="hold_music_dir"):
        Settings(queue_wait={"hold_music_dir": "/moh;evil"})


def test_default_line_is_open_around_the_clock_with_a_two_minute_wait() -> None:
    s = Settings()
    assert s.service_hours.always_open and s.service_hours.holidays == []
    assert s.queue_wait.max_wait == 120 and s.queue_wait.callback_key == "1"
    assert not Settings(service_hours={"holidays": [date(2026, 10, 1)]}).service_hours.always_open


# --- prompts and sounds --------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_has_the_queue_prompts_naming_the_callback_key(lang: str) -> None:
    texts = queue_prompt_texts(lang, callback_key="7")
    assert set(texts) == set(QUEUE_PROMPT_IDS)
    assert all(texts.values())
    assert "7" in texts["queue_thankyou"]
    assert set(number_texts(lang)) >= {"0", "19", "20", "90", "hundred"}


def test_an_operator_override_changes_a_queue_prompt(tmp_path: Path) -> None:
    (tmp_path / "cmn.toml").write_text('[queue_prompts]\nclosed = "今天休息。"\n',
                                       encoding="utf-8")
    texts = queue_prompt_texts("cmn", callback_key="1", override_dir=tmp_path)
    assert texts["closed"] == "今天休息。"
    assert texts["queue_youarenext"] == queue_prompt_texts("cmn", callback_key="1")[
        "queue_youarenext"]


def test_sound_names_are_the_ones_queues_conf_uses() -> None:
    config = render_config(settings_with())["queues.conf"]
    for pid in QUEUE_PROMPT_IDS:
        if pid.startswith("queue_"):
            assert f"{pid.replace('_', '-')} = {sound_ref(pid)}" in config


def test_default_hold_music_is_soft_and_gives_way_to_the_operators(tmp_path: Path) -> None:
    tones = hold_tones(seconds=2.0)
    assert len(tones) == 2 * 8000 * 2
    peak = max(abs(int.from_bytes(tones[i:i + 2], "little", signed=True))
               for i in range(0, len(tones), 2))
    assert 1000 < peak < 32767 * 0.2  # audible, well below full scale
    written = install_hold_music(tmp_path)
    assert written == tmp_path / HOLD_MUSIC_FILE
    assert written.read_bytes() == ulaw(hold_tones())
    assert install_hold_music(tmp_path) is None  # unchanged: not rewritten
    (tmp_path / "our-music.wav").write_bytes(b"RIFF")
    assert install_hold_music(tmp_path) is None
    assert not (tmp_path / HOLD_MUSIC_FILE).exists()


# --- who hung up ----------------------------------------------------------------------------


@pytest.mark.parametrize(("party", "source", "expected"), [
    ("", "PJSIP/gw-00000001", "caller"),                 # the caller's own channel hung up
    ("agent", "PJSIP/gw-00000001", "agent"),              # agent first, caller left the survey
    ("ivr", "dialplan/builtin", "ivr"),
    ("system", "dialplan/builtin", "system"),
    ("system", "PJSIP/gw-00000001", "caller"),            # caller hung up on the offer
    ("", "", "system"),                                    # an AMI hang-up, a shutdown
    ("", "PJSIP/2001-00000002", "system"),
])
def test_hangup_party(party: str, source: str, expected: str) -> None:
    assert hangup_party(dialplan_party=party or None, hangup_source=source or None,
                        caller_channel="PJSIP/gw-00000001") == expected


def test_the_cause_is_the_handlers_or_the_caller_legs_request() -> None:
    causes = HangupCauses()
    causes.note("c1", caller_leg=True, cause="16")
    assert causes.final("c1", party="caller", reported="0") == "16 Normal Clearing"
    assert causes.final("c1", party="caller", reported="0") == "0 Unknown"  # forgotten
    causes.note("c2", caller_leg=True, cause="16")
    assert causes.final("c2", party="ivr", reported="21") == "21 Call rejected"
    causes.note("c3", caller_leg=False, cause="17")
    assert causes.final("c3", party="agent", reported="16") == "17 User busy"
    assert describe_cause(42) == "42 Switching equip. congestion"
    assert all(len(describe_cause(code)) <= 32 for code in range(128))


class FakeAmi:
    """Subscriptions without a connection: the test feeds events to the handlers."""

    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def subscribe(self, pattern: str, handler: Any) -> Any:
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler)

    def on_ready(self, callback: Any) -> Any:
        return lambda: None

    async def feed(self, name: str, **headers: str) -> None:
        event = AmiEvent(name, headers)
        for handler in list(self.handlers):
            await handler(event)


class Bus:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.events.append(event)


async def test_call_end_carries_party_and_the_caller_legs_cause() -> None:
    ami, bus = FakeAmi(), Bus()
    CallTracker(ami, bus)  # type: ignore[arg-type]
    leg = {"Channel": "PJSIP/gw-1", "Uniqueid": "1.1", "Linkedid": "1.1",
           "ChanVariable": "CALL_ID=c1"}
    await ami.feed("UserEvent", UserEvent="HotlineCallStart", CallId="c1", **leg)
    await ami.feed("SoftHangupRequest", Cause="16", **leg)
    await ami.feed("UserEvent", UserEvent="HotlineCallEnd", CallId="c1", Route="fallback",
                   Cause="0", HangupSource="PJSIP/gw-1", Party="", **leg)
    ended = bus.events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.party, ended.cause) == ("caller", "16 Normal Clearing")


# --- announcements and unreachable phones --------------------------------------------------


def test_every_queue_named_after_the_main_one_is_the_hotlines() -> None:
    assert is_hotline_queue("hotline", "hotline") and is_hotline_queue("hotline-ko", "hotline")
    assert not is_hotline_queue("hotlines", "hotline") and not is_hotline_queue("", "hotline")


async def test_music_stopped_and_resumed_in_the_queue_is_an_announcement() -> None:
    ami, bus = FakeAmi(), Bus()
    QueueAnnouncements(ami, bus, main_queue="hotline")  # type: ignore[arg-type]

    def caller(n: int) -> dict[str, str]:
        return {"Uniqueid": f"{n}.0", "ChanVariable": f"CALL_ID=call-{n}"}

    await ami.feed("QueueCallerJoin", Queue="hotline-en", Position="1", **caller(1))
    await ami.feed("QueueCallerJoin", Queue="hotline-en", Position="2", **caller(2))
    await ami.feed("QueueCallerJoin", Queue="other", Position="1", **caller(3))
    await ami.feed("MusicOnHoldStart", Class="hotline", **caller(2))  # joining: no step
    await ami.feed("MusicOnHoldStop", Language="en", **caller(2))
    await ami.feed("MusicOnHoldStart", Class="hotline", **caller(2))
    await ami.feed("QueueCallerAbandon", Queue="hotline-en", Position="1", **caller(1))
    await ami.feed("MusicOnHoldStop", Language="en", **caller(2))
    await ami.feed("MusicOnHoldStart", Class="hotline", **caller(2))
    await ami.feed("MusicOnHoldStop", Language="cmn", **caller(3))  # not our queue
    await ami.feed("MusicOnHoldStart", Class="hotline", **caller(3))
    steps = [(e.call_id, e.step) for e in bus.events]
    assert all(isinstance(e, CallStep) for e in bus.events)
    assert [(c, s.position, s.prompt, s.language, s.queue) for c, s in steps] == [
        ("call-2", 2, "queue_thereare", "en", "hotline-en"),
        ("call-2", 1, "queue_youarenext", "en", "hotline-en"),
    ]
    stored = step_from_row(steps[0][1].kind, steps[0][1].detail())
    assert isinstance(stored, QueuePositionAnnounced) and stored == steps[0][1]


async def test_a_phone_failing_its_probes_is_unreachable_until_it_answers_again() -> None:
    ami, bus = FakeAmi(), Bus()
    QueueTracker(ami, bus)  # type: ignore[arg-type]
    member = {"Queue": "hotline", "Interface": "PJSIP/2001", "MemberName": "agent1",
              "Paused": "0", "InCall": "0"}
    await ami.feed("QueueMemberStatus", Status="1", **member)
    await ami.feed("ContactStatus", AOR="2001", ContactStatus="Unreachable")
    await ami.feed("QueueMemberStatus", Status="5", **member)
    await ami.feed("ContactStatus", AOR="2001", ContactStatus="Reachable")
    await ami.feed("QueueMemberStatus", Status="1", **member)
    await ami.feed("ContactStatus", AOR="2001", ContactStatus="Removed")
    await ami.feed("QueueMemberStatus", Status="5", **member)
    statuses = [e.status for e in bus.events if isinstance(e, AgentStatusChanged)]
    assert statuses == ["available", "unreachable", "unreachable", "available", "available",
                        "unavailable"]


async def test_an_agent_complete_without_the_callers_channel_ends_the_members_call() -> None:
    """app_queue may publish AgentComplete after the caller's channel is gone (no snapshot,
    no CALL_ID): the call the member was connected to is the one that ended (seen on a queue
    node, which hangs the leg up as the agent does)."""
    ami, bus = FakeAmi(), Bus()
    QueueTracker(ami, bus)  # type: ignore[arg-type]
    call_id = "6214422a-0239-460b-8431-e9c617b2d58e"
    member = {"Queue": "hotline", "Interface": "PJSIP/2001", "MemberName": "agent1"}
    await ami.feed("AgentConnect", Channel="PJSIP/media-nodes-00000001",
                   ChanVariable=f"CALL_ID={call_id}", HoldTime="3", RingTime="1", **member)
    await ami.feed("AgentComplete", TalkTime="2", Reason="agent", **member)
    await ami.feed("AgentComplete", TalkTime="2", Reason="agent", **member)  # nothing left
    ended = [e for e in bus.events if isinstance(e, AgentCallEnded)]
    assert [(e.call_id, e.interface, e.talk_time_s, e.reason) for e in ended] == [
        (call_id, "PJSIP/2001", 2, "agent")]


async def test_connections_found_or_lost_at_a_relogin_name_their_node() -> None:
    """In a cluster, the answers and ends a resynchronisation makes up name the node, as
    the events they stand for would (AMI SystemName): the consultation keeps where the
    agent talked."""
    class Channels(FakeAmi):
        def __init__(self) -> None:
            super().__init__()
            self.listed: list[AmiEvent] = []

        async def action_list(self, name: str, **fields: str) -> list[AmiEvent]:
            assert name == "CoreShowChannels"
            return self.listed

    ami, bus = Channels(), Bus()
    tracker = QueueTracker(ami, bus)  # type: ignore[arg-type]
    member = {"Queue": "hotline", "Interface": "PJSIP/2001", "MemberName": "agent1"}
    await ami.feed("QueueMemberStatus", Status="2", SystemName="queue-1", **member)
    gone, new = "6214422a-0239-460b-8431-e9c617b2d58e", "7314422a-0239-460b-8431-e9c617b2d58f"
    await ami.feed("AgentConnect", Channel="PJSIP/media-nodes-00000001",
                   ChanVariable=f"CALL_ID={gone}", SystemName="queue-1", **member)
    ami.listed = [
        AmiEvent("CoreShowChannel", {"Channel": "PJSIP/media-nodes-00000002",
                                     "Uniqueid": "9.2", "Linkedid": "9.2", "BridgeId": "b",
                                     "ChanVariable": f"CALL_ID={new}",
                                     "SystemName": "queue-1"}),
        AmiEvent("CoreShowChannel", {"Channel": "PJSIP/2001-00000003", "Uniqueid": "9.3",
                                     "Linkedid": "9.2", "BridgeId": "b",
                                     "SystemName": "queue-1"})]
    await tracker._resync_connections()
    ended = [(e.call_id, e.reason, e.node) for e in bus.events
             if isinstance(e, AgentCallEnded)]
    answered = [(e.call_id, e.resynchronised, e.node) for e in bus.events
                if isinstance(e, AgentAnswered) and e.resynchronised]
    assert ended == [(gone, "resynchronised", "queue-1")]
    assert answered == [(new, True, "queue-1")]
