"""Runs the satisfaction survey on a survey leg's media session.

The dialplan announces a survey leg (``HotlineSurveyStart``) and connects it over
AudioSocket with its own id; the media handler (``ivr.menu_call.SpeechIvrHandler``) passes it
here. After an agent call, the caller is surveyed in the language they used, unless their
number was surveyed within the fatigue period; on a return visit, in the resident's language.
The score is stored as soon as it is given; the optional comment is recorded to a wav file
under the state directory and transcribed (where the language has a model) after the caller
has gone. Prompts and input collection are ``ivr.prompting.PromptingCall``'s.

The database may go down mid-survey: the caller does not notice. A write that fails, and
every later write of that survey (so they stay in order), goes to the durable
``crm.surveys.writes.SurveyWriteQueue`` and is written when the database is back; a
``survey_write_deferred`` step records it on the consultation as well.
"""

from __future__ import annotations

import array
import asyncio
import logging
import math
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from crm.errors import RecordsUnavailable
from crm.settings import SurveySettings
from crm.storage.private_files import open_private, private_dir
from crm.surveys.service import SurveyView
from crm.surveys.store import SurveyStore
from crm.surveys.writes import SurveyWriteQueue
from crm.telephony.events import EventBus
from crm.telephony.steps import CommentTranscribed, SurveyEnded, SurveySkipped, SurveyWriteDeferred
from ivr.asterisk.call_tracker import CallTracker, SurveyLeg, node_lookup
from ivr.audiosocket.protocol import Audio, Dtmf, Hangup
from ivr.audiosocket.session import Closed, MediaSession
from ivr.flows.menu import Action, Input, Log
from ivr.flows.survey import (
    BeginSurvey,
    CallerLeft,
    CommentTaken,
    EndSurvey,
    NoComment,
    RecordComment,
    RecordRating,
    SurveyFlow,
)
from ivr.prompting import STOP, CallerGone, IvrTimeouts, PromptingCall, Stop, Voice

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
BYTES_PER_SECOND = SAMPLE_RATE * 2
SPEECH_LEVEL = 500
"""Mean absolute sample value above which a frame counts as the caller speaking."""


def tone(hz: float = 1000.0, seconds: float = 0.3, level: int = 6000) -> bytes:
    """The 'speak after the tone' beep: 8 kHz s16le."""
    samples = array.array("h", (int(level * math.sin(2 * math.pi * hz * n / SAMPLE_RATE))
                                for n in range(int(SAMPLE_RATE * seconds))))
    return samples.tobytes()


BEEP = tone()


def _loud(pcm: bytes) -> bool:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    return bool(samples) and sum(map(abs, samples)) / len(samples) > SPEECH_LEVEL


def write_wav(path: Path, pcm: bytes) -> None:
    """A private wav file (the comment is personal data): directories 0700, file 0600."""
    private_dir(path.parent)
    with open_private(path, "wb") as raw, wave.open(raw, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)


class SurveyVoice(Voice, Protocol):
    async def transcribe(self, lang: str, pcm: bytes, *, call_id: str = "-") -> str | None: ...


@dataclass
class SurveyDeps:
    bus: EventBus
    store: SurveyStore
    tracker: CallTracker
    voice: SurveyVoice
    settings: SurveySettings
    recordings_dir: Path
    timeouts: IvrTimeouts = field(default_factory=IvrTimeouts)
    default_language: str = "cmn"
    deferred: SurveyWriteQueue | None = None
    """Where writes the database refused go (None: they are only logged as steps)."""


