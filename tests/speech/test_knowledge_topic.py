"""A topic said in Korean, heard by the real Korean vosk model with the ``topic`` grammar the
IVR listens with after ask_topic (ivr.voice.StackRecognition, as the menu call uses it),
answered from the knowledge base over a real database, and the answer synthesised by
espeak-ng as the IVR's prompts are.

The phrases are ones measured to be heard through espeak-ng and this grammar; the
small Korean model has no [unk] word, so words outside the topic grammar are forced onto
its phrases ("물이 안 나와요" was heard as "고령 수당 신청" with confidence 1.0) -- a
limitation of grammar decoding with this model, not asserted away here."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.knowledge.demo_articles import seed_demo_articles
from crm.knowledge.ivr_topics import KnowledgeDirectory
from crm.storage.db import SessionFactory
from crm.storage.models import Department
from crm.storage.models import utcnow as now
from ivr.voice import StackVoice
from speech.grammar import build_grammars
from speech.models import SpeechModels
from speech.prompts import load_all
from speech.recognizer import BYTES_PER_SECOND
from speech.settings import SpeechSettings
from speech.stack import SpeechStack
from speech.tts import PromptSynthesizer, pcm_seconds

FRAME = 320
LEAD = bytes(BYTES_PER_SECOND // 5)
TRAIL = bytes(BYTES_PER_SECOND * 3 // 2)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite: the storage tests cover both databases; this one is about hearing."""
    return f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"


@pytest.fixture(scope="module")
def stack(korean_models: SpeechModels, prompt_cache: Path) -> SpeechStack:
    packs = load_all()
    return SpeechStack(SpeechSettings(prewarm_prompts=False), korean_models, packs,
                       build_grammars(korean_models, packs),
                       PromptSynthesizer(prompt_cache, packs=packs))


async def hear(stack: SpeechStack, phrase: str) -> str:
    pcm = LEAD + await stack.synth.audio("ko", None, phrase) + TRAIL
    recognition = StackVoice(stack).recognition("ko", "topic")
    assert recognition is not None
    for i in range(0, len(pcm), FRAME):
        if await recognition.feed(pcm[i:i + FRAME]) == "final":
            break
    heard = recognition.result()
    assert heard is not None, phrase
    return heard.text


@pytest.mark.parametrize(("phrase", "title"), [
    ("쓰레기 버리는 시간", "生活垃圾分类投放时间"),  # heard as "버리는 시간": found all the same
    ("고령 수당", "高龄津贴申请材料"),
    ("수돗물 단수", "计划停水通知及临时供水"),
])
async def test_a_korean_topic_is_heard_and_answered(stack: SpeechStack,
                                                    sessions: SessionFactory, phrase: str,
                                                    title: str) -> None:
    async with sessions() as session, session.begin():
        session.add_all([Department(code=c, name=c) for c in ("housing", "sanitation", "civil")])
    await seed_demo_articles(sessions, today=now().date())
    words = await hear(stack, phrase)
    answer = await KnowledgeDirectory(sessions).answer_for_words(words, "ko")
    assert answer is not None and answer.title == title, words
    audio = await stack.prompt_audio("ko", "knowledge_answer", answer=answer.text)
    assert pcm_seconds(audio) > 2.0  # the answer is read, not an empty prompt
