"""Settings for a throwaway hotline on this machine: a private state directory, free loopback
ports and generated secrets, for the integration tests' Asterisk test bed and the benches."""

from __future__ import annotations

import socket
from pathlib import Path

from hotline.settings import Settings, fill_missing_secrets
from hotline.tools.sipp import LOCAL_IP, free_udp_port

BED_LANGUAGE_FALLBACK_S = 5.0
"""[intake] language_fallback_after on the test bed (queuerules.conf is rendered with it)."""
BED_TRUNK_ADDRESS = "127.0.0.5"
"""The carrier trunk's address on the test bed ([trunk] identified by IP)."""


def free_tcp_port(host: str = LOCAL_IP) -> int:
    """A TCP port nothing listens on now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def asterisk_test_settings(state_dir: Path) -> Settings:
    """Settings for a test bed: private state dir, free ports, generated secrets.

    The SIP edge is as narrow as on a production host: only 127.0.0.1 is the PSTN gateway
    and only 127.0.0.1 may use SIP as a phone, so tests can attack it from other loopback
    addresses (127.0.0.2, ...); the carrier trunk is 127.0.0.5. A caller waits 5 s (not 30)
    for an agent who speaks their language before anyone may answer. HOTLINE_* environment
    variables still win over these values.
    """
    settings = Settings(
        state_dir=state_dir,
        asterisk={"sip_port": free_udp_port(), "gateway_addresses": ["127.0.0.1"],
                  "sip_permit": ["127.0.0.1"], "metrics_port": free_tcp_port()},
        ami={"port": free_tcp_port()},
        audiosocket={"port": free_tcp_port()},
        intake={"language_fallback_after": BED_LANGUAGE_FALLBACK_S},
        trunk={"addresses": [BED_TRUNK_ADDRESS]},
    )
    fill_missing_secrets(settings)
    return settings
