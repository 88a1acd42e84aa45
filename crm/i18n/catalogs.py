"""The message catalogs: gettext ``.po`` files read with Babel and compiled in memory at the
first use (no compiled ``.mo`` files to keep in step). ``locales/<locale>/LC_MESSAGES/`` has
one ``.po`` file per part of the interface (console, desk, labels, domain errors, ...);
``js*.po`` hold what the browser scripts show, handed to the page as JSON."""

from __future__ import annotations

import functools
import gettext as _gettext
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from crm.i18n.labels import english
from crm.i18n.phrases import Phrase

LOCALES_DIR = Path(__file__).with_name("locales")
SOURCE_LOCALE = "en"
"""The language of the message ids: it needs no catalog."""
SUPPORTED = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LOCALE_NAMES = {"zh_CN": "中文", "en": "English"}
"""Each language in its own name (the switch shows these)."""
JS_PREFIX = "js"
"""Fragments whose name starts with this hold what the browser scripts show."""


def normalize(value: str | None) -> str | None:
    """``zh-CN``, ``zh_cn``, ``zh`` -> ``zh_CN``; ``en-US`` -> ``en``; None if unsupported."""
    if not value:
        return None
    text = value.strip().replace("-", "_")
    lang, _, region = text.partition("_")
    lang = lang.lower()
    for locale in SUPPORTED:
        want_lang, _, want_region = locale.partition("_")
        if lang == want_lang and (not region or not want_region
                                  or region.upper() == want_region or want_lang == "zh"):
            return locale
    return None


@dataclass(frozen=True)
class Translator:
    """One language's messages: gettext for pages and code, names of codes, phrases."""

    locale: str
    translations: _gettext.NullTranslations
    js: Mapping[str, str] = field(default_factory=dict)
    """msgid -> text for the browser scripts (empty for the source language)."""

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def label(self, kind: str, code: str | None) -> str:
        """The name of ``code`` in this language ("" for None): a translation given in the
        context of its kind (``msgctxt "field"``) wins over the plain one, so one English
        word can have two names ("stage" of a case in a sentence, a column's "stage")."""
        if not code:
            return ""
        name = english(kind, code)
        in_context = self.translations.pgettext(kind, name)
        return in_context if in_context != name else self.gettext(name)

    def phrase(self, phrase: Phrase) -> str:
        return phrase.render(self.gettext, self.label)

    @property
    def html_lang(self) -> str:
        return self.locale.replace("_", "-")


def read_fragments(directory: Path) -> dict[str, Catalog]:
    """Each ``.po`` file of one locale's LC_MESSAGES, by its stem."""
    out: dict[str, Catalog] = {}
    for po in sorted((directory / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as f:
            out[po.stem] = read_po(f, locale=directory.name)
    return out


def merged(locale: str, fragments: Iterable[Catalog]) -> Catalog:
    """One catalog of all fragments (a msgid in two fragments must be translated alike:
    tests/unit/test_i18n_catalogs.py checks it)."""
    catalog = Catalog(locale=locale)
    for fragment in fragments:
        for message in fragment:
            if message.id and message.string and not message.fuzzy:
                catalog.add(message.id, message.string, context=message.context)
    return catalog


def compiled(catalog: Catalog) -> _gettext.GNUTranslations:
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


@functools.cache
def translator(locale: str | None = None) -> Translator:
    """The translator of ``locale`` (any spelling :func:`normalize` knows; the default
    language otherwise), loaded once per process."""
    chosen = normalize(locale) or DEFAULT_LOCALE
    if chosen == SOURCE_LOCALE:
        return Translator(chosen, _gettext.NullTranslations())
    fragments = read_fragments(LOCALES_DIR / chosen)
    js = {m.id: m.string for name, fragment in fragments.items()
          if name.startswith(JS_PREFIX) for m in fragment
          if m.id and m.string and not m.fuzzy}
    return Translator(chosen, compiled(merged(chosen, fragments.values())), js)
