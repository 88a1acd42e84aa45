"""The callers of ``bench.intake``, as data per flow: who calls, what they key or say and when
(seconds after the answer), which moment of the call is measured, and when they hang up.

Two flows are described:

- ``menu``: the flow the hotline had up to issue 13 -- greeting, language menu (callers whose
  language is unknown), main menu, then the case number. A caller who keys and says nothing
  hears the language menu three times and is handed to an agent.
- ``intake``: the menu-less greeting of issue 13 -- one short greeting that invites the caller
  to key or say a case number, or to stay on the line for a person; 8 = English and
  9 = Korean switch the language; read-back, verification and stage-only answers as before.

A caller stays on the line until ``hang_up_s`` (unless the line hangs up first), long
enough for the measured moment to come well after its time at one call; under load a
moment later than that is counted as lost.

Callers follow a fixed schedule (SIPp plays keys and audio from the answer on): a caller who
knows what to do and keys or speaks as soon as the flow lets them, barging into prompts where
the flow allows it, and waits for the prompts that need listening to (the read-back of the
case number). The schedules are what a flow asks of its callers; the bench also reports how
long after the caller's last input the measured moment came (the system's own part).

Kinds, with the moment measured from the answer:

- ``silent``: an unknown number (no language on file), keys and says nothing, line noise
  only -> joined the queue (``queued`` step);
- ``keyed``: 李秀英 (Mandarin on file) from her second phone, so the IVR asks for the last
  four digits of the case's contact phone: keys her case number, confirms the read-back,
  keys the four digits -> the status prompt starts (``status_full``/``status_stage_only``);
- ``spoken_status``: 김민준 (Korean on file, calling from the case's contact phone, so
  verified by the calling number) says a status request ("민원 조회", espeak-ng), keys his
  case number when asked and 1 (yes) after the read-back -> the status prompt starts.
  The number is keyed, not said: the Korean model does not understand espeak-ng's digits
  ("이 육 일 이 공 육 공 공 공 일 구" is heard as "이 오 이 영 넷 여섯 넷", and no spacing or
  wording tried did better), and it is the only recognizer installed. The yes is keyed
  too: the caller's audio stops before the first key (see
  ``bench.intake_calls.audio_seconds``: words after keys were not heard);
- ``spoken_agent``: 김민준 says "상담원 연결해 주세요" -> joined the queue.

``{case}`` in keys or words stands for the caller's demo case number (said digit by digit),
``{last4}`` for the last four digits of its contact phone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Measure = Literal["queue", "status"]
KINDS = ("silent", "keyed", "spoken_status", "spoken_agent")
FLOWS = ("menu", "intake")


@dataclass(frozen=True)
class Caller:
    number: str
    name: str
    language: str
    """The language the caller speaks (espeak-ng voice of their words)."""
    resident: str | None = None
    """The demo resident whose case they ask about."""


@dataclass(frozen=True)
class Scenario:
    kind: str
    caller: Caller
    measure: Measure
    hang_up_s: float
    """The caller hangs up this long after the answer, unless the line hung up first: a
    measured moment that has not come by then is lost."""
    keys: tuple[tuple[float, str], ...] = ()
    """(seconds after the answer, keys) -- each group keyed 0.25 s apart."""
    words: tuple[tuple[float, str], ...] = ()
    """(seconds after the answer, words) said in the caller's language."""
    via: str | None = None
    """The measured moment counts only when reached this way: "asked" (the flow heard the
    caller ask for a person), "case" (the status of the caller's case), "said_status" (that,
    after the flow heard the caller's status request), None (any way)."""
    script: str = ""


@dataclass(frozen=True)
class Flow:
    name: str
    description: str
    scenarios: dict[str, Scenario]
    status_prompts: tuple[str, ...] = ("status_full", "status_stage_only")
    queue_prefix: str = "hotline"
    """Every queue of the hotline starts with this name (per-language queues included)."""
    extra: dict[str, str] = field(default_factory=dict)


UNKNOWN = Caller("13500135000", "居民", "cmn")
LI = Caller("02512345678", "李秀英", "cmn", resident="李秀英")
KIM = Caller("13600136000", "김민준", "ko", resident="김민준")
AGENT_PLEASE = "상담원 연결해 주세요"
STATUS_PLEASE = "민원 조회"

MENU = Flow(
    "menu",
    "greeting, language menu (unknown callers), main menu, case number, read-back, "
    "verification (the flow of relayout-merged, replaced by issue 13)",
    {
        "silent": Scenario(
            "silent", UNKNOWN, "queue", hang_up_s=120,
            script="silent: greeting, the language menu three times, then the queue"),
        "keyed": Scenario(
            "keyed", LI, "status", hang_up_s=60,
            # 1 (main menu) barging into the greeting at 4 s, the number during "enter the
            # number" at 7 s, 1 (yes) once the ~10 s read-back has ended, the four digits
            # during "the last four digits of your phone".
            keys=((4.0, "1"), (7.0, "{case}"), (21.0, "1"), (25.0, "{last4}")),
            via="case",
            script="1 at 4 s, number at 7 s, 1 (yes) at 21 s, last four at 25 s"),
        "spoken_status": Scenario(
            "spoken_status", KIM, "status", hang_up_s=60,
            # "민원 조회" barging into the greeting, the number keyed during "say or key the
            # number", 1 (yes) once the Korean read-back (~15 s) has ended.
            words=((2.0, STATUS_PLEASE),), keys=((7.0, "{case}"), (26.0, "1")),
            via="said_status",
            script="'민원 조회' at 2 s, the number keyed at 7 s, 1 (yes) at 26 s"),
        "spoken_agent": Scenario(
            "spoken_agent", KIM, "queue", hang_up_s=60,
            words=((2.0, AGENT_PLEASE),), via="asked",
            script=f"'{AGENT_PLEASE}' at 2 s, barging into the greeting"),
    },
)

INTAKE = Flow(
    "intake",
    "one short greeting (say or key a case number, or stay on the line; 8 English, 9 Korean),"
    " read-back, verification (issue 13)",
    {
        "silent": Scenario(
            "silent", UNKNOWN, "queue", hang_up_s=40,
            script="silent: the greeting, then the queue"),
        "keyed": Scenario(
            "keyed", LI, "status", hang_up_s=50,
            # The number barging into the greeting at 2 s, 1 (yes) once the ~10 s read-back
            # has ended, the four digits during "the last four digits of your phone".
            keys=((2.0, "{case}"), (16.0, "1"), (20.0, "{last4}")),
            via="case",
            script="number at 2 s, 1 (yes) at 16 s, last four at 20 s"),
        "spoken_status": Scenario(
            "spoken_status", KIM, "status", hang_up_s=50,
            words=((2.0, STATUS_PLEASE),), keys=((5.0, "{case}"), (24.0, "1")),
            via="said_status",
            script="'민원 조회' at 2 s (barging into the greeting), the number keyed at 5 s, "
                   "1 (yes) at 24 s"),
        "spoken_agent": Scenario(
            "spoken_agent", KIM, "queue", hang_up_s=40,
            words=((2.0, AGENT_PLEASE),), via="asked",
            script=f"'{AGENT_PLEASE}' at 2 s, barging into the greeting"),
    },
)

BY_NAME = {f.name: f for f in (MENU, INTAKE)}


def flow(name: str) -> Flow:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown flow {name!r} (use {', '.join(FLOWS)})") from None


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown call kind(s) {', '.join(unknown) or '(none)'} "
                         f"(use {', '.join(KINDS)})")
    return kinds
