"""When a caller's words so far may end a listening turn sooner or must wait longer (pure).

The recognizer ends a turn after a run of quiet (``speech.recognizer``, ``[speech]``
``end_silence``); what was said so far changes how much quiet that takes:

- ``ends_with_digit``: where a number may be said, a pause after a digit is not yet the end
  (callers pause between the groups of a number): ``end_silence_digits``;
- ``completes_request``: words that already are an answer to the prompt as the call flow
  understands them (a menu request, yes or no, a rating, a language), with no longer phrase
  of the grammar starting where they stop, need no more thought: ``end_silence_complete``.
  "상담원 연결해 주세요" at the greeting ends after it (and so does the model's "하나 민원
  연결해 주세요" for it, which the greeting takes as a request for a person); "상담원" does
  not, since "상담원 연결해 주세요" may follow (a pause inside a request keeps the longer
  quiet), and neither does a number, a free-text topic or words ending with a digit.

The recognizer asks this of its final decode after the shorter quiet, not of its partial
readings: those change their last word while the caller is already quiet ("상담원 연결해
주세요" -> "상담원 연결해 넷" -> back, measured on the bench's phrase).

Semantic endpointing of this kind is what keeps a spoken menu answer from costing the caller
the whole end-of-speech quiet (BENCHMARKS.md, session 30).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from speech.grammar import grammar_kind
from speech.numbers import spoken_digits
from speech.understanding import NUMBER_MIN_DIGITS, understand

OPEN_ENDED: Final = frozenset({"digits", "topic"})
"""Grammars whose answers can always go on (a number, a question): never ended early."""


class PhraseGrammars(Protocol):
    """What the check reads of a language's grammars (speech.grammar.LanguageGrammars)."""

    def continues(self, kind: str, text: str) -> bool: ...


def ends_with_digit(text: str, lang: str) -> bool:
    """Whether the last word recognized so far is (part of) a number."""
    words = text.split()
    return bool(words) and bool(spoken_digits(words[-1], lang))


def completes_request(text: str, *, lang: str, grammar: str, grammars: PhraseGrammars) -> bool:
    """Whether ``text`` (the words heard so far) is already an answer to a prompt that
    listens with ``grammar``: understood as one, not ending with a digit (but for a rating),
    and not the start of a longer phrase."""
    kind = grammar_kind(grammar)
    if kind in OPEN_ENDED or not text.strip():
        return False
    if kind != "rating" and ends_with_digit(text, lang):
        return False  # a case number may go on
    if grammars.continues(kind, text):
        return False
    u = understand(text, lang, kind)
    return (u.intent is not None or u.yes is not None or u.rating is not None
            or u.language is not None)


@dataclass(frozen=True, slots=True)
class GrammarRequestEnd:
    """``completes_request`` for one language and grammar, as the recognizer asks it
    (speech.recognizer.RequestEnd)."""

    lang: str
    grammar: str
    grammars: PhraseGrammars

    def may_complete(self, partial: str) -> bool:
        """Not while a number is being said: a partial reading that holds a case number's
        first digits (4 or more) goes on after its pauses, and decoding it to the end only to
        find that out costs a decode of the whole utterance each time."""
        return len(spoken_digits(partial, self.lang)) < NUMBER_MIN_DIGITS

    def completes(self, text: str) -> bool:
        return completes_request(text, lang=self.lang, grammar=self.grammar,
                                 grammars=self.grammars)
