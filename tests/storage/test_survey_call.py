"""The survey driver on a scripted media session, against both databases: rating, the
recorded and transcribed comment, hang-ups, fatigue, and a return visit closing its case."""

from __future__ import annotations

import asyncio
import logging
import uuid
import wave
from collections import deque
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.cases.service import get_case
from crm.demo_data import seed_demo
from crm.settings import SurveySettings
from crm.storage.journal import json_journal
from crm.storage.models import Case, Resident
from crm.surveys.return_visits import RetryPolicy, begin_attempt, schedule_return_visits
from crm.surveys.service import list_surveys, start_survey
from crm.surveys.store import SurveyStore
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import CallStep
from ivr.asterisk.call_tracker import SurveyLeg
from ivr.audiosocket.protocol import Audio, Dtmf, Hangup
from ivr.audiosocket.session import Closed
from ivr.prompting import IvrTimeouts
from ivr.survey_call import BEEP, SurveyCall, SurveyDeps
from tests.call_steps import recording_bus

LOUD = b"\x00\x20" * 160  # 20 ms at a level well above the speech threshold
QUIET = b"\x00\x00" * 160


class ScriptedSession:
    """A media session whose caller acts once a given prompt (or the beep) has played."""

    def __init__(self, after: dict[str, list[object]]) -> None:
        self.call_id = uuid.uuid4()
        self.after = after
        self.prompts: list[str] = []
        self.next_prompt = ""
        self.closed = False
        self.hung_up: str | None = None
        self._queue: deque[object] = deque()
        self._wakeup = asyncio.Event()

    async def play(self, pcm: bytes, *, interruptible: bool = True,
                   stop_on_keys: bool = True) -> bool:
        name = "beep" if pcm == BEEP else self.next_prompt
        self.prompts.append(name)
        await asyncio.sleep(0)
        self._queue.extend(self.after.pop(name, []))
        self._wakeup.set()
        return not self.closed

    def stop_playback(self) -> bool:
        return False

    async def next_event(self, timeout: float | None = None) -> object | None:
        while True:
            if self._queue:
                event = self._queue.popleft()
                if isinstance(event, Hangup):
                    self.closed = True
                return event
            if self.closed:
                return Closed("caller hung up")
            self._wakeup.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                return None

    async def hangup(self, reason: str = "") -> None:
        self.closed, self.hung_up = True, reason
        self._wakeup.set()


class ScriptedVoice:
    def __init__(self, session: ScriptedSession) -> None:
        self.session = session
        self.languages: list[str] = []

    async def prompt_audio(self, lang: str, prompt: str, vars: dict) -> bytes:
        self.session.next_prompt = prompt
        self.languages.append(lang)
        return QUIET

    def recognition(self, lang: str, grammar: str) -> None:
        return None

    async def transcribe(self, lang: str, pcm: bytes, *, call_id: str = "-") -> str | None:
        return f"{len(pcm) // 16000} s of comment"


@pytest.fixture
async def demo(sessions, db_url):
    await seed_demo(db_url)
    return sessions


def run_survey(sessions, tmp_path: Path, after: dict[str, list[object]], *,
               kind: str = "after_call", call_id: str | None = "call-1",
               phone: str | None = "13800138000", visit: int | None = None,
               deferred: SurveyWriteQueue | None = None, **settings: object):
    session = ScriptedSession(after)
    voice = ScriptedVoice(session)
    bus, steps = recording_bus()
    survey_settings = SurveySettings(**{"comment_silence_seconds": 0.2} | settings)
    store = SurveyStore(sessions, RetryPolicy.from_settings(survey_settings))
    deps = SurveyDeps(bus, store, tracker=None, voice=voice,  # type: ignore[arg-type]
                      settings=survey_settings,
                      recordings_dir=tmp_path / "comments",
                      timeouts=IvrTimeouts(first_input=0.3, inter_digit=0.2),
                      deferred=deferred)
    leg = SurveyLeg(str(session.call_id), kind, call_id, "PJSIP/x", phone, "PJSIP/2001", visit)
    call = SurveyCall(session, deps, leg)  # type: ignore[arg-type]
    return call, session, voice, steps


