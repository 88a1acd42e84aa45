"""Recognition grammars per prompt, built from the language packs and checked against a model.

A vosk grammar is a JSON list of phrases, each a space-separated sequence of words from the
model's vocabulary; the decoder may chain phrases, so a list of single digit words accepts a
whole digit string. A word the model does not know is ignored by vosk with only a log line,
which silently changes what a phrase means, so ``check_vocabulary`` drops such phrases here
and says which words were missing. Vocabulary lookup is ``Model.vosk_model_find_word``
(-1 for an unknown word). The Korean model has no ``[unk]`` word; when a model has one it is
added to every grammar so that out-of-grammar speech is not forced onto a phrase.

A grammar is not a list of the only sentences the decoder may return: vosk builds a bigram
language model from the phrases (``UpdateGrammarFst``: counts of each word after the one
before it, half the probability kept for backing off to any word of the list), so it may
join pieces of phrases into readings that are none of them. At the greeting, where the
requests stand beside the digits of a case number, "민원 조회" was heard as "민원 여덟"
("complaint eight"): a request cut off by a digit. ``reads_as_phrases`` tells such readings
from those made of whole phrases (a digit string is a run of whole one-digit phrases), so
that of vosk's n best readings the best whole one can be taken
(``speech.understanding.understand_readings``).

Mandarin and Korean text in the packs may be written without the model's word boundaries
("连接人工", "연결해주세요"); with ``segment=True`` an unknown token is split into the
fewest known words (longest first) before it is given up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final, Literal, Protocol

from speech.prompts import LanguagePack

log = logging.getLogger(__name__)

GrammarKind = Literal["menu", "status_menu", "yes_no", "digits", "rating", "language",
                      "intake", "topic"]
GRAMMAR_KINDS: Final[tuple[GrammarKind, ...]] = (
    "menu", "status_menu", "yes_no", "digits", "rating", "language", "intake", "topic")
GRAMMAR_ALIASES: Final[Mapping[str, GrammarKind]] = {"yesno": "yes_no"}
"""Other names the call flow uses for a kind."""
STATUS_MENU_INTENTS: Final = ("repeat", "agent", "end", "urge")
"""urge (催办): heard only after the status of an overdue case (ivr.flows.menu)."""
INTAKE_INTENTS: Final = ("check_status", "service_info", "agent")
"""What the greeting understands besides a case number."""
N_BEST: Final[Mapping[GrammarKind, int]] = {"intake": 10}
"""Grammars whose listening turns ask vosk for this many readings of an utterance (the
others take the single best): the greeting's, where requests and digits compete."""
UNKNOWN_WORD: Final = "[unk]"

PROMPT_GRAMMAR: Final[Mapping[str, GrammarKind]] = {
    "greeting": "intake",
    "ask_topic": "topic",
    "after_status_menu": "status_menu",
    "ask_case_number": "digits",
    "case_number_invalid": "digits",
    "case_not_found": "digits",
    "ask_phone_last4": "digits",
    "confirm_case_number": "yes_no",
    "survey_rating": "rating",
}
"""Which grammar listens after each prompt that expects an answer (re-prompt variants
``<id>_short`` / ``<id>_keys`` listen with the grammar of ``<id>``)."""


def grammar_kind(name: str) -> GrammarKind:
    """A grammar kind from its name or alias; KeyError for an unknown one."""
    kind = GRAMMAR_ALIASES.get(name, name)
    if kind not in GRAMMAR_KINDS:
        raise KeyError(f"unknown grammar {name!r}: expected one of {', '.join(GRAMMAR_KINDS)}")
    return kind  # type: ignore[return-value]


def prompt_grammar(prompt_id: str) -> GrammarKind | None:
    for suffix in ("", "_short", "_keys"):
        base = prompt_id.removesuffix(suffix) if suffix else prompt_id
        if base in PROMPT_GRAMMAR:
            return PROMPT_GRAMMAR[base]
    return None

_MAX_SEGMENT_CHARS = 16


class Vocabulary(Protocol):
    def vosk_model_find_word(self, word: str) -> int: ...


def pack_phrases(pack: LanguagePack, kind: GrammarKind) -> list[str]:
    """The phrases of one grammar kind as written in the language pack (not yet checked)."""
    if kind == "yes_no":
        phrases = pack.grammar_phrases("yes") + pack.grammar_phrases("no")
    elif kind == "status_menu":
        menu = pack.menu_phrases()
        phrases = [p for intent in STATUS_MENU_INTENTS for p in menu.get(intent, [])]
    elif kind == "intake":
        menu, own = pack.menu_phrases(), pack.intake_phrases()
        # No language names: over a phone line they were heard inside other requests
        # ("상담원" as "한국어"); the greeting's language keys switch the language.
        phrases = [p for intent in INTAKE_INTENTS
                   for p in [*menu.get(intent, []), *own.get(intent, [])]]
        phrases += pack.grammar_phrases("digits")
    elif kind == "topic":
        # The service-information topics callers say (optional list; the knowledge base
        # finds the article for the words heard). None: free decoding.
        phrases = list(pack.grammar.get("topic") or [])
    else:
        phrases = pack.grammar_phrases(kind)
    return list(dict.fromkeys(" ".join(p.split()) for p in phrases if p.strip()))


def _known(model: Vocabulary, word: str, cache: dict[str, bool]) -> bool:
    if word not in cache:
        cache[word] = model.vosk_model_find_word(word) >= 0
    return cache[word]


