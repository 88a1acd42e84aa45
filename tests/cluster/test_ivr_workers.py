"""IVR workers as processes: ``hotline serve --role control``, two ``--role ivr`` workers and
a ``--role web`` over a real redis-server, the test PostgreSQL database and the real test
Asterisk, whose dialplan lists both workers (``[audiosocket] workers``). A call and its
after-call survey are served by one worker each, the survey's rating written once. Silent
SIPp callers go through the IVR's greeting to the agent queue: calls are served by both
workers, each call's dialogue is complete and recorded once. Then, under a steady load (six
callers in the IVR at once, three on each worker), one worker is killed (SIGKILL): its
callers reach the queue (the dialplan's fallback), the other's finish their dialogue, control
marks the dead worker down on the dialplan, four callers placed at once after that are all
served by the surviving worker without a connect to the dead one, each
caller has one complete consultation, and no caller is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm.consultations.service import ConsultationDetail, find_consultations
from crm.storage.db import SessionFactory
from crm.surveys.service import list_surveys
from hotline.asterisk import up
from hotline.bus.redis_server import RedisServer
from hotline.settings import Settings
from hotline.tools.bed import free_tcp_port
from hotline.tools.phones import AgentPhone
from hotline.tools.sipp import place_call
from ivr.ami.client import AmiClient, AmiEvent
from ivr.settings import AudioSocketSettings
from tests.cluster.test_roles import (
    START_S,
    WAIT_S,
    database,
    role_settings,
    start_role,
    stop_cleanly,
)
from tests.integration.fault_tools import (
    HeldCaller,
    ServeProcess,
    no_bye_from_asterisk,
    serve_env,
    wait_until,
)
from tests.integration.service_fixtures import hang_up_leftover_calls

pytestmark = pytest.mark.asterisk

SKIP_S = 1.0
"""The dialplan's worker_skip_ms: a leg back from a worker sooner, unserved, goes to the next."""


@dataclass
class Workers:
    bed: Settings
    sessions: SessionFactory
    control: ServeProcess
    ivr: list[ServeProcess]
    queued: dict[str, asyncio.Event]
    """Caller number -> set once the caller joined the agent queue (AMI QueueCallerJoin)."""
    stack: contextlib.AsyncExitStack
    ami: AmiClient
    ports: list[int]
    """The workers' AudioSocket ports, in the order of ``ivr``."""

    def waits_in_queue(self, number: str) -> asyncio.Event:
        return self.queued.setdefault(number, asyncio.Event())

    async def call(self, number: str) -> HeldCaller:
        """A silent caller: the greeting, then the IVR routes it to an agent."""
        self.waits_in_queue(number)
        return await self.stack.enter_async_context(HeldCaller(self.bed, number=number))


def connected(worker: ServeProcess) -> int:
    return sum("AudioSocket connected" in line for line in worker.lines)


async def quiet_watcher(bed: Settings, queued: dict[str, asyncio.Event]) -> AmiClient:
    ami = AmiClient(bed.ami, name="test-ivr-workers")

    def on_join(event: AmiEvent) -> None:
        if (number := event.get("CallerIDNum")) in queued:
            queued[number].set()
    ami.subscribe("QueueCallerJoin", on_join)
    await ami.start()
    await ami.wait_ready(10)
    return ami


