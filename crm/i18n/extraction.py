"""Where the message ids are: templates (``_()``, ``{% trans %}``), browser scripts
(``t('...')``), Python (``Phrase("...")``, ``N_("...")``) and the label tables. The catalog
test uses it to find an id without a translation; ``python -m crm.i18n.extraction`` lists
the untranslated ids of a locale (the translator's worklist)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.extract import extract_from_dir

from crm.i18n.catalogs import LOCALES_DIR, merged, read_fragments
from crm.i18n.labels import msgids as label_msgids
from crm.i18n.phrases import N_ as N_  # marked texts: what the extraction looks for

CRM_DIR = Path(__file__).resolve().parents[1]
METHODS = [("web/templates/**.html", "jinja2.ext:babel_extract"),
           ("web/static/**.js", "javascript"),
           ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "t": None,
            "Phrase": None}


def used_msgids(root: Path = CRM_DIR) -> Iterator[tuple[str, str]]:
    """(msgid, where) for every message id the interface uses."""
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(root), METHODS, keywords=KEYWORDS, comment_tags=(), strip_comment_tags=True):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                yield msgid, f"crm/{filename}:{lineno}"
    for msgid in label_msgids():
        yield msgid, "crm/i18n/labels.py"


def untranslated(locale: str = "zh_CN") -> dict[str, str]:
    """msgid -> where it is used, for each id the locale's catalogs do not translate."""
    catalog = merged(locale, read_fragments(LOCALES_DIR / locale).values())
    have = {m.id for m in catalog if m.id and m.string}  # in any context
    return {msgid: where for msgid, where in used_msgids() if msgid not in have}


if __name__ == "__main__":  # pragma: no cover - a translator's tool
    missing = untranslated(sys.argv[1] if len(sys.argv) > 1 else "zh_CN")
    for msgid, where in sorted(missing.items(), key=lambda item: item[1]):
        print(f"{where}\t{msgid}")
    print(f"{len(missing)} untranslated", file=sys.stderr)
