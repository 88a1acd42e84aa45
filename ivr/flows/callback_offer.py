"""The callback offer (dialplan context ``hotline-callback-offer``) as a pure state machine.

The dialplan sends a caller here with CALLBACK_REASON: ``chosen`` (they keyed the callback
in the queue), ``max_wait`` (the queue's maximum wait passed) or ``closed`` (outside the
opening hours). A caller who chose it hears it confirmed; the others are asked (1 yes,
2 no, or said). Junk keys and silence are ignored: the offer is asked again, up to
``MAX_ASKS`` times, then the caller is thanked and the answer is ``none``. A withheld or
malformed calling number cannot be called back: the caller is told so once and, when they
had chosen the callback in the queue, goes back to wait (answer ``requeue``).

``answer`` (yes, no, none, withheld, requeue) is what the driver tells the dialplan
(CALLBACK_ANSWER); the dialplan's HotlineCallbackAnswer event turns a yes into a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crm.telephony.steps import CallbackNotPossible, NothingHeard, NotUnderstood
from ivr.flows.menu import YES_NO_KEYS, Collect, Keys, Log, NoInput, Say, SetLanguage, Speech

OFFER_REASONS = ("chosen", "max_wait", "closed")
MAX_ASKS = 3


class OfferState(StrEnum):
    START = "start"
    ASKING = "callback_offer"
    DONE = "done"


@dataclass(frozen=True)
class BeginOffer:
    reason: str
    language: str
    number_problem: str | None = None
    """withheld or malformed: the number cannot be called back."""


@dataclass(frozen=True)
class Answer:
    """The flow is over: tell the dialplan ``answer``."""

    answer: str


OfferInput = BeginOffer | Keys | Speech | NoInput
OfferAction = Say | Collect | SetLanguage | Log | Answer


@dataclass
class CallbackOfferFlow:
    language: str = "cmn"
    state: OfferState = OfferState.START
    reason: str = "chosen"
    asks: int = 0

    def step(self, inp: OfferInput) -> list[OfferAction]:
        if self.state is OfferState.DONE:
            return []
        if isinstance(inp, BeginOffer):
            return self._begin(inp)
        if self.state is not OfferState.ASKING:
            return []
        yes: bool | None = None
        if isinstance(inp, Keys):
            yes = YES_NO_KEYS.get(inp.digits[:1])
        elif isinstance(inp, Speech):
            yes = inp.yes
        if yes is True:
            return self._done("yes", Say("callback_confirmed"))
        if yes is False:
            return self._done("no", Say("goodbye"))
        missed = NothingHeard if isinstance(inp, NoInput) else NotUnderstood
        log = Log(missed(self.state.value, self.asks))
        if self.asks >= MAX_ASKS:
            return [log, *self._done("none", Say("goodbye"))]
        self.asks += 1
        return [log, self._ask()]

    def _begin(self, inp: BeginOffer) -> list[OfferAction]:
        self.reason = inp.reason if inp.reason in OFFER_REASONS else "chosen"
        self.language = inp.language
        start: list[OfferAction] = [SetLanguage(inp.language)]
        if inp.number_problem is not None:
            told = [*start, Log(CallbackNotPossible(inp.number_problem, told=True)),
                    Say("callback_not_possible")]
            if self.reason == "chosen":
                return self._done("requeue", *told)
            return self._done("withheld", *told, Say("goodbye"))
        if self.reason == "chosen":
            return self._done("yes", *start, Say("callback_confirmed"))
        self.state, self.asks = OfferState.ASKING, 1
        return [*start, self._ask()]

    def _ask(self) -> Collect:
        variant = "" if self.asks <= 1 else ("_short" if self.asks == 2 else "_keys")
        return Collect(f"callback_offer{variant}", "yesno", vars={"reason": self.reason})

    def _done(self, answer: str, *actions: OfferAction) -> list[OfferAction]:
        self.state = OfferState.DONE
        return [*actions, Answer(answer)]
