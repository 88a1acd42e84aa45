"""What a recognized utterance means for the prompt that was listening (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from speech.grammar import INTAKE_INTENTS, STATUS_MENU_INTENTS, grammar_kind
from speech.intents import Intent, language_choice, match_intent
from speech.languages import Language
from speech.numbers import rating, spoken_digits, yes_no


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
