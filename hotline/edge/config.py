"""Render the SIP edge's Kamailio configuration and dispatcher list from the settings.

The template is ``hotline/edge/templates/kamailio.cfg.j2``, inside the package: package data
ships in the wheel as it is (no build hook), and it stays out of ``asterisk-config/``, whose
every template the Asterisk renderer installs into Asterisk's configuration directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from hotline.assets import EDGE_TEMPLATES, asset_dir
from hotline.edge.settings import EdgeSettings, MediaNode
from hotline.settings import Settings

BANNER = "Rendered by hotline.edge.config from the hotline repository; edits are overwritten."
DISPATCHER_SET = 1
"""The dispatcher set of the media nodes."""
QUEUE_SET = 2
"""The dispatcher set of the queue node and its standby, where agents' phones register."""


@dataclass(frozen=True)
class EdgeFiles:
    """Where the edge keeps its files: ``<state_dir>/edge``."""

    base: Path

    @classmethod
    def of(cls, settings: Settings) -> EdgeFiles:
        return cls(settings.state_dir.resolve() / "edge")

    @property
    def config(self) -> Path:
        return self.base / "kamailio.cfg"

    @property
    def dispatcher_list(self) -> Path:
        return self.base / "dispatcher.list"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def pid_file(self) -> Path:
        return self.base / "kamailio.pid"

    @property
    def ctl_socket(self) -> Path:
        return self.run_dir / "kamailio.ctl"

    @property
    def log_file(self) -> Path:
        return self.base / "kamailio.log"


def node_uri(node: MediaNode) -> str:
    return f"sip:{node.address}:{node.sip_port}"


def render_dispatcher_list(edge: EdgeSettings) -> str:
    """One line per node: set, destination, flags, priority, attributes (its name). The queue
    nodes' set is ordered by priority: the queue node first (highest), then its standby."""
    lines = [f"# {BANNER}", "# setid destination flags priority attributes"]
    lines += [f"{DISPATCHER_SET} {node_uri(node)} 0 0 duid={node.name}" for node in edge.nodes]
    lines += [f"{QUEUE_SET} {node_uri(node)} 0 {len(edge.queue_nodes) - i} duid={node.name}"
              for i, node in enumerate(edge.queue_nodes)]
    return "\n".join(lines) + "\n"


def accepted_sources(edge: EdgeSettings) -> list[str]:
    """Networks the edge takes SIP from on its carriers' port: the configured sources and
    every media node."""
    return list(dict.fromkeys([*edge.sources, *(node.address for node in edge.nodes)]))


def phone_sources(edge: EdgeSettings) -> list[str]:
    """Networks the edge takes SIP from on its phones' port: the phones' networks and the
    queue nodes (they call and probe the phones through the edge)."""
    return list(dict.fromkeys([*edge.phone_sources,
                               *(node.address for node in edge.queue_nodes)]))


def render_config(settings: Settings, files: EdgeFiles, *, debug: int = 2) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(asset_dir(EDGE_TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    edge = settings.edge
    return env.get_template("kamailio.cfg.j2").render(
        banner=BANNER,
        e=edge,
        debug=debug,
        set_id=DISPATCHER_SET,
        queue_set=QUEUE_SET if edge.queue_nodes else None,
        queue_sources=",".join(node.address for node in edge.queue_nodes),
        phone_sources=",".join(phone_sources(edge)),
        list_file=files.dispatcher_list,
        ctl_socket=files.ctl_socket,
        fr_timer_ms=round(edge.reply_timeout * 1000),
        sources=",".join(accepted_sources(edge)),
        media_sources=",".join(node.address for node in edge.nodes),
    )


def install(settings: Settings, files: EdgeFiles, gid: int | None = None) -> None:
    """Write kamailio.cfg and dispatcher.list into the edge's directory (readable by the
    group ``gid`` Kamailio runs as, nobody else) and create its runtime directory."""
    files.base.mkdir(parents=True, exist_ok=True)
    files.run_dir.mkdir(exist_ok=True)
    _write(files.config, render_config(settings, files), gid)
    _write(files.dispatcher_list, render_dispatcher_list(settings.edge), gid)
    for directory in (files.base, files.run_dir):
        directory.chmod(0o750 if gid is not None else 0o700)
        if gid is not None:
            os.chown(directory, 0, gid)
    if gid is not None:
        files.run_dir.chmod(0o770)


def _write(path: Path, text: str, gid: int | None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o640)
    if gid is not None:
        os.chown(tmp, 0, gid)
    os.replace(tmp, path)
