"""Which caller each desk phone is bridged with, from CoreShowChannels (queue resync)."""

from __future__ import annotations

from ivr.ami.codec import AmiEvent, Headers
from ivr.asterisk.queue_tracker import bridged_callers, channel_extension


def channel(name: str, *, bridge: str = "", uniqueid: str, linkedid: str,
            call_id: str | None = None, number: str = "") -> AmiEvent:
    pairs = [("Event", "CoreShowChannel"), ("Channel", name), ("BridgeId", bridge),
             ("Uniqueid", uniqueid), ("Linkedid", linkedid), ("CallerIDNum", number)]
    if call_id:
        pairs.append(("ChanVariable", f"CALL_ID={call_id}"))
    return AmiEvent("CoreShowChannel", Headers(pairs))


def test_desk_phone_channels_name_their_extension() -> None:
    assert channel_extension("PJSIP/2001-0000001a") == "2001"
    assert channel_extension("Local/2002@hotline-agents-00000003;1") == "2002"
    assert channel_extension("PJSIP/2001") == "2001"
    assert channel_extension("") is None and channel_extension(None) is None


def test_each_agent_leg_maps_to_the_caller_in_its_bridge() -> None:
    channels = [
        # 张三 talking to 2001 (the agent leg also carries CALL_ID: it is inherited)
        channel("PJSIP/gw-00000001", bridge="b1", uniqueid="1.1", linkedid="1.1",
                call_id="call-a", number="13800138000"),
        channel("PJSIP/2001-00000002", bridge="b1", uniqueid="1.2", linkedid="1.1",
                call_id="call-a"),
        # a caller still in the IVR: no bridge
        channel("PJSIP/gw-00000003", uniqueid="1.3", linkedid="1.3", call_id="call-b"),
        # a bridge without a hotline caller (an internal call between two phones)
        channel("PJSIP/2003-00000004", bridge="b2", uniqueid="1.4", linkedid="1.4"),
        channel("PJSIP/2004-00000005", bridge="b2", uniqueid="1.5", linkedid="1.4"),
    ]
    found = bridged_callers(channels)
    assert set(found) == {"2001"}
    assert found["2001"].chan_variables()["CALL_ID"] == "call-a"
    assert found["2001"].get("CallerIDNum") == "13800138000"
