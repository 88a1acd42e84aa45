"""What the queue node tells a media node when it ends a caller's leg (the BYE's Q.850
cause, dialplans/hotline.conf.j2): a wait past ``[queue_wait] max_wait`` on the queue node
brings the caller to the callback offer on their media node, as on one box; the position
announcement they heard there is a step of their call. (The agent who hangs up first, and
the after-call survey it brings: test_city_queue.) Real Kamailio, two media nodes, the
queue node and its standby."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crm.storage.db import SessionFactory
from crm.telephony.events import CallerQueued, CallStarted, CallStep, IvrLegAnnounced
from crm.telephony.steps import QueuePositionAnnounced
from hotline.settings import Settings
from hotline.tools.sipp import place_call
from tests.cluster.edge_bed import at_edge, wait_for
from tests.cluster.queue_bed import Control, running_control, running_queue_cluster

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

MAX_WAIT_S = 6
"""Long enough for the announcement on joining the queue (about 3 s) to end."""


@pytest.fixture(scope="module")
def waiting_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_queue_cluster(tmp_path_factory, max_wait=MAX_WAIT_S) as settings:
        yield settings


@pytest.fixture
async def control(waiting_cluster: Settings, pg_sessions: SessionFactory,
                  tmp_path: Path) -> AsyncIterator[Control]:
    async with running_control(waiting_cluster, pg_sessions, tmp_path / "journal") as running:
        yield running


async def test_a_wait_past_max_wait_on_the_queue_node_brings_the_callback_offer_and_steps(
        waiting_cluster: Settings, control: Control) -> None:
    # Nobody signed in: the caller waits on the queue node until max_wait runs out.
    result = await place_call(at_edge(waiting_cluster), caller_number="13940000001",
                              wait_for_bye=True, hold_ms=40_000, max_seconds=45)
    assert result.answered and result.hung_up_by == "remote", result.stderr
    [call_id] = {e.call_id for e in control.events if isinstance(e, CallStarted)}
    assert any(isinstance(e, CallerQueued) and e.call_id == call_id for e in control.events)
    await wait_for(lambda: any(isinstance(e, IvrLegAnnounced) and e.kind == "offer"
                               for e in control.events), 10, "the callback offer announced")
    offers = [(e.for_call, e.detail) for e in control.events
              if isinstance(e, IvrLegAnnounced) and e.kind == "offer"]
    assert offers == [(call_id, "max_wait")], offers
    # The announcement on joining, heard on the queue node (control's link there).
    announced = [e for e in control.events if isinstance(e, CallStep)
                 and isinstance(e.step, QueuePositionAnnounced)]
    assert [(e.call_id, e.step.position) for e in announced] == [(call_id, 1)], announced