async def test_keyed_rating_and_a_recorded_comment(demo, tmp_path: Path) -> None:
    call, session, voice, steps = run_survey(demo, tmp_path, {
        "survey_rating": [Dtmf("4")],
        "beep": [Audio(QUIET)] + [Audio(LOUD)] * 25 + [Dtmf("#")],
    })
    result = await asyncio.wait_for(call.run(), 10)
    assert result is not None
    assert (result.outcome, result.score, result.rated_by) == ("rated", 4, "keys")
    assert result.agent_login == "agent1" and result.call_id == "call-1"
    assert session.prompts == ["survey_intro", "survey_rating", "survey_comment", "beep",
                               "survey_thanks"]
    assert session.hung_up == "survey done"
    assert voice.languages[0] == "cmn"  # 张三's language
    path = Path(result.comment_path)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (8000, 1, 26 * 160)
    assert path.is_relative_to(tmp_path / "comments")
    assert result.comment_seconds == 0.52 and result.comment_text == "0 s of comment"
    kinds = [s.kind for s in steps]
    assert {"survey_started", "survey_rating", "survey_comment", "survey_result",
            "survey_comment_text"} <= set(kinds)
    assert all(s.call_id == "call-1" for s in steps)


async def test_silence_is_no_comment(demo, tmp_path: Path) -> None:
    call, session, _, _ = run_survey(demo, tmp_path, {"survey_rating": [Dtmf("5")],
                                                      "beep": [Audio(QUIET)] * 5})
    result = await asyncio.wait_for(call.run(), 10)
    assert result.score == 5 and result.comment_path is None
    assert session.prompts[-1] == "survey_thanks"


async def test_hanging_up_at_the_rating_is_no_answer(demo, tmp_path: Path) -> None:
    call, session, _, steps = run_survey(demo, tmp_path, {"survey_intro": [Hangup()]})
    result = await asyncio.wait_for(call.run(), 10)
    assert (result.outcome, result.score) == ("no_answer", None)
    assert "survey_abandoned" in [s.kind for s in steps]
    assert "survey_thanks" not in session.prompts


async def test_hanging_up_during_the_comment_keeps_rating_and_comment(demo,
                                                                     tmp_path: Path) -> None:
    call, session, _, _ = run_survey(demo, tmp_path, {
        "survey_rating": [Dtmf("1")], "beep": [Audio(LOUD)] * 10 + [Hangup()]})
    result = await asyncio.wait_for(call.run(), 10)
    assert (result.outcome, result.score, result.follow_up_status) == ("rated", 1, "open")
    assert result.comment_seconds == 0.2 and result.comment_text
    assert "survey_thanks" not in session.prompts


async def test_no_rating_after_three_tries_ends_unrated(demo, tmp_path: Path) -> None:
    call, session, _, _ = run_survey(demo, tmp_path, {"survey_rating": [Dtmf("9")]})
    result = await asyncio.wait_for(call.run(), 10)
    assert (result.outcome, result.score) == ("no_answer", None)
    assert session.prompts[-1] == "goodbye"
    assert "survey_rating_keys" in session.prompts


async def test_a_recently_surveyed_number_is_not_asked_again(demo, tmp_path: Path) -> None:
    await start_survey(demo, kind="after_call", survey_call_id="earlier", call_id="call-0",
                       phone="13800138000")
    call, session, _, steps = run_survey(demo, tmp_path, {})
    assert await asyncio.wait_for(call.run(), 10) is None
    assert session.prompts == [] and session.hung_up == "no survey"
    assert [s.kind for s in steps] == ["survey_skipped"]
    assert len(await list_surveys(demo)) == 1


async def test_disabled_surveys_hang_up_at_once(demo, tmp_path: Path) -> None:
    call, session, _, _ = run_survey(demo, tmp_path, {}, enabled=False)
    assert await asyncio.wait_for(call.run(), 10) is None
    assert session.hung_up == "no survey" and await list_surveys(demo) == []


async def test_return_visit_survey_closes_the_case(demo, tmp_path: Path) -> None:
    [visit] = await schedule_return_visits(demo)
    async with demo() as s:
        lang = await s.scalar(select(Resident.preferred_language).join(Case)
                              .where(Case.number == visit.case_number))
    survey_call_id = str(uuid.uuid4())
    await begin_attempt(demo, visit.id, survey_call_id)
    call, session, voice, steps = run_survey(
        demo, tmp_path, {"survey_rating": [Dtmf("4")], "survey_comment": [Dtmf("#")]},
        kind="return_visit", call_id=None, phone="12345", visit=visit.id)
    call.leg.survey_call_id = survey_call_id
    result = await asyncio.wait_for(call.run(), 10)
    assert result.kind == "return_visit" and result.score == 4
    assert result.phone == visit.phone  # the resident's, not the caller id we sent
    assert result.case_numbers == (visit.case_number,)
    assert session.prompts[0] == "survey_return_visit_intro" and voice.languages[0] == lang
    assert "beep" not in session.prompts  # '#' during the comment prompt: no comment
    assert steps == []  # no consultation to write to
    assert (await get_case(demo, visit.case_number)).stage == "closed"


