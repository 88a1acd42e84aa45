"""The IVR's service information from the knowledge base, on SQLite and PostgreSQL: the
real menu call (ivr.menu_call.IvrCall) on a scripted caller, the real KnowledgeDirectory
over the demo articles, every step recorded on the consultation."""

from __future__ import annotations

from crm.cases.lookup import LookupGuard
from crm.consultations.recorder import ConsultationRecorder, list_consultations
from crm.demo_data import seed_demo
from crm.knowledge.ivr_topics import KnowledgeDirectory
from crm.storage.db import SessionFactory
from crm.telephony.steps import ArticleRead, RouteChosen
from tests.scripted_ivr import keys, run_scripted_call, said

KOREAN_CALLER = "13600136000"  # 김민준 of the demo data: greeted in Korean


async def _call(sessions: SessionFactory, caller: str, answers: dict[str, list[object]]):
    recorder = ConsultationRecorder(sessions)
    recorder.start()
    try:
        call = await run_scripted_call(sessions, LookupGuard(sessions), caller, answers,
                                       recorder=recorder, knowledge=KnowledgeDirectory(sessions))
        await recorder.drain()
    finally:
        await recorder.close()
    return call


async def test_keyed_and_spoken_topics_are_answered_and_recorded(sessions: SessionFactory,
                                                                 db_url: str) -> None:
    await seed_demo(db_url)
    directory = KnowledgeDirectory(sessions)
    assert [k for k, _ in await directory.topics("cmn")] == ["1", "2", "3"]

    # Mandarin (keys only here): the info key, then the water outage topic by its key.
    call = await _call(sessions, "13900001111",
                       {"greeting": keys("0"), "ask_topic": keys("2")})
    assert call.caller.prompts == ["greeting", "ask_topic", "knowledge_answer", "greeting"]
    [read] = [s.step for s in call.steps if isinstance(s.step, ArticleRead)]
    assert (read.title, read.by) == ("计划停水通知及临时供水", "keys")

    # Korean: the topic said in words; the Korean answer is the one read.
    spoken = await _call(sessions, KOREAN_CALLER, {
        "greeting": said("운영 시간", intent="service_info"),
        "ask_topic": said("쓰레기 버리는 시간")})
    [read] = [s.step for s in spoken.steps if isinstance(s.step, ArticleRead)]
    assert (read.title, read.by) == ("生活垃圾分类投放时间", "speech")
    answer = await directory.answer_for_words("쓰레기 버리는 시간", "ko")
    assert answer is not None and answer.text.startswith("쓰레기 버리는 시간은")

    # Anything else goes to a person: a key no topic has, words no article answers.
    for answers in ({"greeting": keys("0"), "ask_topic": keys("7")},
                    {"greeting": keys("0"), "ask_topic": said("택배가 분실됐어요")}):
        other = await _call(sessions, "13900002222", answers)
        assert other.caller.prompts[-1] == "transfer_to_agent"
        assert not [s for s in other.steps if isinstance(s.step, ArticleRead)]
        assert [s.step for s in other.steps if isinstance(s.step, RouteChosen)][-1].reason == \
            "no article"

    stored = {c.call_id: c for c in await list_consultations(sessions)}
    kinds = [s["kind"] for s in stored[call.call_id].steps]
    assert "article_read" in kinds
