"""What a caller waiting for an agent hears, per language: the ``[queue_prompts]`` table of each
language pack (position, expected wait, the callback key, the closed-hours message) and the
number words Asterisk strings together to say a position or a number of minutes.

Asterisk plays these itself (app_queue's announcements, the closed-hours branch of the
dialplan), so they become sound files at install time (``hotline.asterisk.sounds``) rather
than audio the IVR streams. An operator overrides the texts in ``<override_dir>/<lang>.toml``
like any other prompt.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jinja2

from speech.languages import check_language
from speech.number_words import cmn_number, en_number, ko_number
from speech.prompts import LanguagePackError

QUEUE_PROMPT_IDS: Final[tuple[str, ...]] = (
    "queue_youarenext", "queue_thereare", "queue_callswaiting", "queue_holdtime",
    "queue_minute", "queue_minutes", "queue_seconds", "queue_thankyou",
    "closed", "callback_offer",
)
"""Every prompt a pack's ``[queue_prompts]`` table must have."""
NUMBER_FILES: Final[tuple[int, ...]] = (*range(20), *range(20, 100, 10))
"""The numbers Asterisk's default number rule plays as one file each (digits/<n>); a number
is said as tens + units, with digits/hundred and digits/thousand between."""


def _pack_data(lang: str, override_dir: Path | None) -> dict[str, Any]:
    text = resources.files("speech").joinpath("language_packs", f"{lang}.toml").read_text(
        encoding="utf-8")
    data = tomllib.loads(text)
    override = override_dir / f"{lang}.toml" if override_dir is not None else None
    if override is not None and override.is_file():
        try:
            extra = tomllib.loads(override.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise LanguagePackError(f"prompt override {override}: cannot read it: {exc}") from exc
        for table in ("context", "queue_prompts"):
            data[table] = {**data.get(table, {}), **extra.get(table, {})}
    return data


def queue_prompt_texts(lang: str, *, callback_key: str,
                       override_dir: Path | None = None) -> dict[str, str]:
    """prompt id -> text for a waiting caller in ``lang``; LanguagePackError names every
    missing prompt or template error."""
    lang = check_language(lang)
    data = _pack_data(lang, override_dir)
    prompts: Mapping[str, str] = data.get("queue_prompts", {})
    missing = [pid for pid in QUEUE_PROMPT_IDS if pid not in prompts]
    if missing:
        raise LanguagePackError(f"language pack {lang}: [queue_prompts] lacks {missing}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    variables = {**data.get("context", {}), "callback_key": callback_key}
    texts = {}
    for pid in QUEUE_PROMPT_IDS:
        try:
            texts[pid] = " ".join(env.from_string(prompts[pid]).render(variables).split())
        except jinja2.TemplateError as exc:
            raise LanguagePackError(
                f"language pack {lang}: queue prompt {pid!r}: {exc}") from exc
    return texts


def number_word(n: int, lang: str) -> str:
    """The word Asterisk's digits/<n> file holds (Mandarin and Korean: Sino numerals, which
    compose as tens + units: 二十 + 三, 이십 + 삼)."""
    lang = check_language(lang)
    if lang == "cmn":
        return cmn_number(n)
    if lang == "ko":
        return ko_number(n)
    return en_number(n)


def number_texts(lang: str) -> dict[str, str]:
    """digits/<name> -> text for the files Asterisk says numbers with."""
    lang = check_language(lang)
    texts = {str(n): number_word(n, lang) for n in NUMBER_FILES}
    big = {"cmn": ("百", "千"), "ko": ("백", "천"), "en": ("hundred", "thousand")}[lang]
    texts["hundred"], texts["thousand"] = big
    return texts
