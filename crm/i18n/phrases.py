"""A sentence kept as its message id and its values, so each reader gets it in their own
language: a screen pop is built once and read by agents who chose different languages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Label:
    """A code whose name is looked up in the label tables (crm.i18n.labels) when rendered."""

    kind: str
    code: str


@dataclass(frozen=True)
class Phrase:
    """``msgid`` with ``{name}`` placeholders; a value may be a :class:`Label`."""

    msgid: str
    values: Mapping[str, str | int | Label | None] = field(default_factory=dict)

    def render(self, gettext: Callable[[str], str] = lambda s: s,
               label: Callable[[str, str], str] | None = None) -> str:
        name = label or (lambda kind, code: code)
        values: dict[str, Any] = {
            k: name(v.kind, v.code) if isinstance(v, Label) else ("" if v is None else v)
            for k, v in self.values.items()}
        return gettext(self.msgid).format(**values)

    def to_json(self) -> dict[str, Any]:
        return {"msgid": self.msgid, "values": {
            k: {"kind": v.kind, "code": v.code} if isinstance(v, Label) else v
            for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phrase:
        values = {k: Label(v["kind"], v["code"]) if isinstance(v, dict) else v
                  for k, v in dict(data.get("values") or {}).items()}
        return cls(str(data["msgid"]), values)
