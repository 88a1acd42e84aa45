"""The typed call steps: every class serialises and reads back, rows stored before steps were
typed read as they were meant, the stored shapes did not change, and the screen pop has a
rendering for every step class (checked at run time and by mypy)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crm.i18n.catalogs import translator
from crm.live.screen_pop import transcript_phrase, transcript_text
from crm.telephony.events import (
    AgentAnswered,
    AgentCallEnded,
    AgentRinging,
    AgentRingStopped,
    CallerAbandoned,
    CallerQueued,
    queue_step,
)
from crm.telephony.steps import (
    SECRET_INPUT,
    STEP_CLASSES,
    AgentRung,
    BargeIn,
    CaseLookedUp,
    CaseNumberInvalid,
    KeysEntered,
    NotUnderstood,
    PromptPlayed,
    RecordingStarted,
    RouteChosen,
    SpeechHeard,
    Step,
    StepFields,
    SurveySkipped,
    SurveyWriteDeferred,
    UnknownStep,
    VerificationDigits,
    VerificationResult,
    redact_secret_steps,
    step_from_json,
    step_from_row,
)
from hotline.settings import REPO_ROOT

SPECIAL: dict[type, list[Any]] = {
    VerificationDigits: [VerificationDigits("keys", 4), VerificationDigits("speech", 2, 0.5,
                                                                             "agent")],
    UnknownStep: [UnknownStep("dtmf", {"key": "5"}), UnknownStep("told", {"case": 1}, 7)],
}
SAMPLES: dict[type, Any] = {str: "2001", int: 3, float: 1.5, bool: True}


def _sample(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return SAMPLES[hint]


def examples(cls: type) -> list[Any]:
    """One step of the class with every field set, and one with only the required fields."""
    if cls in SPECIAL:
        return SPECIAL[cls]
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    full = cls(**{f.name: _sample(hints[f.name]) for f in fields})
    least = cls(**{f.name: _sample(hints[f.name]) for f in fields
                   if f.default is dataclasses.MISSING})
    return [full, least]


def every_step_class(base: type = StepFields) -> set[type]:
    found: set[type] = set()
    for sub in base.__subclasses__():
        found |= {sub} | every_step_class(sub)
    return found


ALL_EXAMPLES = [step for cls in STEP_CLASSES for step in examples(cls)]


def test_the_step_union_names_every_step_class() -> None:
    assert {c for c in every_step_class() if c.__module__ != __name__} == set(STEP_CLASSES)
    kinds = [cls.KIND for cls in STEP_CLASSES if cls.KIND]
    assert len(kinds) == len(set(kinds)) == len(STEP_CLASSES) - 2  # all but the two below
    assert not VerificationDigits.KIND and not UnknownStep.KIND


@pytest.mark.parametrize("step", ALL_EXAMPLES, ids=lambda s: f"{type(s).__name__}")
def test_every_step_reads_back_from_json_and_from_its_row(step: Step) -> None:
    data = step.to_json()
    assert data["kind"] == step.kind and isinstance(data["v"], int)
    assert step_from_json(data) == step
    assert step_from_row(step.kind, step.detail()) == step  # a consultation steps row
    # A cluster's recorder adds the media node to the row: not one of the step's fields.
    assert step_from_row(step.kind, {**step.detail(), "node": "media-2"}) == step
    if data["v"] == 1:  # a journal line of before steps had versions
        assert step_from_json({"kind": step.kind, "detail": step.detail()}) == step


@pytest.mark.parametrize("step", ALL_EXAMPLES, ids=lambda s: f"{type(s).__name__}")
def test_the_pop_has_a_line_or_a_reason_for_every_step(step: Step) -> None:
    """transcript_text ends in assert_never: a class without a case raises here."""
    text = transcript_text(step)
    assert text is None or (isinstance(text, str) and text)
    phrase = transcript_phrase(step)  # and each line has its Chinese
    assert (phrase is None) == (text is None)
    if phrase is not None:
        zh = translator("zh_CN")
        assert zh.gettext(phrase.msgid) != phrase.msgid, phrase.msgid
        assert zh.phrase(phrase)


class NewStep(StepFields):
    """A step class added without a case in the pop."""

    KIND = "brand_new"


def test_a_step_class_the_pop_does_not_know_fails() -> None:
    with pytest.raises(AssertionError):
        transcript_text(NewStep())  # type: ignore[arg-type]


def _mypy(*paths: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
         "--cache-dir", str(cache), *map(str, paths)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_mypy_finds_every_step_class_handled_by_the_pop(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy (in the test extras) checks the pop's match")
    done = _mypy(REPO_ROOT / "crm/telephony/steps.py", REPO_ROOT / "crm/live/screen_pop.py",
                 cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr
    # The same check on a match that forgets one class does fail.
    names = [cls.__name__ for cls in STEP_CLASSES if cls is not UnknownStep]
    forgetful = tmp_path / "forgetful.py"
    forgetful.write_text(textwrap.dedent(f"""
        from typing import assert_never
        from crm.telephony.steps import Step, {", ".join(names)}

        def text(step: Step) -> str:
            match step:
                case {" | ".join(f"{n}()" for n in names)}:
                    return "known"
                case _:
                    assert_never(step)
        """))
    failed = _mypy(forgetful, cache=tmp_path / "cache")
    assert failed.returncode != 0 and '"UnknownStep"; expected "Never"' in failed.stdout, (
        failed.stdout + failed.stderr)


# -- what is stored did not change ------------------------------------------------------------
T = datetime(2026, 11, 22, 9, tzinfo=UTC)


@pytest.mark.parametrize(("step", "stored"), [
    (RouteChosen("end"), {"route": "end"}),
    (RouteChosen("agent", "asked"), {"route": "agent", "reason": "asked"}),
    (VerificationResult(by="calling_number"), {"by": "calling_number"}),
    (VerificationResult(result=False, reason="no contact"),
     {"result": False, "reason": "no contact"}),
    (VerificationResult(by="last4", result=True, length=4),
     {"by": "last4", "result": True, "length": 4}),
    (SpeechHeard("查询", 0.9, None, ""), {"text": "查询", "confidence": 0.9, "intent": None,
                                          "digits": ""}),
    (SpeechHeard("五分", 0.8, None, "5", 5), {"text": "五分", "confidence": 0.8,
                                             "intent": None, "digits": "5", "rating": 5}),
    (VerificationDigits("keys", 4), {"secret": SECRET_INPUT, "length": 4}),
    (VerificationDigits("speech", 4, 0.7), {"secret": SECRET_INPUT, "length": 4,
                                            "confidence": 0.7}),
    (CaseNumberInvalid("123", 2), {"digits": "123", "try": 2}),
    (NotUnderstood("main_menu"), {"state": "main_menu"}),
    (NotUnderstood("main_menu", 2), {"state": "main_menu", "count": 2}),
    (PromptPlayed("greeting", "cmn"), {"prompt": "greeting", "language": "cmn"}),
    (SurveySkipped("surveyed recently", fatigue_days=30),
     {"reason": "surveyed recently", "fatigue_days": 30}),
    (SurveyWriteDeferred(7, "rating", True, score=4, by="keys"),
     {"survey_id": 7, "op": "rating", "queued": True, "score": 4, "by": "keys"}),
    (RecordingStarted("/spool/a.wav", "hotline"), {"file": "/spool/a.wav", "queue": "hotline"}),
])
def test_steps_are_stored_as_before(step: Step, stored: dict[str, Any]) -> None:
    assert step.detail() == stored
    assert step_from_row(step.kind, stored) == step


def test_queue_events_are_stored_as_before() -> None:
    steps = [queue_step(e) for e in (
        CallerQueued("c", "hotline", 1),
        AgentRinging("c", "hotline", "PJSIP/2001", "2001"),
        AgentRingStopped("c", "hotline", "PJSIP/2001", "2001", 15),
        AgentAnswered("c", "hotline", "PJSIP/2001", "2001", hold_time_s=3),
        AgentAnswered("c", "hotline", "PJSIP/2001", "2001", resynchronised=True),
        AgentCallEnded("c", "hotline", "PJSIP/2001", "2001", 40, "caller"),
        CallerAbandoned("c", "hotline", 1, 2, 14))]
    assert [(s.kind, s.detail()) for s in steps] == [
        ("queued", {"queue": "hotline", "position": 1}),
        ("agent_ringing", {"queue": "hotline", "agent": "2001", "interface": "PJSIP/2001"}),
        ("agent_no_answer", {"queue": "hotline", "agent": "2001", "ring_time_s": 15}),
        ("agent_answered", {"queue": "hotline", "agent": "2001", "interface": "PJSIP/2001",
                            "hold_time_s": 3}),
        ("agent_answered", {"queue": "hotline", "agent": "2001", "interface": "PJSIP/2001",
                            "hold_time_s": None, "resynchronised": True}),
        ("agent_completed", {"queue": "hotline", "agent": "2001", "talk_time_s": 40,
                             "reason": "caller"}),
        ("abandoned", {"queue": "hotline", "position": 1, "hold_time_s": 14})]


# -- rows stored before, and rows this code cannot read -----------------------------------------
def test_old_rows_read_as_their_classes() -> None:
    assert step_from_row("verified", {"by": "last4"}) == VerificationResult(by="last4")
    assert step_from_row("verified", {"by": "last4"}).ok  # type: ignore[union-attr]
    assert step_from_row("keys", {"secret": SECRET_INPUT, "length": 4}) == \
        VerificationDigits("keys", 4)
    assert step_from_row("speech", {"text": "查询", "intent": "check_status",
                                    "confidence": 0.9}) == \
        SpeechHeard("查询", 0.9, "check_status")
    assert step_from_row("case_lookup", {"number": "1", "found": False}) == \
        CaseLookedUp("1", False)
    assert step_from_row("agent_ringing", {"agent": "2001"}) == AgentRung(agent="2001")
    assert step_from_row("recording", {"file": "/spool/a.wav"}) == \
        RecordingStarted("/spool/a.wav")
    assert step_from_row("barge_in", {"prompt": "greeting"}) == BargeIn("greeting")
    # A journal line written before steps had versions holds the row form.
    assert step_from_json({"kind": "keys", "detail": {"keys": "1"}}) == KeysEntered("1")


def test_rows_that_fit_no_class_are_kept_as_they_were() -> None:
    unknown = step_from_row("dtmf", {"key": "5"})
    assert unknown == UnknownStep("dtmf", {"key": "5"})
    assert (unknown.kind, unknown.detail()) == ("dtmf", {"key": "5"})
    extra = step_from_row("keys", {"keys": "1", "channel": "PJSIP/x"})
    assert isinstance(extra, UnknownStep) and extra.detail() == {"keys": "1", "channel": "PJSIP/x"}
    missing = step_from_row("told", {"stage": "accepted"})
    assert isinstance(missing, UnknownStep) and missing.kind == "told"
    newer = step_from_json({"kind": "told", "v": 2, "case": "x", "stage": "y", "tone": "warm"})
    assert newer == UnknownStep("told", {"case": "x", "stage": "y", "tone": "warm"}, 2)
    assert step_from_json(newer.to_json()) == newer
    assert transcript_text(unknown) == "dtmf: key=5"  # shown as it is, never dropped


def test_old_verification_digits_are_redacted_typed() -> None:
    steps: list[Step] = [PromptPlayed("ask_phone_last4", "cmn"), KeysEntered("80#"),
                         NotUnderstood("verify_last4", 1),
                         SpeechHeard("八零零零", 0.9, None, "8000"),
                         VerificationResult(by="last4"), KeysEntered("3"),
                         UnknownStep("keys", {"keys": "8000", "via": "old"}),
                         VerificationResult(by="last4", result=False)]
    assert redact_secret_steps(steps) == [
        steps[0], VerificationDigits("keys", 2), steps[2], VerificationDigits("speech", 4),
        steps[4], KeysEntered("3"), VerificationDigits("keys", 4), steps[7]]
    assert steps[1] == KeysEntered("80#")  # the input is not changed
