"""The languages the hotline speaks, and the espeak-ng voice for each."""

from __future__ import annotations

from typing import Final, Literal, get_args

Language = Literal["cmn", "en", "ko"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)

LANGUAGE_NAMES: Final[dict[str, str]] = {"cmn": "Mandarin", "en": "English", "ko": "Korean"}


class UnknownLanguageError(ValueError):
    """A language code other than cmn, en or ko."""


def check_language(lang: str) -> Language:
    """Return ``lang`` typed as a Language, or raise UnknownLanguageError naming the valid codes."""
    if lang not in LANGUAGES:
        raise UnknownLanguageError(
            f"unknown language {lang!r}: expected one of {', '.join(LANGUAGES)}"
        )
    return lang  # type: ignore[return-value]
