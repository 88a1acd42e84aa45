"""Service information from the knowledge base in the intake flow (ivr.flows.menu, state
topic): the caller keys or says a topic, hears its answer and is back at the greeting;
anything the knowledge base has no answer to goes to a person."""

from __future__ import annotations

from crm.telephony.steps import ArticleRead, IntentChosen
from ivr.flows.menu import (
    AnswerFound,
    Begin,
    CallFlow,
    Collect,
    FindAnswer,
    Keys,
    ListTopics,
    Log,
    NoInput,
    Route,
    Say,
    Speech,
    State,
    TopicsListed,
)

TOPICS = (("1", "生活垃圾分类投放时间"), ("2", "计划停水通知及临时供水"))


def at_topics(**flow_args: object) -> CallFlow:
    flow = CallFlow(knowledge=True, **flow_args)  # type: ignore[arg-type]
    flow.step(Begin("999", None))
    actions = flow.step(Keys("0"))
    assert actions == [Log(IntentChosen("service_info", "keys")), ListTopics()]
    [ask] = flow.step(TopicsListed(TOPICS))
    assert isinstance(ask, Collect) and (ask.prompt, ask.grammar) == ("ask_topic", "topic")
    assert ask.vars == {"topics": [["1", "生活垃圾分类投放时间"], ["2", "计划停水通知及临时供水"]]}
    assert flow.state is State.TOPIC
    return flow


def test_a_keyed_topic_is_answered_then_the_greeting_comes_back() -> None:
    flow = at_topics()
    assert flow.step(Keys("2")) == [FindAnswer(key="2")]
    actions = flow.step(AnswerFound(7, "计划停水通知及临时供水", "计划停水会提前通知。", "keys"))
    assert actions[:2] == [Log(ArticleRead(7, "计划停水通知及临时供水", "keys")),
                           Say("knowledge_answer", {"answer": "计划停水会提前通知。"})]
    assert isinstance(actions[2], Collect) and actions[2].prompt == "greeting"
    assert flow.state is State.GREETING


def test_a_spoken_topic_is_searched_with_the_words_heard() -> None:
    flow = CallFlow(knowledge=True)
    flow.step(Begin("999", "ko"))
    assert flow.step(Speech("운영 시간", intent="service_info")) == [
        Log(IntentChosen("service_info", "speech")), ListTopics()]
    flow.step(TopicsListed(()))
    assert flow.step(Speech("쓰레기 버리는 시간")) == [FindAnswer(words="쓰레기 버리는 시간")]


def test_no_answer_goes_to_a_person_in_the_callers_language() -> None:
    flow = at_topics()
    flow.step(Keys("9"))
    actions = flow.step(AnswerFound(None, by="keys"))
    assert actions[-1] == Route("agent", "cmn") and Say("transfer_to_agent") in actions
    asked = at_topics()
    assert asked.step(Speech("상담원", intent="agent"))[-1] == Route("agent", "cmn")


def test_silence_at_the_topics_reprompts_then_a_person_helps() -> None:
    flow = at_topics()
    retry = flow.step(NoInput())
    assert [a.prompt for a in retry if isinstance(a, Collect)] == ["ask_topic_short"]
    flow.step(NoInput())
    assert flow.step(NoInput())[-1] == Route("agent", "cmn")


def test_without_the_knowledge_base_the_fixed_prompt_stays() -> None:
    flow = CallFlow()
    flow.step(Begin("999", None))
    assert [a.prompt for a in flow.step(Keys("0")) if isinstance(a, Say | Collect)] == [
        "service_info", "greeting"]
