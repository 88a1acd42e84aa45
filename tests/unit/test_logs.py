"""The log's formats: text by default, JSON on request; the call id on the lines written for a
call; phone numbers masked as an agent's screen masks them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from crm.telephony.call_context import call_context, enter_call
from crm.telephony.events import CallEventBus, CallStarted
from hotline.logs import TEXT_FORMAT, JsonFormatter, MaskedTextFormatter, mask_numbers
from ivr.audiosocket.session import call_logger


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_call_being_worked_for(json_lines) -> None:
    logger, out = json_lines
    logger.info("before any call")
    with call_context("c-1"):
        logger.info("within the call")
        with call_context(None):
            logger.info("still within it")
    call_logger(logger, "c-2").warning("through the call logger")
    logger.info("after it")
    lines = parsed(out)
    assert [line.get("call_id") for line in lines] == [None, "c-1", "c-1", "c-2", None]
    assert lines[3]["message"] == "[call c-2] through the call logger"
    assert lines[3]["level"] == "WARNING" and lines[0]["logger"] == "test.logs.json"


async def test_tasks_started_for_a_call_log_its_id_and_the_bus_names_the_event_call(
        json_lines) -> None:
    logger, out = json_lines

    async def call_work() -> None:
        logger.info("in a task of the call")

    async def connection() -> None:
        enter_call("c-3")
        await asyncio.create_task(call_work())

    await asyncio.create_task(connection())
    bus = CallEventBus()

    async def subscriber(event: object) -> None:
        logger.info("subscriber saw an event")

    bus.subscribe(subscriber)
    await bus.publish(CallStarted("c-4", None, None))
    logger.info("outside")
    assert [line.get("call_id") for line in parsed(out)] == ["c-3", "c-4", None]


def test_phone_numbers_are_masked_and_other_numbers_kept(json_lines) -> None:
    logger, out = json_lines
    logger.info("call %s: started from %s; case %s at %s, port %d, %s", "0f8e-11", "13800138000",
                "20261206-0001", "2026-12-06 10:15:00", 45123, "+8613800138000")
    message = parsed(out)[0]["message"]
    assert "13800138000" not in message and "138********" in message
    assert "+86**********" in message
    assert "20261206-0001" in message and "2026-12-06 10:15:00" in message and "45123" in message


def test_text_stays_the_default_shape_with_numbers_masked() -> None:
    record = logging.LogRecord("hotline", logging.INFO, __file__, 1, "from %s", ("13800138000",),
                               None)
    text = MaskedTextFormatter(TEXT_FORMAT).format(record)
    assert text.endswith(" INFO hotline: from 138********")
    assert mask_numbers("no number here: 123456") == "no number here: 123456"
    assert mask_numbers("<sip:13800138000@127.0.0.1:5060>") == "<sip:138********@127.0.0.1:5060>"
    assert mask_numbers("PJSIP/gateway-00000012 1733480000.1234") == (
        "PJSIP/gateway-00000012 1733480000.1234")


@pytest.mark.parametrize(("flag", "env", "as_json"), [
    ([], {}, False), (["--log-format", "json"], {}, True),
    ([], {"HOTLINE_LOG_FORMAT": "json"}, True)])
def test_the_cli_writes_text_unless_json_is_asked_for(tmp_path, flag: list[str],
                                                      env: dict[str, str],
                                                      as_json: bool) -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hotline.cli", *flag, "asterisk", "render", str(tmp_path / "etc")],
        env={**os.environ, "HOTLINE_STATE_DIR": str(tmp_path / "state"), **env},
        capture_output=True, text=True, timeout=120, check=True)
    logged = [line for line in out.stderr.splitlines() if "queue sounds:" in line]
    assert len(logged) == 1, out.stderr
    if as_json:
        line = json.loads(logged[0])
        assert line["level"] == "INFO" and line["logger"] == "hotline.asterisk.sounds"
    else:
        assert " INFO hotline.asterisk.sounds: queue sounds:" in logged[0]
