"""The satisfaction survey as an explicit, pure state machine (the pattern of flows/menu.py).

``SurveyFlow.step(inp)`` takes one input and returns the actions to perform; the driver
(``ivr/survey_call.py``) plays prompts, collects input, records the rating and the comment,
and feeds the results back.

Flow: intro (after an agent call, or the return-visit intro naming the case) -> rating 1..5
by key or voice (非常满意 5 ... 非常不满意 1; very satisfied ... very dissatisfied; 매우 만족 ...)
-> optional spoken comment after a tone -> thanks -> end. No input or no match: re-prompt
once, then once more worded for keys, then end without a score. A caller who hangs up
before rating is recorded as ``no_answer``, never as a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crm.telephony.steps import (
    NothingHeard,
    NotUnderstood,
    SurveyAbandoned,
    SurveyCommented,
    SurveyRated,
    SurveyStarted,
    SurveyUnrated,
)
from ivr.flows.menu import Collect, Keys, Log, NoInput, Say, SetLanguage, Speech

RATING_KEYS = {str(n): n for n in range(1, 6)}
MAX_RATING_MISSES = 3
SURVEY_KINDS = ("after_call", "return_visit")


class SurveyState(StrEnum):
    START = "start"
    RATING = "rating"
    COMMENT = "comment"
    DONE = "done"


# ---- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeginSurvey:
    kind: str = "after_call"
    language: str = "cmn"
    case_number: str | None = None
    """The visited case, read out in the return-visit intro."""


@dataclass(frozen=True)
class CommentTaken:
    """The caller left a comment of ``seconds`` (recorded by the driver)."""

    seconds: float


@dataclass(frozen=True)
class NoComment:
    pass


@dataclass(frozen=True)
class CallerLeft:
    """The caller hung up (or the socket broke)."""


SurveyInput = BeginSurvey | Keys | Speech | NoInput | CommentTaken | NoComment | CallerLeft


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordRating:
    score: int
    by: str  # "keys" or "speech"


@dataclass(frozen=True)
class RecordComment:
    """Play ``prompt`` and a tone, then record what the caller says until '#', silence, the
    time limit or hang-up; the driver answers CommentTaken or NoComment."""

    prompt: str = "survey_comment"


@dataclass(frozen=True)
class EndSurvey:
    outcome: str  # "rated" or "no_answer"


SurveyAction = Say | Collect | SetLanguage | Log | RecordRating | RecordComment | EndSurvey


# ---- the machine ---------------------------------------------------------------------------


def rating_from(inp: Keys | Speech) -> tuple[int, str] | None:
    """(score, how) from a key press or a recognized phrase; None when it is no rating."""
    if isinstance(inp, Keys):
        score = RATING_KEYS.get(inp.digits[:1])
        return (score, "keys") if score else None
    if inp.rating is not None and 1 <= inp.rating <= 5:
        return inp.rating, "speech"
    return None


@dataclass
class SurveyFlow:
    language: str = "cmn"
    state: SurveyState = SurveyState.START
    kind: str = "after_call"
    misses: int = 0
    score: int | None = None

    def step(self, inp: SurveyInput) -> list[SurveyAction]:
        if self.state is SurveyState.DONE:
            return []
        if isinstance(inp, CallerLeft):
            return self._caller_left()
        if isinstance(inp, BeginSurvey):
            return self._begin(inp)
        if self.state is SurveyState.RATING:
            return self._on_rating(inp)
        if self.state is SurveyState.COMMENT and isinstance(inp, CommentTaken | NoComment):
            return self._on_comment(inp)
        return []

    def _begin(self, inp: BeginSurvey) -> list[SurveyAction]:
        if self.state is not SurveyState.START:
            return []
        if inp.kind not in SURVEY_KINDS:
            raise ValueError(f"unknown survey kind {inp.kind!r}")
        self.kind, self.language = inp.kind, inp.language
        self.state = SurveyState.RATING
        intro: Say
        if inp.kind == "return_visit":
            intro = Say("survey_return_visit_intro", {"case_number": inp.case_number or ""})
        else:
            intro = Say("survey_intro")
        return [SetLanguage(inp.language), Log(SurveyStarted(inp.kind)), intro,
                Collect("survey_rating", "rating")]

    def _on_rating(self, inp: SurveyInput) -> list[SurveyAction]:
        if isinstance(inp, NoInput):
            return self._miss(NothingHeard)
        if not isinstance(inp, Keys | Speech):
            return []
        rated = rating_from(inp)
        if rated is None:
            return self._miss(NotUnderstood)
        self.score, by = rated
        self.state = SurveyState.COMMENT
        return [Log(SurveyRated(self.score, by)),
                RecordRating(self.score, by), RecordComment()]

    def _miss(self, missed: type[NothingHeard | NotUnderstood]) -> list[SurveyAction]:
        self.misses += 1
        log = Log(missed(self.state.value, self.misses))
        why = missed.KIND  # also the name of the apology prompt
        if self.misses >= MAX_RATING_MISSES:
            self.state = SurveyState.DONE
            return [log, Log(SurveyUnrated(self.misses)), Say("goodbye"),
                    EndSurvey("no_answer")]
        variant = "short" if self.misses == 1 else "keys"
        return [log, Say(why), Collect(f"survey_rating_{variant}", "rating")]

    def _on_comment(self, inp: CommentTaken | NoComment) -> list[SurveyAction]:
        self.state = SurveyState.DONE
        seconds = round(inp.seconds, 1) if isinstance(inp, CommentTaken) else 0
        return [Log(SurveyCommented(seconds)), Say("survey_thanks"), EndSurvey("rated")]

    def _caller_left(self) -> list[SurveyAction]:
        state, self.state = self.state, SurveyState.DONE
        if state is SurveyState.COMMENT:  # rated already; the comment (if any) is kept
            return [EndSurvey("rated")]
        return [Log(SurveyAbandoned(state.value)), EndSurvey("no_answer")]
