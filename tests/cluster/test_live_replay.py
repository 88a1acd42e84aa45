"""What a web node's live state does with the stream's recent events it replays when it
starts (hotline/roles/web.py), and with a phone that rings before its agent's desk is there:
the desk hub gives a desk that signs in while its phone rings the ringing pop (on any web
node: the node read the ring from the stream); the wallboard takes who waits from replayed
events but counts today's answers only once (from the database at start, and a
re-announced answer after an AMI login is not a new one)."""

from __future__ import annotations

from crm.agents.accounts import get_agent
from crm.live.desk_hub import DeskHub
from crm.live.wallboard import Wallboard
from crm.storage.db import SessionFactory
from crm.telephony.events import AgentAnswered, AgentRinging, AgentRingStopped, CallerQueued
from tests.storage.test_desk_pop import PHONE, _seed
from tests.storage.test_wallboard import Clock, _board


async def test_a_desk_signing_in_while_its_phone_rings_gets_the_ringing_pop(
        sessions: SessionFactory, db_url: str) -> None:
    await _seed(sessions, db_url)
    hub = DeskHub(sessions)
    hub.replaying = True
    hub.start()
    try:
        for event in (AgentRinging("rings", "hotline", "PJSIP/2001", "2001", "王芳", PHONE,
                                   "张三", "PJSIP/gw-1"),
                      AgentRinging("stopped", "hotline", "PJSIP/2002", "2002", "Kim", PHONE,
                                   "张三", "PJSIP/gw-2"),
                      AgentRingStopped("stopped", "hotline", "PJSIP/2002", "2002")):
            await hub.handle(event)
        await hub.drain()
        hub.replaying = False
        hub.sign_in(await get_agent(sessions, "agent1"))
        snapshot = await hub.current("agent1")
        assert snapshot is not None and snapshot["call"]["call_id"] == "rings"
        assert snapshot["call"]["phase"] == "ringing"
        hub.sign_in(await get_agent(sessions, "agent2"))
        assert (await hub.current("agent2") or {})["call"] is None  # it stopped ringing

        await hub.handle(AgentAnswered("rings", "hotline", "PJSIP/2001", "2001", "王芳",
                                       PHONE, "张三", "PJSIP/gw-1"))
        await hub.drain()
        desk = hub.desk("agent1")
        assert desk is not None and desk.call is not None and desk.call.phase == "connected"
    finally:
        await hub.close()


async def test_the_wallboard_counts_an_answer_once_across_a_replay_and_a_resync(
        sessions: SessionFactory) -> None:
    board: Wallboard = await _board(sessions, Clock())
    try:
        board.replaying = True
        for event in (CallerQueued("old", "hotline", 1, channel="PJSIP/gw-a"),
                      CallerQueued("waits", "hotline", 2, channel="PJSIP/gw-b"),
                      AgentAnswered("old", "hotline", "PJSIP/2001", "2001", hold_time_s=5)):
            await board.handle(event)
        await board.drain()
        board.replaying = False
        state = board.state()
        assert state["waiting"]["count"] == 1 and state["today"]["answered"] == 0
        await board.handle(AgentAnswered("old", "hotline", "PJSIP/2001", "2001",
                                         resynchronised=True))
        await board.handle(AgentAnswered("waits", "hotline", "PJSIP/2002", "2002",
                                         hold_time_s=7))
        await board.drain()
        state = board.state()
        assert state["waiting"]["count"] == 0 and state["today"]["answered"] == 1
    finally:
        await board.close()

