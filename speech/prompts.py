"""Language packs: every prompt the IVR speaks, per language, as jinja2 templates.

The packs are data files (``speech/language_packs/<lang>.toml``). An operator can override
any table of a pack with ``<override_dir>/<lang>.toml`` (same layout; by default
``<state_dir>/prompts``), for example to put in the real opening hours and addresses.

A prompt is *static* when its text depends only on the pack (its ``[context]`` table, the
key maps and the ``speech`` flag): those are synthesised ahead of time and may be replaced
by an operator recording (see ``speech.tts``).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jinja2
from jinja2 import meta

from speech.languages import LANGUAGES, Language, check_language
from speech.number_words import say_count, say_date, say_number_digits

log = logging.getLogger(__name__)

PROMPT_IDS: Final[tuple[str, ...]] = (
    "greeting",
    "ask_case_number", "case_number_invalid", "confirm_case_number",
    "ask_phone_last4", "verification_failed", "case_not_found",
    "status_full", "status_stage_only", "after_status_menu", "urge_recorded", "urge_failed",
    "service_info",
    "no_input", "no_match", "transfer_to_agent", "too_many_attempts", "goodbye",
    "survey_intro", "survey_return_visit_intro", "survey_rating", "survey_comment",
    "survey_thanks",
    "technical_difficulty", "please_wait",
    # the callback offer (ivr.flows.callback_offer)
    "callback_offer", "callback_confirmed", "callback_not_possible",
    # service information from the knowledge base (ivr.flows.menu, state topic)
    "ask_topic", "knowledge_answer",
)
STAGES: Final[tuple[str, ...]] = ("accepted", "dispatched", "in_progress", "resolved", "closed")
GRAMMAR_KINDS: Final[tuple[str, ...]] = ("menu", "yes", "no", "digits", "rating", "language")

# The key maps the prompts announce. ivr.flows.menu owns them (speech must not import ivr);
# tests/unit/test_speech_prompts.py checks the two stay equal.
STATUS_MENU_KEYS: Final[Mapping[str, str]] = {"repeat": "1", "agent": "2", "end": "3"}
"""After the status was read out: intent -> key."""
CONFIRM_KEYS: Final[Mapping[str, str]] = {"yes": "1", "no": "2"}
SURVEY_KEYS: Final[Mapping[str, int]] = {str(n): n for n in range(1, 6)}
GREETING_LANGUAGE_KEYS: Final[Mapping[str, str]] = {"en": "8", "ko": "9"}
"""The greeting's language keys (language -> key) by default: the IVR passes the configured
ones ([intake] language_keys) as the greeting's ``language_keys``; with these defaults the
greeting is static (synthesised ahead, replaceable by a recording)."""
GREETING_INFO_KEY: Final = "0"
LANGUAGE_OFFERS: Final[Mapping[str, str]] = {
    "cmn": "普通话请按{key}", "en": "For English press {key}", "ko": "한국어 {key}번",
}
"""How the greeting offers each language, in that language, whatever the greeting's."""


def language_offer(lang: str, key: str) -> str:
    """The greeting's offer of ``lang`` on ``key`` ("For English press 8.")."""
    return LANGUAGE_OFFERS[lang].format(key=key)


_RESERVED_GLOBALS = frozenset({"status_keys", "confirm_keys", "speech", "language_keys",
                               "info_key", "language_offer"})
RETRY_SUFFIXES: Final[tuple[str, ...]] = ("_short", "_keys")


class LanguagePackError(Exception):
    """A language pack is missing, unreadable or incomplete; the message lists every problem."""


def _packaged_text(lang: str) -> str:
    return resources.files("speech").joinpath("language_packs", f"{lang}.toml").read_text(
        encoding="utf-8")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


