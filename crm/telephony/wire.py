"""The wire format of bus events: how a call event travels between processes (the networked
event bus, hotline/bus/) and back into the same dataclass.

An event is written as JSON::

    {"type": "CallStarted", "v": 1, "fields": {"call_id": "...", "at": "2026-...+00:00", ...}}

- ``type`` is the event's class name and ``v`` its wire version (:data:`EVENT_VERSIONS`). A
  class is on the wire only if it is listed there (a unit test checks that every class of
  ``BusEvent`` is); a change to a class's fields that old readers cannot take bumps its
  version, and a reader meeting a type or version it does not know raises
  :class:`~crm.errors.UnknownEventType` / :class:`~crm.errors.UnsupportedEventVersion`.
- ``fields`` holds every dataclass field by name, converted by its type hint: datetimes as
  ISO 8601 in UTC (a naive datetime is refused, never guessed at), a call step as its
  :meth:`~crm.telephony.steps.StepFields.to_json` form, nested dataclasses (the members and
  waiting callers of a :class:`~crm.telephony.events.QueueSnapshot`) as objects, tuples as
  lists.
- Both ways the types are checked: an event that does not fit its class, or text that is not
  an event, raises :class:`~crm.errors.WireFormatError` naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Union, get_args, get_origin

from crm.errors import UnknownEventType, UnsupportedEventVersion, WireFormatError
from crm.telephony import events, steps

EVENT_VERSIONS: dict[type[Any], int] = {
    events.CallStarted: 2,  # 2: node
    events.CallStep: 2,  # 2: node
    events.CallEnded: 2,  # 2: node
    events.CallerQueued: 2,  # 2: node
    events.AgentRinging: 2,  # 2: node
    events.AgentRingStopped: 2,  # 2: node
    events.AgentAnswered: 2,  # 2: node
    events.AgentCallEnded: 2,  # 2: node
    events.CallerAbandoned: 2,  # 2: node
    events.AgentStatusChanged: 1,
    events.QueueSnapshot: 1,
    events.IvrLegAnnounced: 2,  # 2: node
}
"""Every event class that travels on the wire, and the version of its fields written now."""
ALSO_READS: dict[type[Any], frozenset[int]] = {
    events.CallStarted: frozenset({1}),
    events.IvrLegAnnounced: frozenset({1}),
    events.CallStep: frozenset({1}),
    events.CallEnded: frozenset({1}),
    **{cls: frozenset({1}) for cls in events.QUEUE_CALL_EVENTS},
}
"""Older versions still read: version 1 of these lacks ``node`` (read as None)."""
_BY_NAME: dict[str, type[Any]] = {cls.__name__: cls for cls in EVENT_VERSIONS}
_NONE = type(None)


def encode(event: events.BusEvent) -> dict[str, Any]:
    """The event as JSON data (``type``, ``v``, ``fields``)."""
    cls = type(event)
    version = EVENT_VERSIONS.get(cls)
    if version is None:
        raise UnknownEventType(f"{cls.__name__} has no wire codec (add it to "
                               "crm.telephony.wire.EVENT_VERSIONS)",
                               details={"type": cls.__name__})
    return {"type": cls.__name__, "v": version, "fields": _encode_dataclass(event, cls.__name__)}


def decode(data: Any) -> events.BusEvent:
    """The event from :func:`encode`'s JSON data."""
    if not isinstance(data, Mapping) or not {"type", "v", "fields"} <= set(data):
        raise WireFormatError("not an encoded bus event (it needs type, v and fields): "
                              f"{_preview(data)}")
    name, version = data["type"], data["v"]
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnknownEventType(f"unknown bus event type {name!r}", details={"type": name})
    if type(version) is not int or (version != EVENT_VERSIONS[cls]
                                    and version not in ALSO_READS.get(cls, ())):
        raise UnsupportedEventVersion(
            f"{name} version {version!r} cannot be read here (this code reads version "
            f"{EVENT_VERSIONS[cls]})", details={"type": name, "v": version})
    return typing.cast(events.BusEvent, _decode_dataclass(data["fields"], cls, name))


