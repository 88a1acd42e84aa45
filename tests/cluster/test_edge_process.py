"""The edge's Kamailio as a project process: its configuration passes the real `kamailio -c`,
a broken one and a taken port are refused with a clear message and leave nothing running."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from hotline.asterisk import host
from hotline.edge import kamailio
from hotline.edge.config import EdgeFiles, install
from hotline.settings import Settings
from hotline.tools.sipp import free_udp_port

EDGE = "127.0.16.11"

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists(),
    reason="kamailio is not installed (apt-get install kamailio)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, edge={
        "address": EDGE, "port": free_udp_port(host=EDGE),
        "nodes": [{"name": "media-1", "address": "127.0.16.12"},
                  {"name": "media-2", "address": "127.0.16.13"}]})


def test_the_rendered_configuration_passes_kamailio_c(settings: Settings) -> None:
    files = EdgeFiles.of(settings)
    install(settings, files)
    kamailio.check_config(files)
    assert oct(files.config.stat().st_mode & 0o777) == "0o640"


def test_a_broken_configuration_is_refused_with_kamailios_words(settings: Settings) -> None:
    files = EdgeFiles.of(settings)
    install(settings, files)
    with files.config.open("a") as fh:
        fh.write("\nroute[BROKEN] { no_such_function(); }\n")
    with pytest.raises(kamailio.EdgeError, match=r"fails `kamailio -c`:\n.*no_such_function"):
        kamailio.check_config(files)


@pytest.mark.skipif(os.geteuid() != 0, reason="the edge drops to the kamailio user: root")
def test_a_taken_port_is_named_and_nothing_is_left_running(settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((EDGE, settings.edge.port))
        with pytest.raises(kamailio.EdgeError, match=rf"udp/{settings.edge.port} on {EDGE} "
                                                     "is already in use"):
            kamailio.up(settings)
    assert kamailio.pid(EdgeFiles.of(settings)) is None
    assert kamailio.status(settings)["running"] is False


@pytest.mark.skipif(os.geteuid() != 0, reason="the edge drops to the kamailio user: root")
def test_down_stops_workers_whose_main_process_was_killed(settings: Settings) -> None:
    files = EdgeFiles.of(settings)
    leader = kamailio.up(settings)
    try:
        workers = [p for p in kamailio._group_members(leader) if p != leader]
        assert workers, "Kamailio runs worker processes"
        os.kill(leader, signal.SIGKILL)
        assert host.wait_exit(leader, 5)
        assert kamailio.pid(files) is None
        assert any(host.is_alive(p) for p in workers)
    finally:
        kamailio.down(settings)
    assert not any(host.is_alive(p) for p in workers)
    assert not files.pid_file.exists()
