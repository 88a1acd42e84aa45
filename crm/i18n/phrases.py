"""A sentence kept as its message id and its values, so each reader gets it in their own
language: a screen pop is built once and read by agents who chose different languages. A value
may name a code (:class:`Label`), several codes (:class:`Labels`) or be a phrase itself (the
domain errors: "row 4, field phone: {problem}")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias


def N_(message: str) -> str:  # gettext's name for "mark only"
    """Marks ``message`` for the catalogs without translating it here (run time needs no
    Babel for it: crm/i18n/extraction.py finds the marks)."""
    return message


@dataclass(frozen=True)
class Label:
    """A code whose name is looked up in the label tables (crm.i18n.labels) when rendered."""

    kind: str
    code: str


@dataclass(frozen=True)
class Labels:
    """Several codes of one kind, named when rendered and listed (", " in English)."""

    kind: str
    codes: tuple[str, ...]


LIST_SEPARATOR = ", "
"""The message id of what separates the items of a list (a catalog gives "、")."""

Value: TypeAlias = "str | int | float | Label | Labels | Phrase | None"


@dataclass(frozen=True)
class Phrase:
    """``msgid`` with ``{name}`` placeholders; a value may be a :class:`Label`, a
    :class:`Labels` or a :class:`Phrase`."""

    msgid: str
    values: Mapping[str, Value] = field(default_factory=dict)

    def render(self, gettext: Callable[[str], str] = lambda s: s,
               label: Callable[[str, str], str] | None = None) -> str:
        name = label or (lambda kind, code: code)

        def text(v: Value) -> Any:
            if isinstance(v, Label):
                return name(v.kind, v.code)
            if isinstance(v, Labels):
                return gettext(LIST_SEPARATOR).join(name(v.kind, c) for c in v.codes)
            if isinstance(v, Phrase):
                return v.render(gettext, label)
            return "" if v is None else v

        return gettext(self.msgid).format(**{k: text(v) for k, v in self.values.items()})

    def to_json(self) -> dict[str, Any]:
        def value(v: Value) -> Any:
            if isinstance(v, Label):
                return {"kind": v.kind, "code": v.code}
            if isinstance(v, Labels):
                return {"kind": v.kind, "codes": list(v.codes)}
            return v.to_json() if isinstance(v, Phrase) else v

        return {"msgid": self.msgid, "values": {k: value(v) for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phrase:
        def value(v: Any) -> Value:
            if not isinstance(v, dict):
                return v  # type: ignore[no-any-return]
            if "msgid" in v:
                return cls.from_json(v)
            if "codes" in v:
                return Labels(v["kind"], tuple(v["codes"]))
            return Label(v["kind"], v["code"])

        values = {k: value(v) for k, v in dict(data.get("values") or {}).items()}
        return cls(str(data["msgid"]), values)