def _segment(model: Vocabulary, token: str, cache: dict[str, bool]) -> list[str] | None:
    """Split ``token`` into the fewest vocabulary words, or None if it cannot be done."""
    if len(token) > _MAX_SEGMENT_CHARS:
        return None
    best: list[list[str] | None] = [None] * (len(token) + 1)
    best[0] = []
    for end in range(1, len(token) + 1):
        for start in range(end):
            head = best[start]
            if head is None or not _known(model, token[start:end], cache):
                continue
            if best[end] is None or len(head) + 1 < len(best[end] or ()):
                best[end] = [*head, token[start:end]]
    return best[len(token)]


def check_vocabulary(
    model: Vocabulary, phrases: Iterable[str], *, segment: bool = False
) -> tuple[list[str], set[str]]:
    """(phrases whose every word the model knows, the unknown words).

    A phrase with an unknown word is dropped whole, since vosk would otherwise decode a
    different phrase. With ``segment`` an unknown token may be re-split into known words;
    the kept phrase then carries the model's word boundaries.
    """
    cache: dict[str, bool] = {}
    kept: list[str] = []
    dropped: set[str] = set()
    for phrase in phrases:
        words: list[str] = []
        missing = []
        for token in phrase.split():
            if _known(model, token, cache):
                words.append(token)
                continue
            pieces = _segment(model, token, cache) if segment else None
            if pieces:
                words.extend(pieces)
            else:
                missing.append(token)
        if missing:
            dropped.update(missing)
        elif words:
            kept.append(" ".join(words))
    return list(dict.fromkeys(kept)), dropped


def has_unknown_word(model: Vocabulary) -> bool:
    return model.vosk_model_find_word(UNKNOWN_WORD) >= 0


class LanguageGrammars:
    """The checked grammars of one language for one model; built once at start-up."""

    def __init__(self, pack: LanguagePack, model: Vocabulary) -> None:
        self.lang = pack.lang
        self._phrases: dict[GrammarKind, list[str]] = {}
        self.dropped: dict[GrammarKind, set[str]] = {}
        self.unknown_word = has_unknown_word(model)
        segment = pack.lang in ("cmn", "ko")
        for kind in GRAMMAR_KINDS:
            kept, dropped = check_vocabulary(model, pack_phrases(pack, kind), segment=segment)
            self._phrases[kind] = kept
            self.dropped[kind] = dropped
            if dropped:
                log.warning("grammar %s/%s: words not in the model's vocabulary, phrases "
                            "dropped: %s", pack.lang, kind, ", ".join(sorted(dropped)))
            if not kept:
                log.error("grammar %s/%s: no phrase left; this prompt will decode freely",
                          pack.lang, kind)
        log.info("grammars %s: %s", pack.lang,
                 ", ".join(f"{k} {len(v)} phrases" for k, v in self._phrases.items()))

    def phrases(self, kind: str) -> list[str]:
        return list(self._phrases[grammar_kind(kind)])

    def reads_as_phrases(self, kind: str, text: str) -> bool:
        """Whether ``text`` is a run of whole phrases of the grammar ("민원 조회", "이 육
        일"), not pieces of them joined by the decoder ("민원 여덟")."""
        return _whole_phrases(self._phrase_set(grammar_kind(kind)), tuple(text.split()))

    def continues(self, kind: str, text: str) -> bool:
        """Whether a longer phrase of the grammar starts with the last words of ``text``
        ("상담원" may go on to "상담원 연결해 주세요"): the caller may not have finished."""
        words = tuple(text.split())
        starts = _phrase_starts(tuple(self._phrases[grammar_kind(kind)]))
        return any(words[-size:] in starts for size in range(1, len(words) + 1))

    def _phrase_set(self, kind: GrammarKind) -> frozenset[tuple[str, ...]]:
        return _phrase_tuples(tuple(self._phrases[kind]))

    def json(self, kind: str) -> str | None:
        """The vosk grammar for ``kind`` (or an alias such as ``yesno``); None (free
        decoding) when no phrase survived the vocabulary check."""
        phrases = self._phrases[grammar_kind(kind)]
        if not phrases:
            return None
        if self.unknown_word:
            phrases = [*phrases, UNKNOWN_WORD]
        return _dumps(tuple(phrases))

    def for_prompt(self, prompt_id: str) -> str | None:
        """The grammar to listen with after ``prompt_id``; None for free decoding."""
        kind = prompt_grammar(prompt_id)
        return self.json(kind) if kind else None


@lru_cache(maxsize=64)
def _phrase_tuples(phrases: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(p.split()) for p in phrases)


@lru_cache(maxsize=64)
def _phrase_starts(phrases: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    """Every proper beginning of a phrase: ("상담원",) and ("상담원", "연결해") of "상담원
    연결해 주세요"."""
    return frozenset(words[:size] for words in (tuple(p.split()) for p in phrases)
                     for size in range(1, len(words)))


def _whole_phrases(phrases: frozenset[tuple[str, ...]], words: tuple[str, ...]) -> bool:
    if not words or not phrases:
        return False
    longest = max(len(p) for p in phrases)
    reached = [True] + [False] * len(words)  # reached[i]: words[:i] is whole phrases
    for start in range(len(words)):
        if not reached[start]:
            continue
        for size in range(1, min(longest, len(words) - start) + 1):
            if words[start:start + size] in phrases:
                reached[start + size] = True
    return reached[-1]


@lru_cache(maxsize=64)
def _dumps(phrases: tuple[str, ...]) -> str:
    return json.dumps(list(phrases), ensure_ascii=False)


def build_grammars(
    models: Any, packs: Mapping[str, LanguagePack]
) -> dict[str, LanguageGrammars]:
    """Checked grammars for every language that has a loaded model (``SpeechModels``)."""
    return {lang: LanguageGrammars(pack, models.model(lang))
            for lang, pack in packs.items() if models.has_speech(lang)}
