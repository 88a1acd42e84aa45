"""Queue control over a fake AMI: idempotent join/leave, refusals and outages as domain errors,
and input that could inject AMI headers refused."""

from __future__ import annotations

import pytest

from crm.errors import InvalidInput
from crm.telephony.queue import TelephonyRefused, TelephonyUnavailable, interface_for
from ivr.asterisk.queue_control import QueueControl


class Refusal(Exception):
    """Shaped like ivr.ami.client.AmiActionError: Asterisk answered with an error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.response = {"Response": "Error", "Message": message}


class FakeAmi:
    def __init__(self, errors: dict[str, Exception] | None = None) -> None:
        self.errors = errors or {}
        self.actions: list[tuple[str, dict[str, str]]] = []

    async def action(self, name: str, *, timeout: float = 5.0, **fields: str) -> dict:
        self.actions.append((name, fields))
        if name in self.errors:
            raise self.errors[name]
        return {}

    async def action_list(self, name: str, *, timeout: float = 10.0, **fields: str) -> list:
        raise self.errors.get(name, ConnectionError("down"))


async def test_join_is_idempotent_and_unpauses() -> None:
    ami = FakeAmi({"QueueAdd": Refusal("Unable to add interface: Already there")})
    await QueueControl(ami).join("PJSIP/2001", "王芳\n<bad>")
    assert ami.actions == [
        ("QueueAdd", {"Queue": "hotline", "Interface": "PJSIP/2001", "MemberName": "王芳 <bad>",
                      "Penalty": "0", "Paused": "false"}),
        ("QueuePenalty", {"Queue": "hotline", "Interface": "PJSIP/2001", "Penalty": "0"}),
        ("QueuePause", {"Queue": "hotline", "Interface": "PJSIP/2001", "Paused": "false"}),
    ]


LANGUAGE_QUEUES = {"cmn": "hotline", "en": "hotline-en", "ko": "hotline-ko"}


async def test_an_agent_joins_every_queue_first_in_line_for_their_languages() -> None:
    ami = FakeAmi()
    control = QueueControl(ami, "hotline", queues=LANGUAGE_QUEUES)
    await control.join("PJSIP/2002", "李娜", ["cmn", "en"])
    added = {f["Queue"]: f["Penalty"] for name, f in ami.actions if name == "QueueAdd"}
    assert added == {"hotline": "0", "hotline-en": "0", "hotline-ko": "1"}
    assert [f["Queue"] for name, f in ami.actions if name == "QueuePause"] == [
        "hotline", "hotline-en", "hotline-ko"]
    ami.actions.clear()
    await control.join("PJSIP/2003", "朴敏", [])  # no languages known: the default one
    assert {f["Queue"]: f["Penalty"] for name, f in ami.actions if name == "QueueAdd"} == {
        "hotline": "0", "hotline-en": "1", "hotline-ko": "1"}
    ami.actions.clear()
    await control.pause("PJSIP/2002", True, "lunch")
    await control.leave("PJSIP/2002")
    assert [(n, f["Queue"]) for n, f in ami.actions] == [
        ("QueuePause", "hotline"), ("QueuePause", "hotline-en"), ("QueuePause", "hotline-ko"),
        ("QueueRemove", "hotline"), ("QueueRemove", "hotline-en"),
        ("QueueRemove", "hotline-ko")]


async def test_leave_tolerates_not_a_member_but_not_other_refusals() -> None:
    await QueueControl(FakeAmi({"QueueRemove": Refusal("Unable to remove interface: Not there")})
                       ).leave("PJSIP/2001")
    with pytest.raises(TelephonyRefused):
        await QueueControl(FakeAmi({"QueuePause": Refusal("Interface not found")})
                           ).pause("PJSIP/2001", True, "lunch")


async def test_an_unreachable_asterisk_is_telephony_unavailable() -> None:
    control = QueueControl(FakeAmi({"QueueAdd": TimeoutError("no answer")}))
    with pytest.raises(TelephonyUnavailable):
        await control.join("PJSIP/2001", "王芳")
    with pytest.raises(TelephonyUnavailable):
        await control.members()


async def test_blind_transfer_redirects_the_caller_and_checks_input() -> None:
    ami = FakeAmi()
    control = QueueControl(ami)
    await control.blind_transfer("PJSIP/pstn-gateway-0000002a", "8001")
    assert ami.actions == [("Redirect", {"Channel": "PJSIP/pstn-gateway-0000002a",
                                         "Context": "hotline-transfer", "Exten": "8001",
                                         "Priority": "1"})]
    with pytest.raises(InvalidInput):
        await control.blind_transfer("PJSIP/x-1\r\nAction: Originate", "8001")
    with pytest.raises(InvalidInput):
        await control.blind_transfer("PJSIP/x-1", "8001@other")
    with pytest.raises(InvalidInput):
        interface_for("20 01")
    assert interface_for("2001") == "PJSIP/2001"


async def test_a_signed_in_agent_joins_the_assigned_callbacks_queue_with_their_id() -> None:
    ami = FakeAmi()
    control = QueueControl(ami, "hotline", queues=LANGUAGE_QUEUES, assigned="hotline-assigned")
    await control.join("PJSIP/2002", "李娜", ["cmn"], agent_id=42)
    added = {f["Queue"]: f["Penalty"] for name, f in ami.actions if name == "QueueAdd"}
    assert added == {"hotline": "0", "hotline-en": "1", "hotline-ko": "1",
                     "hotline-assigned": "42"}
    ami.actions.clear()
    await control.leave("PJSIP/2002")
    assert [f["Queue"] for name, f in ami.actions if name == "QueueRemove"] == [
        "hotline", "hotline-en", "hotline-ko", "hotline-assigned"]
    with pytest.raises(InvalidInput):
        await control.join("PJSIP/2002", "李娜", agent_id=0)


async def test_pausing_a_phone_that_joined_without_an_agent_id_is_not_an_error() -> None:
    ami = FakeAmi()
    control = QueueControl(ami, "hotline", assigned="hotline-assigned")

    async def action(name: str, *, timeout: float = 5.0, **fields: str) -> dict:
        ami.actions.append((name, fields))
        if fields.get("Queue") == "hotline-assigned":
            raise Refusal("Interface not found")
        return {}

    ami.action = action  # type: ignore[method-assign]
    await control.pause("PJSIP/2001", True, "desk")
    assert [f["Queue"] for name, f in ami.actions if name == "QueuePause"] == [
        "hotline", "hotline-assigned"]
    ami.actions.clear()
    await control.join("PJSIP/2001", "王芳")  # no agent id: not put in the assigned queue
    assert "hotline-assigned" not in {f["Queue"] for _, f in ami.actions}