class DatabaseGoesDown:
    """The real database for the first ``working`` sessions, then refused connections."""

    def __init__(self, sessions, working: int) -> None:
        self._sessions = sessions
        self.working = working

    def __call__(self):
        if self.working <= 0:
            raise ConnectionRefusedError("database unavailable")
        self.working -= 1
        return self._sessions()


async def test_the_database_down_at_the_start_means_goodbye_not_silence(demo,
                                                                       tmp_path: Path) -> None:
    call, session, _, steps = run_survey(DatabaseGoesDown(demo, 0), tmp_path, {})
    assert await asyncio.wait_for(call.run(), 10) is None
    assert session.prompts == ["goodbye"]
    assert session.hung_up == "no survey: database unavailable"
    assert [(s.kind, s.detail.get("reason") or s.detail.get("prompt")) for s in steps] == [
        ("survey_skipped", "database unavailable"), ("prompt", "goodbye")]


async def test_answers_given_while_the_database_is_down_are_written_when_it_is_back(
        demo, tmp_path: Path) -> None:
    # The database works until the survey has started, then refuses every connection.
    database = DatabaseGoesDown(demo, 1_000)
    journal = json_journal(tmp_path / "journal", "survey-writes")
    queue = SurveyWriteQueue(demo, journal, retry_delay=0.01)
    call, session, _, steps = run_survey(database, tmp_path, {
        "survey_rating": [Dtmf("2")],
        "beep": [Audio(LOUD)] * 10 + [Dtmf("#")],
    }, deferred=queue)

    async def down_after_start(event: object) -> None:
        if isinstance(event, CallStep) and event.kind == "survey_started":
            database.working = 0
    call.deps.bus.subscribe(down_after_start)
    await asyncio.wait_for(call.run(), 10)
    # The caller noticed nothing.
    assert session.prompts[-1] == "survey_thanks" and session.hung_up == "survey done"
    deferred = [(s.detail["op"], s.detail.get("score")) for s in steps
                if s.kind == "survey_write_deferred"]
    assert deferred == [("rating", 2), ("comment", None), ("finish", None),
                        ("transcript", None)]
    [result] = [s.detail for s in steps if s.kind == "survey_result"]
    assert (result["outcome"], result["score"]) == ("deferred", 2)
    [stored] = await list_surveys(demo)
    assert (stored.outcome, stored.score) == ("in_progress", None)
    assert len(journal.pending()) == 4
    journal.close()  # the process stops before the database is back

    journal = json_journal(tmp_path / "journal", "survey-writes")
    restarted = SurveyWriteQueue(demo, journal)
    restarted.start()
    try:
        await asyncio.wait_for(restarted.drain(), 10)
    finally:
        await restarted.close()
    [stored] = await list_surveys(demo)
    assert (stored.outcome, stored.score, stored.rated_by) == ("rated", 2, "keys")
    assert stored.follow_up_status == "open"  # a low score, as if stored at once
    comment = Path(stored.comment_path)
    assert await asyncio.to_thread(comment.is_file)
    assert comment.is_relative_to(tmp_path / "comments") and stored.comment_text
    assert journal.pending() == [] and restarted.written == 4
    journal.close()


async def test_the_write_queue_retries_until_the_database_is_back(demo, tmp_path: Path) -> None:
    survey = await start_survey(demo, kind="after_call", survey_call_id="s-1",
                                call_id="call-1", phone="13800138000")
    database = DatabaseGoesDown(demo, 0)
    journal = json_journal(tmp_path, "survey-writes")
    queue = SurveyWriteQueue(database, journal, retry_delay=0.01)
    queue.start()
    try:
        queue.defer("rating", survey.id, score=5, by="speech")
        queue.defer("finish", survey.id)
        queue.defer("rating", 999_999, score=5, by="keys")  # rejected for good: dropped
        retried = asyncio.Event()

        class Watch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "failed (attempt 3)" in record.getMessage():
                    retried.set()
        watch = Watch()
        logging.getLogger("crm.surveys.writes").addHandler(watch)
        try:
            await asyncio.wait_for(retried.wait(), 10)
        finally:
            logging.getLogger("crm.surveys.writes").removeHandler(watch)
        assert queue.written == 0 and queue.pending == 3  # the first being retried
        database.working = 1_000  # the database is back
        await asyncio.wait_for(queue.drain(), 10)
    finally:
        await queue.close()
    assert (queue.written, queue.dropped) == (2, 1)
    [stored] = await list_surveys(demo)
    assert (stored.outcome, stored.score, stored.rated_by) == ("rated", 5, "speech")
    assert journal.pending() == []
    with pytest.raises(ValueError, match="unknown survey write"):
        queue.defer("erase", survey.id)
    journal.close()
