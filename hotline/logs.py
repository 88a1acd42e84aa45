"""How the hotline's commands write their log: text (the default) or one JSON object per line
(``log_format = "json"``, ``HOTLINE_LOG_FORMAT=json`` or ``hotline --log-format json``), for a
log collector.

Every line written while the code works for a call carries its call id: the JSON field
``call_id``, from the line's own ``call_id`` (``ivr.audiosocket.session.call_logger``) or the
call being worked for (``crm.telephony.call_context``). Both formats mask phone numbers in the
message the way an agent's screen does (``crm.agents.auth.mask_phone``: 138********), so the
log holds no more of a caller's number than an agent may see; names are never logged.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Literal

from crm.agents.auth import mask_phone
from crm.telephony.call_context import current_call_id

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

PHONE_NUMBER = re.compile(r"(?<![\w./+-])\+?\d{7,15}(?![\w./-])")
"""A run of 7-15 digits standing alone (an optional +; ``sip:13800138000@`` too): a phone
number. Runs inside words, paths, channel names, Asterisk's unique ids, addresses or case
numbers (20261206-0001) are left alone."""


def mask_numbers(text: str) -> str:
    return PHONE_NUMBER.sub(lambda m: mask_phone(m.group(0), "agent") or "", text)


def call_id_of(record: logging.LogRecord) -> str | None:
    return getattr(record, "call_id", None) or current_call_id()


class MaskedTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_numbers(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, call_id
    (when working for a call), exception (its traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_numbers(record.getMessage()),
        }
        if (call_id := call_id_of(record)) is not None:
            line["call_id"] = call_id
        if record.exc_info:
            line["exception"] = mask_numbers(self.formatException(record.exc_info))
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """The root logger's one handler (standard error) in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else MaskedTextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])  # no-op when already configured