async def start(settings: Settings, role: str, redis: RedisServer,
                **env: str) -> ServeProcess:
    """``hotline serve --role ROLE`` (tests/cluster/test_roles.py) with settings of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "serve", "--role", role,
        env={**serve_env(settings), "HOTLINE_BUS__KIND": "redis",
             "HOTLINE_BUS__REDIS_URL": redis.url, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return ServeProcess(proc)


@pytest.fixture
async def workers(asterisk_bed: Settings, redis_server: RedisServer, postgres_database: str,
                  tmp_path: Path) -> AsyncIterator[Workers]:
    await hang_up_leftover_calls(asterisk_bed)
    ports = [free_tcp_port(), free_tcp_port()]
    listing = asterisk_bed.model_copy(deep=True)
    listing.audiosocket.workers = [f"127.0.0.1:{port}" for port in ports]
    await asyncio.to_thread(up, listing, lambda message: None)  # the dialplan lists both
    control_settings = role_settings(asterisk_bed, tmp_path, "control", postgres_database)
    web_settings = role_settings(asterisk_bed, tmp_path, "web", postgres_database)
    async with database(postgres_database) as sessions, contextlib.AsyncExitStack() as stack:
        stack.callback(up, asterisk_bed, lambda message: None)  # one worker again
        queued: dict[str, asyncio.Event] = {}
        ami = await quiet_watcher(asterisk_bed, queued)
        stack.push_async_callback(ami.close)
        # The callers here leave the queue unanswered: no callbacks dialled back to them.
        control = await start(control_settings, "control", redis_server,
                              HOTLINE_CALLBACKS__ENABLED="false")
        stack.push_async_callback(stop_cleanly, control)
        await control.wait_line("hotline control up", START_S)  # migrated the database
        ivr: list[ServeProcess] = []
        for n, port in enumerate(ports):
            settings = role_settings(asterisk_bed, tmp_path, f"ivr-{n}", postgres_database)
            settings.audiosocket.port = port
            ivr.append(await start(settings, "ivr", redis_server,  # callers say nothing
                                   HOTLINE_SURVEY__COMMENT_SILENCE_SECONDS="1.0"))
            stack.push_async_callback(ivr[-1].stop)
        web = await start_role(web_settings, "web", redis_server)
        stack.push_async_callback(stop_cleanly, web)
        await asyncio.gather(*(w.wait_line("hotline ivr up", START_S) for w in ivr),
                             web.wait_line("hotline web up", START_S))
        yield Workers(asterisk_bed, sessions, control, ivr, queued, stack, ami, ports)


async def consultation_of(workers: Workers, number: str) -> ConsultationDetail:
    """The caller's one consultation, once control wrote its end."""
    found: list[ConsultationDetail] = []

    async def ended() -> bool:
        found[:] = await find_consultations(workers.sessions, phone=number)
        assert len(found) <= 1, f"{number}: {len(found)} consultations"
        return len(found) == 1 and found[0].ended_at is not None

    await wait_until(ended, WAIT_S, f"control wrote the end of {number}'s consultation")
    return found[0]


async def test_ivr_workers_share_the_legs_and_survive_one_killed(workers: Workers) -> None:
    """One cluster (its start-up loads the speech models twice) for both parts: a call and
    its survey, then calls while a worker is killed."""
    await survey_on_a_worker(workers)
    await calls_survive_a_worker_killed_under_load(workers)


async def survey_on_a_worker(workers: Workers) -> None:
    """The survey leg is announced on control's AMI link and reaches the worker the
    dialplan picked only through the bus; the worker's rating lands in the database."""
    bed = workers.bed
    queue, interface = bed.asterisk.queue_name, "PJSIP/2001"
    async with contextlib.AsyncExitStack() as stack:
        phone = await stack.enter_async_context(
            AgentPhone(bed, "2001", ring_ms=200, hold_ms=1500))
        added = await workers.ami.action("QueueAdd", Queue=queue, Interface=interface)
        assert added.get("Response") == "Success", added.headers
        stack.push_async_callback(workers.ami.action, "QueueRemove", Queue=queue,
                                  Interface=interface)
        # Silent through the greeting (about 5 s) to the agent, who hangs up after 1.5 s;
        # the caller keys 4 from 9.5 s on, every 3 s, into the survey (keys before it are
        # lost).
        number = "13800000009"
        call = asyncio.ensure_future(place_call(
            bed, caller_number=number, keys="," * 9 + "4" + ",,,4,,,4,,,4", hold_ms=40_000,
            wait_for_bye=True))
        try:
            await phone.wait_answered(WAIT_S)
            assert await phone.wait_hangup(10) == "local"  # the agent hung up
            result = await asyncio.wait_for(call, WAIT_S)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
    assert result.answered and result.hung_up_by == "remote"  # the IVR ended the survey
    consultation = await consultation_of(workers, number)
    [survey] = await list_surveys(workers.sessions, phone=number)
    assert (survey.kind, survey.outcome, survey.score, survey.rated_by) == (
        "after_call", "rated", 4, "keys")
    assert survey.call_id == consultation.call_id
    assert survey.agent_interface == interface
    kinds = [step["kind"] for step in consultation.steps]
    assert kinds.index("survey_started") > kinds.index("route")
    # Each leg went to one worker, taking turns: the call to one, its survey to the other.
    assert sorted(connected(w) for w in workers.ivr) == [1, 1]


IN_IVR = 6
"""Callers placed together, in the IVR at once when a worker is killed (three on each)."""
AFTER_KILL = 4
"""Callers placed at once after the kill: all served by the surviving worker."""


