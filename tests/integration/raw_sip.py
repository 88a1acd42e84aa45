"""A minimal SIP caller over UDP for tests that must send bytes SIPp's scenarios cannot carry.

SIPp scenarios are XML rendered from templates, so quotes, backslashes and bytes that are not
UTF-8 in a display name or a user part cannot reach Asterisk through them. This caller writes
the INVITE itself: ``From: "<display>" <sip:<user>@host>`` with the display name and user
part as raw bytes, answers the 200 OK with an ACK and hangs up with BYE. It receives (and
drops) the RTP Asterisk sends, and sends none: the IVR's prompts keep the AudioSocket alive.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from dataclasses import dataclass, field


class RawSipError(AssertionError):
    pass


@dataclass
class _Responses(asyncio.DatagramProtocol):
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


def status_of(message: bytes) -> int | None:
    match = re.match(rb"SIP/2\.0 (\d{3}) ", message)
    return int(match.group(1)) if match else None


def header(message: bytes, name: bytes) -> bytes | None:
    match = re.search(rb"^" + re.escape(name) + rb":\s*(.*?)\r$", message, re.M | re.I)
    return match.group(1) if match else None


class RawSipCall:
    """One call from ``"<display>" <sip:<user>@<local>>`` to ``sip:<dial>@<remote>``."""

    def __init__(self, remote: tuple[str, int], *, user: bytes, display: bytes, dial: str,
                 local_host: str = "127.0.0.1") -> None:
        self.remote = remote
        self.user = user
        self.display = display
        self.dial = dial.encode()
        self.local_host = local_host.encode()
        self.call_id = secrets.token_hex(8).encode()
        self.from_tag = secrets.token_hex(4).encode()
        self.to_header = b""
        self.final_status: int | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._responses = _Responses()
        self._rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._cseq = 1

    async def __aenter__(self) -> RawSipCall:
        self._rtp.bind((self.local_host.decode(), 0))
        self._rtp.setblocking(False)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self._responses, local_addr=(self.local_host.decode(), 0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(RawSipError, TimeoutError):
            if self.final_status == 200:
                await self.bye()
        if self._transport is not None:
            self._transport.close()
        self._rtp.close()

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[1]

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(data, self.remote)

    def _via(self) -> bytes:
        branch = b"z9hG4bK" + secrets.token_hex(6).encode()
        return b"Via: SIP/2.0/UDP %s:%d;branch=%s;rport\r\n" % (
            self.local_host, self.local_port, branch)

    def _from(self) -> bytes:
        return b'From: "%s" <sip:%s@%s:%d>;tag=%s\r\n' % (
            self.display, self.user, self.local_host, self.local_port, self.from_tag)

    def _request_uri(self) -> bytes:
        return b"sip:%s@%s:%d" % (self.dial, self.remote[0].encode(), self.remote[1])

    async def _next(self, within: float) -> bytes:
        try:
            return await asyncio.wait_for(self._responses.queue.get(), within)
        except TimeoutError:
            raise RawSipError(f"no SIP message from Asterisk within {within} s") from None

    async def invite(self, within: float = 10.0) -> int:
        """Send the INVITE; return the final status (ACKed). 200 means answered."""
        rtp_port = self._rtp.getsockname()[1]
        sdp = (b"v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
               b"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n") % (
                   self.local_host, self.local_host, rtp_port)
        via = self._via()
        request = (b"INVITE %s SIP/2.0\r\n" % self._request_uri() + via + self._from()
                   + b"To: <%s>\r\n" % self._request_uri()
                   + b"Call-ID: %s\r\nCSeq: %d INVITE\r\n" % (self.call_id, self._cseq)
                   + b"Contact: <sip:%s@%s:%d>\r\n" % (self.user, self.local_host,
                                                      self.local_port)
                   + b"Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
                   + b"Content-Length: %d\r\n\r\n" % len(sdp) + sdp)
        self._send(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self._next(max(0.1, deadline - loop.time()))
            status = status_of(message)
            if status is None or status < 200:
                continue
            self.to_header = header(message, b"To") or b""
            self.final_status = status
            self._ack(via, message)
            return status

    def _ack(self, via: bytes, response: bytes) -> None:
        contact = header(response, b"Contact") or b""
        target = re.search(rb"<([^>]+)>", contact)
        uri = target.group(1) if target and self.final_status == 200 else self._request_uri()
        self._send(b"ACK %s SIP/2.0\r\n" % uri
                   + (self._via() if self.final_status == 200 else via) + self._from()
                   + b"To: %s\r\nCall-ID: %s\r\nCSeq: %d ACK\r\n" % (
                       self.to_header, self.call_id, self._cseq)
                   + b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")

    async def bye(self, within: float = 5.0) -> int:
        self._cseq += 1
        self._send(b"BYE %s SIP/2.0\r\n" % self._request_uri() + self._via() + self._from()
                   + b"To: %s\r\nCall-ID: %s\r\nCSeq: %d BYE\r\n" % (
                       self.to_header, self.call_id, self._cseq)
                   + b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self._next(max(0.1, deadline - loop.time()))
            if b"CSeq: %d BYE" % self._cseq in message and status_of(message):
                self.final_status = None
                return status_of(message) or 0
