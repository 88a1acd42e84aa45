"""Which bus a process gets (hotline/bus/factory.py) and the ``[bus]`` settings; the Redis bus
itself is tested against a real redis-server in tests/cluster/test_redis_bus.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.telephony.events import CallEnded, CallEventBus, CallStarted, EventBus
from hotline.bus.factory import consume, open_bus
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.stream_entries import Delivery
from hotline.settings import Settings, SettingsError, load_settings


def test_the_in_process_bus_is_the_default(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert settings.bus.kind == "memory"
    assert settings.bus.redis_url == "redis://127.0.0.1:6390/0"
    bus: EventBus = open_bus(settings)
    assert isinstance(bus, CallEventBus)


def test_the_redis_bus_is_chosen_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOTLINE_BUS__KIND", "redis")
    monkeypatch.setenv("HOTLINE_BUS__STREAM", "city:calls")
    settings = load_settings(fill_secrets=False)
    bus = open_bus(settings, journal_name="control-1")
    assert isinstance(bus, RedisStreamBus) and bus.settings.stream == "city:calls"


def test_a_bad_bus_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_BUS__KIND", "kafka")
    with pytest.raises(SettingsError, match=r"bus\.kind"):
        load_settings(fill_secrets=False)


async def test_consume_on_the_in_process_bus_gives_deliveries_with_distinct_ids() -> None:
    bus = CallEventBus()
    got: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery)

    consume(bus, "recorder", "r1", handler)
    events = [CallStarted("c-1", None, None), CallEnded("c-1", "end", None)]
    for event in events:
        await bus.publish(event)
    assert [d.event for d in got] == events
    assert len({d.event_id for d in got}) == 2 and not any(d.redelivered for d in got)