@dataclass(frozen=True, eq=False)
class LanguagePack:
    lang: Language
    name: str
    voice: str
    """espeak-ng voice name."""
    rate: int
    """espeak-ng speed in words per minute."""
    rates: Mapping[str, int]
    """Prompt id -> its own speed (the greeting is spoken faster, to be short)."""
    context: Mapping[str, Any]
    stages: Mapping[str, str]
    grammar: Mapping[str, Any]
    sources: Mapping[str, str]
    """prompt id -> template source."""
    _env: jinja2.Environment = field(repr=False)
    _templates: Mapping[str, jinja2.Template] = field(repr=False)
    _static: frozenset[str] = field(repr=False)

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def load(cls, lang: str, override_dir: Path | None = None) -> LanguagePack:
        """The packaged pack for ``lang``, merged with ``override_dir/<lang>.toml`` if present.

        Raises LanguagePackError naming every missing prompt, stage or grammar list.
        """
        lang = check_language(lang)
        try:
            data = tomllib.loads(_packaged_text(lang))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise LanguagePackError(f"language pack {lang}: cannot read it: {exc}") from exc
        if override_dir is not None:
            override = override_dir / f"{lang}.toml"
            if override.is_file():
                try:
                    data = _merge(data, tomllib.loads(override.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                    raise LanguagePackError(
                        f"prompt override {override}: cannot read it: {exc}") from exc
                log.info("language pack %s: overrides applied from %s", lang, override)
        return cls.from_dict(lang, data)

    @classmethod
    def from_dict(cls, lang: Language, data: Mapping[str, Any]) -> LanguagePack:
        problems = []
        prompts: dict[str, str] = dict(data.get("prompts", {}))
        stages: dict[str, str] = dict(data.get("stages", {}))
        grammar: dict[str, Any] = dict(data.get("grammar", {}))
        context: dict[str, Any] = dict(data.get("context", {}))
        problems += [f"missing prompt {pid!r}" for pid in PROMPT_IDS if pid not in prompts]
        problems += [f"unknown prompt {pid!r}" for pid in prompts if pid not in PROMPT_IDS]
        problems += [f"missing stage name {s!r}" for s in STAGES if s not in stages]
        problems += [f"missing grammar list {k!r}" for k in GRAMMAR_KINDS if not grammar.get(k)]
        problems += [f"context key {k!r} is reserved" for k in context if k in _RESERVED_GLOBALS]
        if data.get("language", lang) != lang:
            problems.append(f"file says language = {data.get('language')!r}")

        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
        env.filters.update(
            say_digits=lambda v: say_number_digits(str(v), lang),
            say_date=lambda v: say_date(_as_date(v), lang),
            say_count=lambda v: say_count(int(v), lang),
            stage_name=partial(_stage_name, stages),
        )
        env.globals.update(context)
        env.globals.update(status_keys=dict(STATUS_MENU_KEYS), confirm_keys=dict(CONFIRM_KEYS),
                           speech=True, language_keys=dict(GREETING_LANGUAGE_KEYS),
                           info_key=GREETING_INFO_KEY, language_offer=language_offer)
        templates: dict[str, jinja2.Template] = {}
        static: set[str] = set()
        for pid, source in prompts.items():
            try:
                templates[pid] = env.from_string(source)
                free = meta.find_undeclared_variables(env.parse(source)) - set(env.globals)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"prompt {pid!r}: template error: {exc}")
                continue
            if not free:
                static.add(pid)
        rates = {str(pid): int(rate) for pid, rate in dict(data.get("rates", {})).items()}
        problems += [f"rate for unknown prompt {pid!r}" for pid in rates if pid not in prompts]
        if problems:
            raise LanguagePackError(f"language pack {lang}: " + "; ".join(problems))
        return cls(
            lang=lang, name=str(data.get("name", lang)), voice=str(data.get("voice", lang)),
            rate=int(data.get("rate", 150)), rates=rates, context=context, stages=stages,
            grammar=grammar,
            sources=prompts, _env=env, _templates=templates, _static=frozenset(static),
        )

    # -- rendering ------------------------------------------------------------------------

    def resolve(self, prompt_id: str) -> tuple[str, bool | None]:
        """(template id, forced speech flag) for a prompt id, including re-prompt variants.

        The call flow re-prompts with ``<id>_short`` and then ``<id>_keys``; a pack may write
        them out (main_menu_short, main_menu_keys) or leave them to this rule: ``_short`` is
        the prompt itself, ``_keys`` is the prompt worded for the keypad (speech=False).
        """
        if prompt_id in self._templates:
            return prompt_id, None
        for suffix in RETRY_SUFFIXES:
            base = prompt_id.removesuffix(suffix)
            if base != prompt_id and base in self._templates:
                return base, (False if suffix == "_keys" else None)
        raise KeyError(f"language pack {self.lang} has no prompt {prompt_id!r}")

    def render(self, prompt_id: str, /, *, speech: bool = True, **variables: Any) -> str:
        """The prompt's text; ``speech=False`` words it for keypad-only callers.

        Raises KeyError for an unknown prompt, jinja2.UndefinedError for a missing variable.
        """
        template_id, forced = self.resolve(prompt_id)
        text = self._templates[template_id].render(
            speech=speech if forced is None else forced, **variables)
        return " ".join(text.split())

    def rate_for(self, prompt_id: str | None) -> int:
        """The espeak-ng speed of a prompt: its own (``[rates]``) or the pack's."""
        if prompt_id is None:
            return self.rate
        try:
            return self.rates.get(self.resolve(prompt_id)[0], self.rate)
        except KeyError:
            return self.rate

    def is_static(self, prompt_id: str) -> bool:
        try:
            return self.resolve(prompt_id)[0] in self._static
        except KeyError:
            return False

    @property
    def static_prompt_ids(self) -> tuple[str, ...]:
        return tuple(pid for pid in PROMPT_IDS if pid in self._static)

    def static_texts(self) -> dict[tuple[str, bool], str]:
        """(prompt id, speech flag) -> text for every static prompt (both wordings)."""
        return {(pid, speech): self.render(pid, speech=speech)
                for pid in self.static_prompt_ids for speech in (True, False)}

    def recording_name(self, prompt_id: str, text: str) -> str | None:
        """The operator-recording file stem that may replace ``text``, or None.

        Only a static prompt's own text qualifies: ``<prompt_id>`` for the spoken wording and
        ``<prompt_id>.keys`` for the keypad-only wording when the two differ.
        """
        if not self.is_static(prompt_id):
            return None
        base, _ = self.resolve(prompt_id)
        if text == self.render(base, speech=True):
            return base
        if text == self.render(base, speech=False):
            return f"{base}.keys"
        return None

    def grammar_phrases(self, kind: str) -> list[str]:
        """Phrases of one grammar list; ``menu`` joins every intent's phrases."""
        value = self.grammar.get(kind)
        if kind == "menu" and isinstance(value, Mapping):
            return [p for phrases in value.values() for p in phrases]
        if not isinstance(value, list):
            raise KeyError(f"language pack {self.lang} has no grammar list {kind!r}")
        return list(value)

    def menu_phrases(self) -> dict[str, list[str]]:
        """intent -> phrases of the menu grammar."""
        return {intent: list(p) for intent, p in self.grammar.get("menu", {}).items()}

    def intake_phrases(self) -> dict[str, list[str]]:
        """intent -> the requests heard only at the greeting, besides the menu's (optional
        table ``[grammar.intake]``)."""
        return {intent: list(p) for intent, p in self.grammar.get("intake", {}).items()}


def _stage_name(stages: Mapping[str, str], stage: str) -> str:
    try:
        return stages[stage]
    except KeyError:
        log.warning("no spoken name for case stage %r", stage)
        return str(stage)


def load_all(override_dir: Path | None = None) -> dict[Language, LanguagePack]:
    """Every language's pack; raises LanguagePackError on the first broken one."""
    return {lang: LanguagePack.load(lang, override_dir) for lang in LANGUAGES}
