"""What a person reads on a page, and what of it is not Chinese: the check of the zh_CN
pages (no raw code, no untranslated English). Used by tests that render every page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

TECHNICAL = frozenset({"AMI", "AudioSocket", "API", "CSV", "IVR", "ID", "SIP", "URL", "PDF",
                       "JSON", "OK", "WAV", "GB", "GB/T", "Prometheus", "Asterisk", "QR",
                       "English", "p95", "p50", "SLA"})
"""Latin words a Chinese page may show: names of systems and formats, and the English
language's own name in the language switch."""
_WORD = re.compile(r"[A-Za-z][A-Za-z_/.-]*[A-Za-z]|[A-Za-z]")
_READ_ATTRS = ("placeholder", "title", "aria-label", "alt")


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self._skip += 1
        for name, value in attrs:
            if name in _READ_ATTRS and value:
                self.texts.append(value)
            if tag == "input" and name == "value" and value and dict(attrs).get(
                    "type") in ("submit", "button"):
                self.texts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data.strip())


def readable_text(html: str) -> list[str]:
    """The texts of ``html`` a person reads: text nodes outside scripts and styles, and the
    placeholder, title, aria-label and alt attributes."""
    reader = _Reader()
    reader.feed(html)
    return reader.texts


def not_chinese(html: str, allowed: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Each Latin word a zh_CN page shows that is neither technical nor in ``allowed`` (the
    data of the test: names, logins, case numbers), with its text: [] when all is Chinese."""
    found = []
    for text in readable_text(html):
        if text in allowed:
            continue
        for word in _WORD.findall(text):
            if word in TECHNICAL or word in allowed or any(word in a.split() for a in allowed):
                continue
            found.append(f"{word!r} in {text[:80]!r}")
    return found
