"""Issue 17: TLS for agent phones, against the real Asterisk 22: with a certificate set, a
reload serves SIP over TLS with that certificate and the agent endpoints demand SRTP.

The certificate is a throwaway self-signed one made with openssl for this test; the test
bed is reloaded with [sip_transport] TLS for the test and with its own settings after."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from hotline.asterisk import cli, up
from hotline.asterisk.layout import Installation, chroot_installation
from hotline.settings import Settings, SipTransportSettings
from hotline.tools.bed import free_tcp_port

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

KEYS = "/etc/asterisk/hotline-test-tls"
"""Where the test's certificate lies, as Asterisk sees it."""


def self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir(mode=0o755, exist_ok=True)
    cert, key = folder / "hotline.crt", folder / "hotline.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=hotline.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    cert.chmod(0o644)
    key.chmod(0o644)  # a throwaway key; Asterisk runs as its own user
    return cert, key


async def options_over_tls(port: int, cafile: Path) -> tuple[bytes, bytes]:
    """Send SIP OPTIONS over TLS; return (the server's certificate, the status line)."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 10)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        local = writer.get_extra_info("sockname")
        request = (
            f"OPTIONS sip:127.0.0.1:{port};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK-tls-probe\r\n"
            f"From: <sip:probe@{local[0]}>;tag=probe1\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: tls-probe-1\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        writer.write(request)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        return der, status
    finally:
        writer.close()


async def test_agent_phones_get_tls_and_srtp_with_a_certificate(asterisk_bed: Settings) -> None:
    inst = (Installation.load(asterisk_bed.state_dir)
            or chroot_installation(asterisk_bed.asterisk.root_dir))
    folder = inst.host_path(KEYS)
    cert, _ = self_signed(folder)
    port = free_tcp_port()
    settings = asterisk_bed.model_copy(deep=True)
    settings.sip_transport = SipTransportSettings(
        tls_cert_file=f"{KEYS}/hotline.crt", tls_key_file=f"{KEYS}/hotline.key", tls_port=port)
    agent = settings.asterisk.agent_extensions[0]
    try:
        up(settings, progress=lambda message: None)
        transports = cli(settings, "pjsip show transports")
        assert re.search(rf"transport-tls\s+tls\s+\d+\s+\d+\s+127\.0\.0\.1:{port}", transports), \
            transports
        endpoint = cli(settings, f"pjsip show endpoint {agent}")
        assert re.search(r"^\s*media_encryption\s*:\s*sdes\s*$", endpoint, re.M), endpoint
        assert re.search(r"^\s*transport\s*:\s*transport-tls\s*$", endpoint, re.M), endpoint
        assert "res_srtp.so" in cli(settings, "module show like srtp")
        der, status = await options_over_tls(port, cert)
        assert der == ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert status.startswith(b"SIP/2.0 "), status
    finally:
        up(asterisk_bed, progress=lambda message: None)
        shutil.rmtree(folder, ignore_errors=True)
    endpoint = cli(asterisk_bed, f"pjsip show endpoint {agent}")
    assert re.search(r"^\s*media_encryption\s*:\s*no\s*$", endpoint, re.M), endpoint
