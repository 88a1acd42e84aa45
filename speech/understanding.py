"""What a recognized utterance means for the prompt that was listening (pure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from speech.grammar import INTAKE_INTENTS, STATUS_MENU_INTENTS, grammar_kind
from speech.intents import Intent, language_choice, match_intent
from speech.languages import Language
from speech.numbers import rating, spoken_digits, yes_no
from speech.recognizer import Hypothesis

READING_MARGIN: Final = 3.0
"""A lower reading of an utterance is taken over the first only if its log-likelihood is
within this much of the first's (measured: bench/intake_speech.py)."""
NUMBER_MIN_DIGITS: Final = 4
ALTERNATIVE_NUMBER_DIGITS: Final = 11
"""A reading behind the best counts as a number only when it is a whole case number: "상담원
연결해 주세요" was once taken as its fourth reading "아홉 여덟 넷 영" (a 4-digit number, then
"invalid number" instead of a person)."""
"""A reading at the greeting with fewer digits (and no request) means nothing; the greeting's
flow takes no fewer as a case number (ivr.flows.menu.MIN_SPOKEN_CASE_DIGITS is this)."""


@dataclass(frozen=True, slots=True)
class Understanding:
    text: str
    intent: Intent | None = None
    digits: str = ""
    yes: bool | None = None
    rating: int | None = None
    language: Language | None = None


def understand(text: str, lang: str, grammar: str) -> Understanding:
    """Interpret ``text`` the way the grammar's prompt asked: an intent for the menus (and,
    with a case number and a language, for the greeting's ``intake`` grammar),
    digits for numbers, yes/no for confirmations, 1..5 for the survey, a language."""
    kind = grammar_kind(grammar)
    if kind == "menu":
        return Understanding(text, intent=match_intent(text, lang).intent)
    if kind == "intake":
        # The greeting: a case number, a request (status, service information, a person),
        # or the name of another language.
        return Understanding(text, intent=match_intent(text, lang, INTAKE_INTENTS).intent,
                             digits=spoken_digits(text, lang),
                             language=language_choice(text, lang))
    if kind == "status_menu":
        return Understanding(text, intent=match_intent(text, lang, STATUS_MENU_INTENTS).intent)
    if kind == "yes_no":
        return Understanding(text, yes=yes_no(text, lang))
    if kind == "digits":
        return Understanding(text, digits=spoken_digits(text, lang))
    if kind == "rating":
        return Understanding(text, rating=rating(text, lang))
    return Understanding(text, language=language_choice(text, lang))


def _means_something(u: Understanding, kind: str) -> bool:
    if kind == "intake":
        return u.intent is not None or len(u.digits) >= NUMBER_MIN_DIGITS
    return u.intent is not None


def understand_readings(readings: Sequence[Hypothesis], lang: str, grammar: str,
                        whole: Callable[[str], bool], *,
                        margin: float = READING_MARGIN) -> Understanding | None:
    """What the caller said, from vosk's n best readings (best first): the first reading when
    it means a request or a case number; else the first within ``margin`` of the best that
    is made of whole phrases of the grammar (``whole``, see
    ``speech.grammar.LanguageGrammars.reads_as_phrases``) and means one; None when no
    reading does (the first reading, understood as it is, means nothing).

    "민원 조회" heard as "민원 여덟" first and "민원 조회" a hair behind: the second is taken.
    A first reading that means something is kept as before (a request for a person is not
    swapped for a status request behind it), and readings that are not whole phrases are
    never preferred, so words the grammar does not have are not pulled onto a request."""
    if not readings:
        return None
    kind = grammar_kind(grammar)
    first = understand(readings[0].text, lang, grammar)
    if _means_something(first, kind):
        return first
    best = readings[0].likelihood
    for reading in readings[1:]:
        if reading.likelihood < best - margin:
            break
        if not whole(reading.text):
            continue
        u = understand(reading.text, lang, grammar)
        if u.intent is not None or (kind == "intake"
                                    and len(u.digits) >= ALTERNATIVE_NUMBER_DIGITS):
            return u
    return None
