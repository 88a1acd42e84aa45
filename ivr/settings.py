"""The IVR's settings sections (``[ami]``, ``[audiosocket]``), composed into the whole
settings by hotline.settings. Imports nothing of the hotline."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


def _sip_network(value: str) -> str:
    """An IP address or CIDR network as Asterisk's ACLs and identify sections take it."""
    try:
        network = ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not an IP address or a network in CIDR form, e.g. 203.0.113.5 or "
            f"203.0.113.0/28 ({exc})"
        ) from None
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


SipNetwork = Annotated[str, AfterValidator(_sip_network)]
"""An IP address or network (CIDR), normalised: 203.0.113.5, 203.0.113.0/28."""


class AmiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = Field("hotline", pattern=r"^[A-Za-z0-9_-]+$")
    secret: str = ""
    ping_interval: float = Field(5.0, gt=0)
    ping_timeout: float = Field(3.0, gt=0)
    reconnect_min: float = Field(0.5, gt=0)
    reconnect_max: float = Field(30.0, gt=0)


class AudioSocketSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    max_calls: int | None = Field(None, ge=0)
    """Calls the IVR serves at once; beyond it a new call is handed straight back to the
    dialplan, which queues it for an agent (no caller is turned away). None: 40 per CPU core
    (make bench-load holds 60-80 with speech on 2 cores); 0: no limit."""

    def call_limit(self) -> int | None:
        """The limit in force, None for none."""
        if self.max_calls is None:
            return 40 * (os.cpu_count() or 1)
        return self.max_calls or None

    # Who may connect, and how much one connection may hold (ivr/audiosocket/server.py).
    allowed_peers: list[SipNetwork] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], min_length=1)
    """Addresses (or CIDR networks) Asterisk connects from; a connection from anywhere else
    is closed at once. List your Asterisk servers when ``host`` is not loopback."""
    max_pending: int = Field(64, ge=1)
    """Connections not yet admitted (no call id yet, or its id not yet announced on AMI). When
    full, a new connection closes the oldest one that has sent no call id (Asterisk sends its
    id at once: that is an idle one); if every one has sent its id, the new one is closed."""
    first_frame_timeout: float = Field(2.0, gt=0)
    """Seconds a new connection has to send its call id (Asterisk sends it at once)."""
    announce_timeout: float = Field(3.0, gt=0)
    """Seconds to wait for AMI to announce a call id (HotlineCallStart/HotlineSurveyStart);
    an id not announced by then is closed, and the dialplan queues the caller."""
    max_burst_bytes: int = Field(64 * 1024, ge=4096)
    """Bytes a peer may send ahead of real time (8 kHz 16-bit audio, 16 kB/s) before its
    session counts as flooding and is closed: 64 KiB is about 4 s of audio."""
    max_buffered_bytes: int = Field(320_000, ge=4096)
    """Inbound audio one session holds for a call flow that is not reading it (320 kB: 20 s);
    beyond it the oldest is dropped, with a log line."""

    def peer_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``allowed_peers`` as networks."""
        return tuple(ipaddress.ip_network(peer) for peer in self.allowed_peers)
