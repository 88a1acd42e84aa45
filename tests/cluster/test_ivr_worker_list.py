"""``[audiosocket] workers``: the dialplan's AudioSocket legs try the listed IVR workers in
turn; one box (no list) renders the one ``host:port`` as before; a malformed entry is
refused with what was expected. (The workers at work, with real Asterisk:
tests/cluster/test_ivr_workers.py.)"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hotline.asterisk.render import render_config
from hotline.edge.nodes import node, node_settings
from hotline.settings import Settings

SECRETS = {"asterisk": {"softphone_password": "soft-phone-pw-123",
                        "agent_passwords": {"3001": "agent-3001-pw"},
                        "agent_extensions": ["3001"]},
           "ami": {"secret": "s3cr3t-AMI-value"}}
LEGS = ("${CALL_ID}", "${SURVEY_ID}", "${CALLBACK_OFFER_ID}")


def dialplan(**audiosocket: object) -> str:
    return render_config(Settings(**SECRETS, audiosocket=audiosocket))["hotline.conf"]


def socket_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if "AudioSocket(" in line or "hotline-ivr-workers" in line]


def test_one_box_connects_to_its_one_ivr() -> None:
    assert socket_lines(dialplan(host="127.0.0.5", port=9300)) == [
        f"same => n,TryExec(AudioSocket({leg},127.0.0.5:9300))" for leg in LEGS]
    assert socket_lines(dialplan(workers=["127.0.0.6:9301"])) == [
        f"same => n,TryExec(AudioSocket({leg},127.0.0.6:9301))" for leg in LEGS]


def test_every_leg_tries_the_workers_in_turn() -> None:
    text = dialplan(workers=["127.0.0.2:9093", "127.0.0.3:9093", "127.0.0.4:9094"])
    lines = socket_lines(text)
    for leg, served in zip(LEGS, ("IVR_ROUTE", "IVR_SURVEY_SERVED", "CALLBACK_ANSWER"),
                           strict=True):
        assert f"same => n,Gosub(hotline-ivr-workers,s,1({leg},{served}))" in lines
    for n, worker in enumerate(["127.0.0.2:9093", "127.0.0.3:9093", "127.0.0.4:9094"]):
        assert f"same => n,TryExec(AudioSocket(${{ARG1}},{worker}))" in lines
        mark = "HOTLINE_IVR_DOWN_" + worker.replace(".", "_").replace(":", "_")
        # skipped while control has it marked down (hotline/roles/worker_presence.py)
        assert (f'same => n(w{n}),GotoIf($[${{heed}} & "${{GLOBAL({mark})}}" = "1"]?next)'
                in [line.strip() for line in text.splitlines()]), mark
    workers = text[text.index("[hotline-ivr-workers]"):]
    assert "% 3])" in workers and "GLOBAL(HOTLINE_IVR_NEXT)" in workers  # round robin


@pytest.mark.parametrize("worker", ["127.0.0.2", "127.0.0.2:http", "127.0.0.2:70000",
                                    "127.0.0.2:9093,x", "127.0.0.2:9093)"])
def test_a_malformed_worker_is_refused(worker: str) -> None:
    with pytest.raises(ValidationError, match="is not host:port"):
        Settings(audiosocket={"workers": [worker]})


def first_worker_rule(text: str) -> str:
    """What the worker list's first line picks when the node has not chosen one yet."""
    workers = text[text.index("[hotline-ivr-workers]"):]
    line = workers.splitlines()[1]
    return line[line.index('= ""]?') + len('= ""]?'):line.index(":${GLOBAL(HOTLINE_IVR_NEXT)}")]


def test_each_media_node_starts_its_round_robin_at_another_worker() -> None:
    """A node's first leg goes to the worker of the node's place in ``[edge] nodes`` (so two
    nodes' first calls go to two workers, not both to the first); later legs follow round
    robin from there. A node not in the list (one box) starts at one chosen by the clock
    (the seconds' count, modulo the workers)."""
    three = ["127.0.0.2:9093", "127.0.0.3:9093", "127.0.0.4:9094"]
    settings = Settings(**SECRETS, audiosocket={"workers": three}, edge={"nodes": [
        {"name": f"media-{n}", "address": f"127.0.0.{20 + n}"} for n in range(1, 5)]})
    firsts = [first_worker_rule(render_config(node_settings(settings, node(
        settings, f"media-{n}")))["hotline.conf"]) for n in range(1, 5)]
    assert firsts == ["0", "1", "2", "0"]  # the fourth node wraps round to the first
    assert first_worker_rule(dialplan(workers=three)) == "${EPOCH}"  # then % 3