async def calls_survive_a_worker_killed_under_load(workers: Workers) -> None:
    """Six silent callers placed at once: the dialplan takes turns, three on each worker.
    Once all six are in the greeting (past worker_skip_ms, so a leg handed back is not sent
    to the next worker), one worker is killed -9: its callers go on to the queue, the
    dialplan's fallback, not greeted again; the other worker's callers finish their dialogue
    and are routed. Once control has marked the dead worker down, four callers placed at
    once are all served by the survivor, none tried on the dead worker. Nobody is
    dropped; every caller has one complete consultation."""
    first, second = workers.ivr
    doomed, survivor = first, second
    base = {id(w): connected(w) for w in workers.ivr}

    def took(worker: ServeProcess) -> int:
        return connected(worker) - base[id(worker)]

    numbers = [f"138000001{n:02d}" for n in range(IN_IVR + AFTER_KILL + 1)]
    before_kill, after_kill = numbers[:IN_IVR], numbers[IN_IVR:-1]
    stale = numbers[-1]  # placed while every worker is marked down
    callers: dict[str, HeldCaller] = {}
    for number in before_kill:
        callers[number] = await workers.call(number)
    await wait_for(lambda: took(first) + took(second) == IN_IVR, f"the IVR took {IN_IVR} calls")
    # Turns: three each (two calls reading the turn at the same instant may share one).
    assert min(took(first), took(second)) >= 2, (took(first), took(second))
    # Mid-greeting (it lasts about 5 s): later than the dialplan skips a worker that hands
    # a call back at once.
    loop = asyncio.get_running_loop()
    since = loop.time()
    await wait_until(lambda: loop.time() - since > SKIP_S, SKIP_S + 1, "the greeting plays")
    queued_before_kill = {n for n in before_kill if workers.queued[n].is_set()}
    doomed.kill()
    await doomed.proc.wait()
    for number in before_kill:  # the doomed worker's callers too: the dialplan's fallback
        await asyncio.wait_for(workers.queued[number].wait(), WAIT_S)

    # Control marks the dead worker down on the dialplan once its presence key expires
    # (hotline/roles/worker_presence.py). Then callers placed at once are all sent to the
    # survivor: none connects to the dead worker's port (a listener there counts), so no
    # connect is refused (a refused one closes its socket twice in Asterisk 22 and can
    # cut another new call's AudioSocket: docs/cluster.md).
    dead = f"127.0.0.1:{workers.ports[workers.ivr.index(doomed)]}"
    await wait_for(lambda: any(f"IVR worker {dead} down" in line
                               for line in workers.control.lines), f"{dead} marked down")
    knocks: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        knocks.append(1)
        writer.close()

    held = took(survivor)
    async with await asyncio.start_server(count, "127.0.0.1", int(dead.rpartition(":")[2])):
        for number in after_kill:
            callers[number] = await workers.call(number)
        await wait_for(lambda: took(survivor) == held + AFTER_KILL,
                       "the surviving worker took the calls")
        for number in after_kill:
            await asyncio.wait_for(workers.queued[number].wait(), WAIT_S)
    assert knocks == [], f"{len(knocks)} AudioSocket connect(s) to the worker marked down"

    # Every worker marked down (a stale mark): the dialplan tries them all anyway.
    alive = AudioSocketSettings.down_mark(
        f"127.0.0.1:{workers.ports[workers.ivr.index(survivor)]}")
    await workers.ami.action("Setvar", Variable=alive, Value="1")
    try:
        callers[stale] = await workers.call(stale)
        await wait_for(lambda: took(survivor) == held + AFTER_KILL + 1,
                       "the survivor took a call while marked down too")
        await asyncio.wait_for(workers.queued[stale].wait(), WAIT_S)
    finally:
        await workers.ami.action("Setvar", Variable=alive, Value="")

    for number, caller in callers.items():
        result = await caller.hang_up()
        assert no_bye_from_asterisk(result), f"{number} was dropped: {result.events}"
    fell_back = []
    for number in numbers:
        consultation = await consultation_of(workers, number)
        kinds = [step["kind"] for step in consultation.steps]
        served = [w for w in (first, second) if any(
            consultation.call_id in line and "AudioSocket connected" in line
            for line in w.lines)]
        assert len(served) == 1, (number, served)
        assert kinds.count("ivr_connected") == kinds.count("queued") == 1, (number, kinds)
        if number in after_kill or number == stale:
            assert served == [survivor], number
        if served == [doomed] and number not in queued_before_kill:
            # To the queue as on one box, not greeted again.
            assert "route" not in kinds, (number, kinds)
            assert consultation.ivr_route == "fallback", (number, consultation.ivr_route)
            fell_back.append(number)
            continue
        assert kinds.count("route") == 1, (number, consultation.steps, [
            line for w in served for line in w.lines if consultation.call_id in line])
        assert consultation.ivr_route == "agent"  # set by the worker over its AMI link
    # Several callers were in the dead worker's dialogue when it died.
    assert len(fell_back) >= 2, (fell_back, queued_before_kill)
    print(f"\nworker killed with {IN_IVR} callers in the IVR: {len(fell_back)} of its "
          f"callers fell back to the queue, {len(queued_before_kill)} already queued; "
          f"{AFTER_KILL} later callers on the survivor; {len(numbers)} consultations, "
          "none dropped")


async def wait_for(check: Callable[[], bool], what: str) -> None:
    """Bounded wait for a condition on the workers' output (it changes as lines come)."""
    await wait_until(check, WAIT_S, what)
