"""Issue 16: an INVITE the edge sent to a node that died (before any probe noticed) is not
lost: the node does not answer within the edge's reply timeout, the failure route takes the
node out and sends the call to the next node, where it is answered. Probes here run only
once a minute, so what takes the dead node out is the call itself."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from hotline.edge import nodes
from hotline.settings import Settings
from tests.cluster.edge_bed import calls, counts, node_flags, running_cluster

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def slow_probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with running_cluster(tmp_path_factory, edge="127.0.16.5", probe_interval=60,
                         media={"node-c": "127.0.16.6", "node-d": "127.0.16.7"}) as settings:
        yield settings


async def test_a_call_sent_to_a_dead_node_fails_over_to_the_next(slow_probes: Settings) -> None:
    victim, survivor = "node-d", "node-c"
    pid = nodes.pid(slow_probes, victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert node_flags(slow_probes)[victim].startswith("A"), "a probe ran: nothing to test"

    before = counts(slow_probes, [survivor])[survivor]
    results = await calls(slow_probes, 4, first=300)
    assert all(r.answered and r.ok for r in results), [r.stderr for r in results]
    assert counts(slow_probes, [survivor])[survivor] - before == 4
    assert not node_flags(slow_probes)[victim].startswith("A")
