"""Media nodes and the SIP edge's configuration, rendered without running anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline.asterisk.layout import NODES_DIR, chroot_installation, node_installation
from hotline.asterisk.render import render_config
from hotline.edge.config import EdgeFiles, accepted_sources, render_dispatcher_list
from hotline.edge.config import render_config as render_edge
from hotline.edge.nodes import UnknownNodeError, node, node_settings
from hotline.settings import Settings, SettingsError, load_settings

PASSWORDS = {"2001": "p1", "2002": "p2", "2003": "p3", "2004": "p4"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        asterisk={"softphone_password": "soft", "agent_passwords": PASSWORDS},
        ami={"secret": "ami-secret"},
        edge={"address": "127.0.0.1", "port": 5060, "sources": ["203.0.113.0/28"],
              "nodes": [{"name": "media-1", "address": "127.0.0.2"},
                        {"name": "media-2", "address": "127.0.0.3", "sip_port": 5070}]},
    )


def test_a_single_box_is_no_node(settings: Settings) -> None:
    config = render_config(settings)
    assert settings.asterisk.node_name == ""
    assert config["asterisk.conf"].count("[directories](!)") == 1
    assert "systemname" not in config["asterisk.conf"]
    assert "HOTLINE_NODE" not in config["hotline.conf"] + config["manager.conf"]
    root = Path("/srv/root")
    assert node_installation(chroot_installation(root), "") == chroot_installation(root)
    # The default [edge]'s queue nodes change nothing on one box (only a cluster's nodes).
    without = settings.model_copy(update={"edge": settings.edge.model_copy(
        update={"queue_nodes": []})})
    assert settings.edge.queue_nodes and render_config(without) == config


def test_a_node_has_its_own_address_ports_directories_and_name(settings: Settings) -> None:
    mine = node_settings(settings, node(settings, "media-2"))
    inst = node_installation(chroot_installation(Path("/srv/root")), "media-2")
    config = render_config(mine, inst.dirs)
    top = f"{NODES_DIR}/media-2"
    assert inst.config_file == f"{top}/etc/asterisk.conf"
    assert inst.argv("-rx", "x")[:5] == ["chroot", "/srv/root", "/usr/sbin/asterisk", "-C",
                                         inst.config_file]
    conf = config["asterisk.conf"]
    assert re.search(r"^\[directories\]$", conf, re.M), conf
    for key, sub in (("astetcdir", "etc"), ("astrundir", "run"), ("astspooldir", "spool"),
                     ("astlogdir", "log"), ("astdbdir", "lib"), ("astcachedir", "cache")):
        assert f"{key} => {top}/{sub}\n" in conf
    assert "astdatadir => /usr/share/asterisk\n" in conf
    assert "systemname = media-2\n" in conf
    assert "bind = 127.0.0.3:5070\n" in config["pjsip.conf"]
    assert "bindaddr = 127.0.0.3\n" in config["manager.conf"]
    assert "channelvars = CALL_ID,IVR_ROUTE,HOTLINE_NODE\n" in config["manager.conf"]
    assert "Set(__HOTLINE_NODE=media-2)" in config["hotline.conf"]
    # The edge is the nodes' only PSTN gateway.
    assert re.search(r"\[pstn-gateway-identify\][^\[]*match = 127\.0\.0\.1\n(?!match)",
                     config["pjsip.conf"])
    assert mine.state_dir == settings.state_dir / "nodes" / "media-2"
    assert settings.asterisk.node_name == ""  # the hotline's own settings are untouched


def test_an_unknown_node_is_named_with_the_known_ones(settings: Settings) -> None:
    with pytest.raises(UnknownNodeError, match="media-1, media-2"):
        node(settings, "media-9")


def test_the_edge_dispatches_to_every_node_and_accepts_its_sources(settings: Settings) -> None:
    listing = render_dispatcher_list(settings.edge)
    assert "1 sip:127.0.0.2:5060 0 0 duid=media-1\n" in listing
    assert "1 sip:127.0.0.3:5070 0 0 duid=media-2\n" in listing
    assert accepted_sources(settings.edge) == ["203.0.113.0/28", "127.0.0.2", "127.0.0.3"]
    files = EdgeFiles.of(settings)
    cfg = render_edge(settings, files)
    assert "listen=udp:127.0.0.1:5060\n" in cfg
    assert '"$si", "203.0.113.0/28,127.0.0.2,127.0.0.3"' in cfg
    assert f'modparam("dispatcher", "list_file", "{files.dispatcher_list}")' in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 2)' in cfg
    assert 'modparam("tm", "fr_timer", 2000)' in cfg
    assert "record_route();" in cfg and 'failure_route[NEXT_NODE]' in cfg


@pytest.mark.parametrize(("edge", "message"), [
    ({"nodes": [{"name": "a", "address": "127.0.0.2"}, {"name": "a", "address": "127.0.0.3"}]},
     "node names must differ"),
    ({"nodes": [{"name": "a", "address": "127.0.0.1"}]}, "none the edge's"),
    ({"nodes": [{"name": "Media 1", "address": "127.0.0.2"}]}, "edge.nodes.0.name"),
    ({"address": "localhost"}, "not an IPv4 address"),
    ({"nodes": [{"name": "a", "address": "10.0.0.2"}]},
     "edge.queue_nodes: the media nodes are on other machines (10.0.0.2)"),
])
def test_bad_edge_settings_are_refused_by_name(tmp_path: Path, edge: dict[str, object],
                                               message: str) -> None:
    toml = tmp_path / "hotline.toml"
    lines = [f'state_dir = "{tmp_path}"', "[edge]"]
    for key, value in edge.items():
        if key == "nodes":
            nodes = ", ".join("{ " + ", ".join(f'{k} = "{v}"' for k, v in n.items()) + " }"
                              for n in value)  # type: ignore[attr-defined]
            lines.append(f"nodes = [{nodes}]")
        else:
            lines.append(f'{key} = "{value}"')
    toml.write_text("\n".join(lines) + "\n")
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(toml, fill_secrets=False)


def test_the_default_cluster_hands_callers_to_its_queue_node(settings: Settings,
                                                              tmp_path: Path) -> None:
    """Issue 16's default: the queue node and its standby beside the media nodes, so a caller
    on either media node waits where every signed-in agent is; ``queue_nodes = []`` (e.g.
    media nodes on other machines) queues each node's callers itself."""
    assert [(q.name, q.address, q.sip_port, q.ami_port) for q in settings.edge.queue_nodes] == [
        ("queue-1", "127.0.0.12", 5060, 5038), ("queue-2", "127.0.0.13", 5060, 5038)]
    for media in ("media-1", "media-2"):
        mine = node_settings(settings, node(settings, media)).asterisk
        assert mine.queue_handoff == ["127.0.0.12:5060", "127.0.0.13:5060"], media
    queue_node = node_settings(settings, node(settings, "queue-1")).asterisk
    assert queue_node.queue_handoff == [] and queue_node.handoff_sources == [
        "127.0.0.2", "127.0.0.3"]
    assert render_dispatcher_list(settings.edge).splitlines()[-2:] == [
        "2 sip:127.0.0.12:5060 0 2 duid=queue-1", "2 sip:127.0.0.13:5060 0 1 duid=queue-2"]
    assert "listen=udp:127.0.0.1:5070\n" in render_edge(settings, EdgeFiles.of(settings))
    toml = tmp_path / "alone.toml"
    toml.write_text(f'state_dir = "{tmp_path}"\n[edge]\nqueue_nodes = []\n'
                    'nodes = [{ name = "a", address = "10.0.0.2" }]\n')
    alone = load_settings(toml, fill_secrets=False)
    assert alone.edge.queue_nodes == []
    assert node_settings(alone, node(alone, "a")).asterisk.queue_handoff == []