def dumps(event: events.BusEvent) -> str:
    """The event as JSON text (UTF-8 when encoded; Chinese names stay as they are)."""
    return json.dumps(encode(event), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)


def loads(text: str | bytes) -> events.BusEvent:
    """The event from :func:`dumps`'s text."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise WireFormatError(f"not JSON: {exc}: {_preview(text)}") from None
    return decode(data)


# -- fields by their type hints ------------------------------------------------------------------
@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_step(hint: Any) -> bool:
    return hint == steps.Step


def _encode_dataclass(obj: Any, where: str) -> dict[str, Any]:
    hints = _hints(type(obj))
    return {f.name: _encode_value(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}")
            for f in dataclasses.fields(obj)}


def _encode_value(value: Any, hint: Any, where: str) -> Any:
    if _is_step(hint):
        if not isinstance(value, steps.StepFields):
            raise WireFormatError(f"{where}: a call step expected, got {_preview(value)}")
        return value.to_json()
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        for arg in (a for a in args if a is not _NONE):
            try:
                return _encode_value(value, arg, where)
            except WireFormatError:
                continue
        raise WireFormatError(f"{where}: {_preview(value)} is not a {_name(hint)}")
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise WireFormatError(f"{where}: a tuple expected, got {_preview(value)}")
        return [_encode_value(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if hint is datetime:
        if not isinstance(value, datetime):
            raise WireFormatError(f"{where}: a datetime expected, got {_preview(value)}")
        if value.utcoffset() is None:
            raise WireFormatError(f"{where}: {value.isoformat()} has no time zone (bus events "
                                  "carry aware datetimes, in UTC)")
        return value.astimezone(UTC).isoformat()
    if dataclasses.is_dataclass(hint):
        if type(value) is not hint:
            raise WireFormatError(f"{where}: a {hint.__name__} expected, got {_preview(value)}")
        return _encode_dataclass(value, where)
    _check_scalar(value, hint, where)
    return value


def _decode_dataclass(data: Any, cls: type[Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise WireFormatError(f"{where}: an object of fields expected, got {_preview(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise WireFormatError(f"{where}: {cls.__name__} has no field {', '.join(unknown)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise WireFormatError(f"{where}: {cls.__name__} needs {', '.join(missing)}")
    hints = _hints(cls)
    return cls(**{name: _decode_value(value, hints[name], f"{where}.{name}")
                  for name, value in data.items()})


def _decode_value(value: Any, hint: Any, where: str) -> Any:
    if _is_step(hint):
        if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
            raise WireFormatError(f"{where}: a call step expected, got {_preview(value)}")
        return steps.step_from_json(value)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        for arg in (a for a in args if a is not _NONE):
            try:
                return _decode_value(value, arg, where)
            except WireFormatError:
                continue
        raise WireFormatError(f"{where}: {_preview(value)} is not a {_name(hint)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise WireFormatError(f"{where}: a list expected, got {_preview(value)}")
        return tuple(_decode_value(item, args[0], f"{where}[{i}]")
                     for i, item in enumerate(value))
    if hint is datetime:
        if not isinstance(value, str):
            raise WireFormatError(f"{where}: an ISO 8601 time expected, got {_preview(value)}")
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise WireFormatError(f"{where}: {value!r} is not an ISO 8601 time") from None
        if at.utcoffset() is None:
            raise WireFormatError(f"{where}: {value!r} has no time zone")
        return at.astimezone(UTC)
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(value, typing.cast(type[Any], hint), where)
    _check_scalar(value, hint, where)
    return value


def _check_scalar(value: Any, hint: Any, where: str) -> None:
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (str, bool):
        ok = type(value) is hint
    elif hint is Any:
        ok = True
    else:
        raise WireFormatError(f"{where}: no wire form for a field of type {_name(hint)}")
    if not ok:
        raise WireFormatError(f"{where}: {_preview(value)} is not a {_name(hint)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _preview(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