class SurveyCall(PromptingCall):
    def __init__(self, session: MediaSession, deps: SurveyDeps, leg: SurveyLeg) -> None:
        super().__init__(session, bus=deps.bus, voice=deps.voice, timeouts=deps.timeouts,
                         event_call_id=leg.call_id if leg.kind == "after_call" else None,
                         node_of=node_lookup(deps.tracker, str(session.call_id), leg.call_id))
        self.deps = deps
        self.leg = leg
        self.flow: SurveyFlow = SurveyFlow(language=deps.default_language)
        self.survey: SurveyView | None = None
        self._comment: bytes = b""
        self._deferring = False

    async def run(self) -> SurveyView | None:
        """The survey, start to end; the stored result (None when none was offered).

        With the database down at the start no survey is offered: the caller hears goodbye
        instead of silence, and the consultation (journaled) says why."""
        try:
            begin = await self._begin()
            if begin is None:
                await self.session.hangup("no survey")
                return None
            after_call = self.leg.kind == "after_call"  # a return visit's CALLERID is ours
            self.survey = await self.deps.store.start(
                kind=self.leg.kind, survey_call_id=self.leg.survey_call_id,
                call_id=self.leg.call_id, phone=self.leg.caller_number if after_call else None,
                language=begin.language, agent_interface=self.leg.member_interface,
                return_visit_id=self.leg.return_visit_id)
        except RecordsUnavailable as exc:
            self.log.error("no survey: %s", exc)
            await self.step(SurveySkipped("database unavailable"))
            await self._say("goodbye", {})
            await self.session.hangup("no survey: database unavailable")
            return None
        finished = False
        try:
            actions = self.flow.step(begin)
            try:
                while actions:
                    nxt = await self.perform(actions)
                    if nxt is None:
                        break
                    actions = self.flow.step(nxt)
            except CallerGone:
                for action in self.flow.step(CallerLeft()):
                    await self._act_offline(action)
            finished = True
        finally:
            if not finished:  # a failure or shutdown: the result still gets an end
                await self._finish()
        await self._transcribe()
        return self.survey

    async def _begin(self) -> BeginSurvey | None:
        leg, deps = self.leg, self.deps
        if not deps.settings.enabled:
            self.log.info("surveys are disabled")
            return None
        if leg.kind == "return_visit":
            visit = (await deps.store.return_visit(leg.return_visit_id)
                     if leg.return_visit_id is not None else None)
            if visit is None:
                self.log.warning("return visit %s unknown: no survey", leg.return_visit_id)
                return None
            return BeginSurvey("return_visit", visit.language or deps.default_language,
                               visit.case_number)
        if await deps.store.surveyed_recently(leg.caller_number,
                                              days=deps.settings.fatigue_days):
            await self.step(SurveySkipped("surveyed recently",
                                          fatigue_days=deps.settings.fatigue_days))
            return None
        language = (await deps.store.caller_language(leg.call_id, leg.caller_number)
                    or deps.default_language)
        return BeginSurvey("after_call", language)

    # -- the survey's own actions

    async def _act(self, action: Action) -> Input | Stop | None:
        if isinstance(action, RecordRating):
            assert self.survey is not None
            await self._store("rating", score=action.score, by=action.by)
            return None
        if isinstance(action, RecordComment):
            return await self._record_comment(action)  # type: ignore[return-value]
        if isinstance(action, EndSurvey):
            await self._end()
            await self.session.hangup("survey done")
            return STOP
        return await super()._act(action)

    async def _act_offline(self, action: object) -> None:
        """After the caller hung up: keep the records, play nothing."""
        if isinstance(action, EndSurvey):
            await self._end()
        elif isinstance(action, Log):
            await self.step(action.step)

    async def _end(self) -> None:
        assert self.survey is not None
        if not await self._finish():
            await self.step(SurveyEnded(self.survey.id, "deferred", self.flow.score))
            return
        await self.step(SurveyEnded(self.survey.id, self.survey.outcome, self.survey.score))

    async def _finish(self) -> bool:
        return await self._store("finish")

    async def _store(self, op: str, **fields: object) -> bool:
        """Store now, or (database down, or an earlier write of this survey deferred) keep it
        for the write queue; True when stored now."""
        assert self.survey is not None
        if not self._deferring:
            try:
                self.survey = await self.deps.store.write(op, self.survey.id, **fields)
                return True
            except RecordsUnavailable as exc:
                self.log.error("survey %d: %s not stored (%s)", self.survey.id, op, exc)
                self._deferring = True
        if self.deps.deferred is not None:
            self.deps.deferred.defer(op, self.survey.id, **fields)
        await self.step(SurveyWriteDeferred(self.survey.id, op, self.deps.deferred is not None,
                                            **fields))  # type: ignore[arg-type]
        return False

    # -- the comment

    async def _record_comment(self, action: RecordComment) -> CommentTaken | NoComment:
        await self._say(action.prompt, {})
        typed, self.keys = self.keys, ""  # keys typed on from the rating are no comment
        if "#" in typed:
            return NoComment()
        self.session.audio_wanted = True  # the comment is recorded from the beep on
        await self.session.play(BEEP, interruptible=False)
        pcm, gone = await self._capture()
        seconds = len(pcm) / BYTES_PER_SECOND
        if pcm:
            await self._save_comment(pcm, seconds)
        if gone:
            raise CallerGone("hung up during the comment")
        return CommentTaken(seconds) if pcm else NoComment()

    async def _capture(self) -> tuple[bytes, bool]:
        """Caller audio until '#', trailing silence, the time limit or hang-up; empty when
        nothing was said. Returns (audio, caller gone)."""
        cfg = self.deps.settings
        pcm = bytearray()
        start = time.monotonic()
        last_loud: float | None = None
        no_speech_limit = 2 * cfg.comment_silence_seconds  # time to start talking
        while True:
            now = time.monotonic()
            if last_loud is None:
                ends = start + min(no_speech_limit, cfg.comment_max_seconds)
            else:
                ends = min(last_loud + cfg.comment_silence_seconds,
                           start + cfg.comment_max_seconds)
            if now >= ends:
                break
            event = await self.session.next_event(timeout=ends - now)
            if event is None:
                if self.session.closed:
                    return (bytes(pcm) if last_loud else b""), True
                continue
            if isinstance(event, Hangup | Closed):
                return (bytes(pcm) if last_loud else b""), True
            if isinstance(event, Dtmf):
                if event.key == "#":
                    break
            elif isinstance(event, Audio):
                pcm += event.pcm
                if _loud(event.pcm):
                    last_loud = time.monotonic()
        return (bytes(pcm) if last_loud else b""), False

    async def _save_comment(self, pcm: bytes, seconds: float) -> None:
        assert self.survey is not None
        day = time.strftime("%Y/%m/%d", time.gmtime())
        path = self.deps.recordings_dir / day / f"{self.leg.survey_call_id}.wav"
        await asyncio.to_thread(write_wav, path, pcm)
        await self._store("comment", path=str(path), seconds=round(seconds, 2))
        self._comment = pcm
        self.log.info("comment of %.1f s saved to %s", seconds, path)

    async def _transcribe(self) -> None:
        if not self._comment or self.survey is None:
            return
        try:
            text = await self.deps.voice.transcribe(self.flow.language, self._comment,
                                                    call_id=self.leg.survey_call_id)
        except Exception:
            self.log.exception("comment transcription failed; the recording is kept")
            return
        if text:
            await self._store("transcript", text=text)
            await self.step(CommentTranscribed(self.survey.id, text))


class SurveyCalls:
    """The media handler's survey runner: one SurveyCall per announced survey leg. Tests and
    monitors may wait for finished surveys with ``wait_finished``."""

    def __init__(self, deps: SurveyDeps) -> None:
        self.deps = deps
        self.finished: list[SurveyView] = []
        self._changed = asyncio.Condition()

    async def run(self, session: MediaSession, leg: object) -> None:
        assert isinstance(leg, SurveyLeg)
        self.deps.tracker.take_survey_leg(leg.survey_call_id)
        result = await SurveyCall(session, self.deps, leg).run()
        if result is not None:
            async with self._changed:
                self.finished.append(result)
                del self.finished[:-100]
                self._changed.notify_all()

    async def wait_finished(self, match: Callable[[SurveyView], bool],
                            within: float) -> SurveyView:
        async with asyncio.timeout(within), self._changed:
            while True:
                for survey in self.finished:
                    if match(survey):
                        return survey
                await self._changed.wait()

