"""One member of the recorders' consumer group in a process of its own, for the test that
kills it: ``python -m tests.cluster.recorder_member_process REDIS_URL STREAM DATABASE_URL
JOURNAL_DIR NAME DIE_AT``. After its ``DIE_AT``-th delivery it waits until that event is in
the database, prints ``WRITTEN-UNACKED <entry id>`` and hangs in the handler (the delivery is
never acknowledged), for the test to kill -9 it there. Prints ``MEMBER UP`` once joined."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from crm.consultations.recorder import ConsultationRecorder, recorder_journal
from crm.storage.db import make_engine, make_session_factory
from hotline.bus.redis_bus import RedisStreamBus
from hotline.bus.settings import BusSettings
from hotline.bus.stream_entries import Delivery, redis_client
from hotline.roles.recorder_member import GROUP, RecorderMember


async def main(redis_url: str, stream: str, database_url: str, journal_dir: str, name: str,
               die_at: int) -> None:
    settings = BusSettings(kind="redis", redis_url=redis_url, stream=stream,
                           claim_idle_s=0.5, read_block_s=0.2)
    engine = make_engine(database_url)
    journal = recorder_journal(Path(journal_dir))
    client = redis_client(redis_url)
    bus = RedisStreamBus(settings, journal_dir=None)
    member: list[RecorderMember] = []
    recorder = ConsultationRecorder(make_session_factory(engine), journal=journal,
                                    on_written=lambda entries: member[0].written(entries))
    member.append(RecorderMember(client, bus, recorder, name))
    keeper = asyncio.create_task(member[0].run())
    never = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        await member[0].handle(delivery)
        if member[0].delivered == die_at:
            await recorder.drain()
            print("WRITTEN-UNACKED", delivery.entry_id, flush=True)
            await never.wait()  # killed here, holding the entry unacknowledged

    recorder.start()
    await bus.start()
    bus.consume(GROUP, name, handle)
    print("MEMBER UP", flush=True)
    await never.wait()
    keeper.cancel()


if __name__ == "__main__":
    redis_url, stream, database_url, journal_dir, name, die_at = sys.argv[1:7]
    asyncio.run(main(redis_url, stream, database_url, journal_dir, name, int(die_at)))
