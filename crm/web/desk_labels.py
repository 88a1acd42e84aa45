"""The names of the codes the desk's script shows (stages, dispositions, languages, agent
status, call phase...), in the page's language, handed to the page as JSON: the pushes carry
codes, the page names them."""

from __future__ import annotations

import json

from markupsafe import Markup

from crm.i18n.catalogs import Translator
from crm.i18n.labels import LABELS

DESK_KINDS = ("stage", "disposition", "language", "outcome", "agent_status", "call_phase",
              "verified_by", "callback_reason", "callback_status", "prompt")


def labels(t: Translator) -> dict[str, dict[str, str]]:
    """kind -> code -> name in ``t``'s language, for the kinds the desk's script shows."""
    return {kind: {code: t.label(kind, code) for code in LABELS[kind]} for kind in DESK_KINDS}


def labels_json(t: Translator) -> Markup:
    """:func:`labels` as JSON safe inside a ``<script type="application/json">``."""
    return Markup(json.dumps(labels(t), ensure_ascii=False).replace("</", "<\\/"))
