"""The hotline's IVR call flow as an explicit, pure state machine.

``CallFlow.step(inp)`` takes one input (what the caller said or keyed, or the answer of a
lookup) and returns the actions to perform next; it performs no I/O. The driver
(``ivr/menu_call.py``) executes the actions (play prompts, collect input, look up cases, route)
and feeds the results back. Every transition is therefore testable without Asterisk.

Intake without menus: one short greeting (in the resident's known language, else the
default) invites the caller to say or key a case number, or to stay on the line for a
person. Silence after it (``IntakeKeys.silence_timeout``), anything said that is not a status
request, a request for a person, or a stray key: the caller joins the queue at once, in their
language's queue. Keys acted on as the first key pressed (``IntakeKeys``): a language key
switches language and replays the greeting once in it; the service-information key tells the
opening hours and addresses and returns to the greeting; the check-status key asks for a case
number. A case number keyed (digits, then '#' or its full length) or said at the greeting
goes straight to read back and confirm -> verification (calling number or last four digits of
the contact phone) -> status -> hear again / agent / end (one short prompt). No input or no
match after the greeting: re-prompt once with a shorter prompt, then keys only, then an agent.

What the caller keys or says to verify is a secret: the flow asks for it with a ``secret``
Collect (the driver records only that digits were entered and how many) and logs only the
outcome, never the digits. Failed attempts are limited per call here (``MAX_CASE_TRIES`` case
numbers and one verification per call, then an agent) and, for callers whose number is known,
per number and per case by the driver's guard (``crm.cases.lookup.LookupGuard``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crm.cases.lookup import CaseStatus
from crm.cases.numbers import CASE_NUMBER_LENGTH, is_valid_case_number
from crm.telephony.steps import (
    ArticleRead,
    CaseNumberConfirmed,
    CaseNumberInvalid,
    CaseNumberRejected,
    CaseUrged,
    IntentChosen,
    LanguageChosen,
    LookupBlocked,
    NoSuchCase,
    NothingHeard,
    NotUnderstood,
    RouteChosen,
    StatusRepeated,
    StatusTold,
    Step,
    VerificationResult,
)
from speech.understanding import NUMBER_MIN_DIGITS

STATUS_MENU_KEYS = {"1": "repeat", "2": "agent", "3": "end"}
URGE_KEY = "4"
"""After the status of an overdue case (verified caller): key it to urge the case (催办);
the status read-back names the key."""
YES_NO_KEYS = {"1": True, "2": False}
MAX_CASE_TRIES = 3
MAX_GREETINGS = 3
"""The greeting is heard at most this often (language switches, service information); a
caller who asks for more joins the queue."""
MIN_SPOKEN_CASE_DIGITS = NUMBER_MIN_DIGITS
"""Fewer digits heard at the greeting are not taken for a case number (nor is a reading with
fewer preferred by the recognizer's side, speech.understanding)."""


@dataclass(frozen=True)
class IntakeKeys:
    """The keys the greeting acts on as the first key pressed (ivr.settings.IntakeSettings
    configures them), and how long it listens after the greeting."""

    languages: Mapping[str, str] = field(default_factory=lambda: {"en": "8", "ko": "9"})
    """language -> key"""
    service_info: str | None = "0"
    check_status: str | None = "1"
    silence_timeout: float = 1.5

    def commands(self) -> frozenset[str]:
        keys = {*self.languages.values(), self.service_info, self.check_status}
        return frozenset(k for k in keys if k)

    def language_of(self, key: str) -> str | None:
        return next((lang for lang, k in self.languages.items() if k == key), None)

    def greeting_vars(self) -> dict[str, Any]:
        """What the greeting names: the language keys (language -> key; each pack leaves
        out its own language) and the service-information key."""
        return {"language_keys": dict(self.languages), "info_key": self.service_info or ""}


class State(StrEnum):
    GREETING = "greeting"
    CASE_NUMBER = "case_number"
    CONFIRM_CASE = "confirm_case"
    LOOKUP = "lookup"
    VERIFY_LAST4 = "verify_last4"
    STATUS_MENU = "status_menu"
    TOPIC = "topic"
    """Service information from the knowledge base: the caller says or keys a topic."""
    DONE = "done"


# ---- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Begin:
    caller_number: str | None
    known_language: str | None = None


@dataclass(frozen=True)
class Keys:
    digits: str


@dataclass(frozen=True)
class Speech:
    text: str
    intent: str | None = None
    digits: str = ""
    yes: bool | None = None
    confidence: float | None = None
    language: str | None = None
    rating: int | None = None
    """A satisfaction score 1..5, when listening with the ``rating`` grammar."""


@dataclass(frozen=True)
class NoInput:
    pass


@dataclass(frozen=True)
class LookupResult:
    case: CaseStatus | None
    blocked: bool = False
    verification_locked: bool = False
    """Too many failed digit verifications for this case lately: do not ask for digits."""


@dataclass(frozen=True)
class TopicsListed:
    """The topics the caller may key: (key, title), by key."""

    topics: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AnswerFound:
    """The knowledge base's answer to the topic asked (None: no article; a person helps)."""

    article_id: int | None
    title: str = ""
    text: str = ""
    by: str = "keys"


@dataclass(frozen=True)
class UrgeResult:
    count: int | None
    """How often the case has been urged in all (None: the urge could not be recorded)."""


Input = (Begin | Keys | Speech | NoInput | LookupResult | TopicsListed | AnswerFound
         | UrgeResult)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    prompt: str
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Collect:
    """Listen for the caller: ``grammar`` names the phrase set; keys end at ``max_digits`` or
    '#'. ``prompt`` is played with barge-in before listening."""

    prompt: str
    grammar: str
    max_digits: int = 1
    vars: dict[str, Any] = field(default_factory=dict)
    secret: bool = False
    """The answer is a verification secret: it must not be recorded (see ivr.menu_call)."""
    timeout: float | None = None
    """Seconds to wait for the first input after the prompt (None: the driver's default)."""
    commands: frozenset[str] = frozenset()
    """Keys that end the input at once when pressed first (the greeting's single keys)."""


@dataclass(frozen=True)
class SetLanguage:
    language: str


@dataclass(frozen=True)
class LookupCase:
    number: str


@dataclass(frozen=True)
class RecordFailure:
    """A wrong case number or failed verification, counted against the calling number (when
    it is known) and, for a failed verification, against the ``case`` as well."""

    reason: str
    case: str | None = None


@dataclass(frozen=True)
class Log:
    """Record a step of the call (published as a call event, stored on the consultation)."""

    step: Step


@dataclass(frozen=True)
class Route:
    route: str  # "agent" or "end"
    language: str | None = None
    """The caller's language: an agent route waits in that language's queue."""


@dataclass(frozen=True)
class ListTopics:
    """Ask the knowledge base which topics are offered by key in the caller's language."""


@dataclass(frozen=True)
class FindAnswer:
    """Ask the knowledge base for the answer to a keyed topic or to the caller's words."""

    key: str | None = None
    words: str | None = None


@dataclass(frozen=True)
class UrgeCase:
    """Record the caller's urge (催办) on the case."""

    number: str
    by: str
    """keys or speech"""


Action = (Say | Collect | SetLanguage | LookupCase | RecordFailure | Log | Route | ListTopics
          | FindAnswer | UrgeCase)


# ---- the machine ---------------------------------------------------------------------------


@dataclass
class CallFlow:
    default_language: str = "cmn"
    language: str = "cmn"
    state: State = State.GREETING
    caller_number: str | None = None
    misses: int = 0
    case_tries: int = 0
    candidate: str = ""
    case: CaseStatus | None = None
    verified: bool = False
    last_collect: Collect | None = None
    intake: IntakeKeys = field(default_factory=IntakeKeys)
    greetings: int = 0
    knowledge: bool = False
    """Service information comes from the knowledge base (say or key a topic, hear its
    answer); False: the fixed service_info prompt."""
    urged: bool = False
    urge_by: str = "keys"

    def step(self, inp: Input) -> list[Action]:
        if self.state is State.DONE:
            return []
        if isinstance(inp, Begin):
            return self._begin(inp)
        if isinstance(inp, LookupResult):
            return self._looked_up(inp)
        if isinstance(inp, TopicsListed):
            return self._enter(State.TOPIC, self._collect(
                "ask_topic", "topic", topics=[list(t) for t in inp.topics]))
        if isinstance(inp, AnswerFound):
            return self._answered(inp)
        if isinstance(inp, UrgeResult):
            return self._urge_recorded(inp)
        if isinstance(inp, NoInput):
            if self.state is State.GREETING:
                return self._to_agent("silent", announce=False)
            return self._miss(NothingHeard)
        handler = {
            State.GREETING: self._on_greeting,
            State.CASE_NUMBER: self._on_case_number,
            State.CONFIRM_CASE: self._on_confirm,
            State.VERIFY_LAST4: self._on_last4,
            State.STATUS_MENU: self._on_status_menu,
            State.TOPIC: self._on_topic,
        }.get(self.state)
        if handler is None:
            return []
        return handler(inp)

    # -- helpers

    def _collect(self, prompt: str, grammar: str, max_digits: int = 1, *, secret: bool = False,
                 **vars: Any) -> Collect:
        self.last_collect = Collect(prompt, grammar, max_digits, vars, secret)
        return self.last_collect

    def _enter(self, state: State, collect: Collect, *before: Action) -> list[Action]:
        self.state = state
        self.misses = 0
        return [*before, collect]

    def _greeting(self, *before: Action) -> list[Action]:
        """The short greeting, listening for a case number, a command key or words."""
        self.greetings += 1
        if self.greetings > MAX_GREETINGS:
            return [*before, *self._to_agent("greeting repeated", announce=False)]
        self.last_collect = Collect(
            "greeting", "intake", CASE_NUMBER_LENGTH, self.intake.greeting_vars(),
            timeout=self.intake.silence_timeout, commands=self.intake.commands())
        return self._enter(State.GREETING, self.last_collect, *before)

    def _ask_case(self, prompt: str = "ask_case_number", *before: Action) -> list[Action]:
        return self._enter(State.CASE_NUMBER,
                           self._collect(prompt, "digits", CASE_NUMBER_LENGTH), *before)

    def _to_agent(self, reason: str, *, announce: bool = True) -> list[Action]:
        """To the queue of the caller's language. At the greeting the caller was just told
        to stay on the line: no transfer prompt delays them there."""
        self.state = State.DONE
        say: list[Action] = [Say("transfer_to_agent")] if announce else []
        return [Log(RouteChosen("agent", reason)), *say, Route("agent", self.language)]

    def _end(self) -> list[Action]:
        self.state = State.DONE
        return [Log(RouteChosen("end")), Say("goodbye"), Route("end")]

    def _miss(self, missed: type[NothingHeard | NotUnderstood]) -> list[Action]:
        """No input or no match: shorter re-prompt, then keys only, then an agent."""
        self.misses += 1
        log = Log(missed(self.state.value, self.misses))
        why = missed.KIND  # also the name of the apology prompt
        if self.misses >= 3 or self.last_collect is None:
            return [log, *self._to_agent(f"{why} x{self.misses}")]
        base = self.last_collect
        variant = "short" if self.misses == 1 else "keys"
        retry = Collect(f"{base.prompt}_{variant}", base.grammar, base.max_digits, base.vars,
                        base.secret)
        return [log, Say(why), retry]

    # -- states

    def _begin(self, inp: Begin) -> list[Action]:
        self.caller_number = inp.caller_number
        if inp.known_language:
            self.language = inp.known_language
            return self._greeting(SetLanguage(self.language),
                                  Log(LanguageChosen(self.language, "profile")))
        self.language = self.default_language
        return self._greeting()

    def _switch_language(self, lang: str, by: str) -> list[Action]:
        self.language = lang
        return self._greeting(SetLanguage(lang), Log(LanguageChosen(lang, by)))

    def _on_greeting(self, inp: Input) -> list[Action]:
        if isinstance(inp, Keys):
            return self._greeting_keys(inp.digits)
        if not isinstance(inp, Speech):
            return self._to_agent("not understood", announce=False)
        # A request wins over a number, a number over a language's name: a language is
        # switched by speech only when nothing else was heard (words misheard as "English"
        # must not switch the caller's language).
        if inp.intent is None and len(inp.digits) >= MIN_SPOKEN_CASE_DIGITS:
            return self._case_number(inp.digits)
        if inp.intent is None and not inp.digits and inp.language \
                and inp.language != self.language:
            return self._switch_language(inp.language, "speech")
        if inp.intent == "check_status":
            return self._ask_case("ask_case_number",
                                  Log(IntentChosen("check_status", "speech")))
        if inp.intent == "service_info":
            return self._service_info("speech")
        if inp.intent == "agent":
            return [Log(IntentChosen("agent", "speech")),
                    *self._to_agent("asked", announce=False)]
        return [Log(NotUnderstood(self.state.value)),
                *self._to_agent("not a status request", announce=False)]

    def _greeting_keys(self, keyed: str) -> list[Action]:
        digits = keyed.rstrip("#")
        if len(digits) == 1 and digits in self.intake.commands():
            if (lang := self.intake.language_of(digits)) is not None:
                return self._switch_language(lang, "key")
            if digits == self.intake.service_info:
                return self._service_info("keys")
            return self._ask_case("ask_case_number", Log(IntentChosen("check_status", "keys")))
        if len(digits) > 1 and digits.isdigit():
            return self._case_number(digits)
        # A stray key ('*', '#', a digit that is no command): a person will help.
        return [Log(NotUnderstood(self.state.value)),
                *self._to_agent("stray key", announce=False)]

    def _service_info(self, by: str) -> list[Action]:
        chosen = Log(IntentChosen("service_info", by))
        if not self.knowledge:
            return self._greeting(chosen, Say("service_info"))
        self.state = State.TOPIC
        return [chosen, ListTopics()]

    def _on_topic(self, inp: Input) -> list[Action]:
        if isinstance(inp, Keys):
            key = inp.digits.rstrip("#")[:1]
            if not key.isdigit():
                return self._miss(NotUnderstood)
            return [FindAnswer(key=key)]
        if isinstance(inp, Speech):
            if inp.intent == "agent":
                return self._to_agent("asked")
            if inp.text.strip():
                return [FindAnswer(words=inp.text)]
        return self._miss(NotUnderstood)

    def _answered(self, inp: AnswerFound) -> list[Action]:
        """An answer is read and the caller is back at the greeting; anything the knowledge
        base has no answer to goes to a person."""
        if inp.article_id is None:
            return [Log(NotUnderstood(State.TOPIC.value)), *self._to_agent("no article")]
        return self._greeting(Log(ArticleRead(inp.article_id, inp.title, inp.by)),
                              Say("knowledge_answer", {"answer": inp.text}))

    def _on_case_number(self, inp: Input) -> list[Action]:
        digits = inp.digits.rstrip("#") if isinstance(inp, Keys) else ""
        if isinstance(inp, Speech):
            if inp.intent == "agent":
                return self._to_agent("asked")
            digits = inp.digits
        if not digits:
            return self._miss(NotUnderstood)
        return self._case_number(digits)

    def _case_number(self, digits: str) -> list[Action]:
        """A case number heard or keyed: read it back for confirmation, unless it cannot be
        one (then ask again, up to MAX_CASE_TRIES)."""
        self.case_tries += 1
        if not is_valid_case_number(digits):
            log = Log(CaseNumberInvalid(digits, self.case_tries))
            if self.case_tries >= MAX_CASE_TRIES:
                return [log, RecordFailure("invalid_number"), *self._to_agent("invalid numbers")]
            return self._ask_case("case_number_invalid", log, RecordFailure("invalid_number"))
        self.candidate = digits
        return self._enter(State.CONFIRM_CASE,
                           self._collect("confirm_case_number", "yesno", digits=digits))

    def _on_confirm(self, inp: Input) -> list[Action]:
        yes = YES_NO_KEYS.get(inp.digits[:1]) if isinstance(inp, Keys) else None
        if isinstance(inp, Speech):
            yes = inp.yes
        if yes is None:
            return self._miss(NotUnderstood)
        if not yes:
            return self._ask_case("ask_case_number", Log(CaseNumberRejected()))
        self.state = State.LOOKUP
        return [Log(CaseNumberConfirmed(self.candidate)),
                LookupCase(self.candidate)]

    def _looked_up(self, inp: LookupResult) -> list[Action]:
        if inp.blocked:
            return [Log(LookupBlocked()), Say("too_many_attempts"),
                    *self._to_agent("too many failed attempts")]
        if inp.case is None:
            log = Log(NoSuchCase(self.candidate))
            if self.case_tries >= MAX_CASE_TRIES:
                return [log, RecordFailure("unknown_number"), *self._to_agent("not found")]
            return self._ask_case("case_not_found", log, RecordFailure("unknown_number"))
        self.case = inp.case
        contact = inp.case.contact_phone
        if contact and self.caller_number and _same_phone(contact, self.caller_number):
            self.verified = True
            return self._tell_status(Log(VerificationResult(by="calling_number")))
        if not contact:
            return self._tell_status(Log(VerificationResult(result=False, reason="no contact")))
        if inp.verification_locked:
            return self._tell_status(
                Log(VerificationResult(result=False, reason="verification_locked")),
                Say("verification_failed"))
        return self._enter(State.VERIFY_LAST4,
                           self._collect("ask_phone_last4", "digits", 4, secret=True))

    def _on_last4(self, inp: Input) -> list[Action]:
        """The caller's answer is compared and forgotten: only its length and the outcome
        are logged."""
        digits = inp.digits.rstrip("#") if isinstance(inp, Keys) else ""
        if isinstance(inp, Speech):
            if inp.intent == "agent":
                return self._to_agent("asked")
            digits = inp.digits
        if len(digits) != 4 or not digits.isdigit() or self.case is None:
            return self._miss(NotUnderstood)
        contact = "".join(c for c in self.case.contact_phone or "" if c.isdigit())
        self.verified = len(contact) >= 4 and contact[-4:] == digits
        outcome = Log(VerificationResult(by="last4", result=self.verified, length=len(digits)))
        if self.verified:
            return self._tell_status(outcome)
        return self._tell_status(outcome, RecordFailure("verification_failed", self.case.number),
                                 Say("verification_failed"))

    def _tell_status(self, *before: Action) -> list[Action]:
        assert self.case is not None
        case = self.case
        if self.verified:
            say = Say("status_full", {"stage": case.stage, "department": case.department,
                                      "deadline": case.deadline, "update": case.latest_update,
                                      "urge_key": URGE_KEY if self._may_urge() else ""})
        else:
            say = Say("status_stage_only", {"stage": case.stage})
        told = Log(StatusTold(case.number, case.stage, self.verified))
        return self._enter(State.STATUS_MENU, self._collect("after_status_menu", "status_menu"),
                           *before, say, told)

    def _may_urge(self) -> bool:
        """A verified caller may urge an overdue case once a call."""
        return self.verified and self.case is not None and self.case.overdue and not self.urged

    def _urge_recorded(self, inp: UrgeResult) -> list[Action]:
        assert self.case is not None
        self.urged = True
        return self._enter(State.STATUS_MENU, self._collect("after_status_menu", "status_menu"),
                           Log(CaseUrged(self.case.number, self.urge_by, inp.count)),
                           Say("urge_recorded" if inp.count else "urge_failed"))

    def _on_status_menu(self, inp: Input) -> list[Action]:
        urge_by = ("keys" if isinstance(inp, Keys) and inp.digits[:1] == URGE_KEY else
                   "speech" if isinstance(inp, Speech) and inp.intent == "urge" else None)
        if urge_by is not None and self._may_urge():
            assert self.case is not None
            self.urge_by = urge_by
            return [UrgeCase(self.case.number, urge_by)]
        choice = STATUS_MENU_KEYS.get(inp.digits[:1]) if isinstance(inp, Keys) else None
        if isinstance(inp, Speech):
            choice = inp.intent if inp.intent in ("repeat", "agent", "end") else None
        if choice is None:
            return self._miss(NotUnderstood)
        if choice == "agent":
            return self._to_agent("after status")
        if choice == "end":
            return self._end()
        return self._tell_status(Log(StatusRepeated()))


def _same_phone(a: str, b: str) -> bool:
    """Compare phone numbers by their last 11 digits (ignores +86 / 0086 prefixes)."""
    da = "".join(c for c in a if c.isdigit())[-11:]
    db = "".join(c for c in b if c.isdigit())[-11:]
    return bool(da) and da == db
