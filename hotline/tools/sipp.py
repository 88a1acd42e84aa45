"""Drive SIPp from asyncio: hotline callers and single SIP requests, for tests and demos
(the phones that answer are in hotline.tools.phones).

Scenarios live in ``hotline/tools/sipp_scenarios/*.xml`` as jinja2 templates; each run renders
its own copy into a temporary directory. SIPp reports progress through ``<log>`` actions
written to a FIFO that we read as lines arrive, so callers wait on events, never on sleeps.
Every SIPp process is bounded by a timeout and killed when its owner is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jinja2

from hotline.assets import SIPP_SCENARIOS, asset_dir
from hotline.settings import Settings

log = logging.getLogger(__name__)

PCAP_DIR = Path("/usr/share/sip-tester")
KEY_PCAPS = {
    **{digit: f"dtmf_2833_{digit}.pcap" for digit in "0123456789"},
    "*": "dtmf_2833_star.pcap",
    "#": "dtmf_2833_pound.pcap",
}
KEY_GAP_MS = 250
"""Time between two keys; each RFC 2833 pcap lasts 140 ms."""
KEY_PAUSE_MS = 1000
"""A ',' in keys waits this much longer before the next key, as in a dial string."""
LOCAL_IP = "127.0.0.1"
STOP_GRACE = 2.0
_USER_PART = re.compile(r"^[0-9A-Za-z+*#._-]+$")
_HANDED_OUT: set[int] = set()

HungUpBy = Literal["local", "remote"]


class SippError(Exception):
    """SIPp could not be run, or a phone could not register."""


@dataclass
class CallResult:
    exit_code: int | None
    """SIPp's exit code (0: the scenario completed), None if we had to kill it."""
    call_id: str | None
    answered: bool
    hung_up_by: HungUpBy | None
    """"remote" if Asterisk sent BYE, "local" if the SIPp side hung up."""
    timed_out: bool
    events: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# --- ports and scenarios ---------------------------------------------------------------


def free_udp_port(count: int = 1, host: str = LOCAL_IP) -> int:
    """A free UDP port on ``host`` (even, with ``count`` free ports from it) not handed out
    yet."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1] & ~1
        ports = range(base, base + count)
        if not _HANDED_OUT.intersection(ports) and all(_udp_free(p, host) for p in ports):
            _HANDED_OUT.update(ports)
            return base
    raise SippError(f"no free UDP port found on {host}")


def _udp_free(port: int, host: str = LOCAL_IP) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def udp_bound(port: int) -> bool:
    """True if some socket is bound to UDP ``port`` (read from /proc, no side effects)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def render_scenario(name: str, dest_dir: Path, **context: object) -> Path:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(asset_dir(SIPP_SCENARIOS)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    path = dest_dir / name
    path.write_text(env.get_template(name).render(context), encoding="utf-8")
    return path


def user_part(value: str, what: str) -> str:
    if not _USER_PART.match(value):
        raise SippError(f"{what} {value!r} is not a valid SIP user part")
    return value


def _display_name(name: str) -> str:
    """The name as a quoted-string body: drop what would break the header or the XML."""
    return re.sub(r'["\\<>\r\n]', "", name).replace("]]>", "")


def key_steps(keys: str, pause_before_keys_ms: int,
               workdir: Path) -> list[dict[str, object]]:
    """One step per key: wait, then play its RFC 2833 capture. Each ',' adds KEY_PAUSE_MS
    before the next key (e.g. "12,,,,4": 1 and 2, then 4 four seconds later)."""
    steps: list[dict[str, object]] = []
    pause = 0
    for key in keys:
        if key == ",":
            pause += KEY_PAUSE_MS
            continue
        if key not in KEY_PCAPS:
            raise SippError(f"key {key!r} cannot be sent; use 0-9, * or # (',' pauses)")
        wait = (pause_before_keys_ms if not steps else KEY_GAP_MS) + pause
        pcap = _renumbered_pcap(PCAP_DIR / KEY_PCAPS[key], len(steps), workdir)
        steps.append({"wait_ms": max(1, wait), "pcap": str(pcap)})
        pause = 0
    return steps


def _steps_ms(steps: list[dict[str, object]]) -> int:
    return sum(int(step["wait_ms"]) for step in steps)  # type: ignore[call-overload]


def _renumbered_pcap(source: Path, index: int, workdir: Path) -> Path:
    """A copy of a key's RFC 2833 capture renumbered as the ``index``-th press of one call.

    The captures shipped with SIPp carry unrelated RTP sequence numbers and timestamps (the
    '1' capture's are lower than the '6' capture's), and SIPp replays them as they are:
    Asterisk drops a press whose sequence numbers go backwards as a late packet ("6112"
    arrived as "6"). Renumbering makes each press follow the previous one.
    """
    data = bytearray(source.read_bytes())
    offset = 24  # pcap global header
    packet = 0
    while offset + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        rtp = offset + 16 + 42  # Ethernet 14 + IPv4 20 + UDP 8
        struct.pack_into(">HI", data, rtp + 2, 1000 + 32 * index + packet,
                         160_000 + 8000 * index)
        offset += 16 + caplen
        packet += 1
    target = workdir / f"key{index:03d}-{source.name}"
    target.write_bytes(bytes(data))
    return target


def _absolute(path: Path) -> Path:
    return path.resolve()  # SIPp runs in its work directory: hand it absolute paths


async def _ulaw_audio(audio: Path, workdir: Path) -> Path:
    """Raw 8 kHz mono u-law for SIPp's rtp_stream (converting a wav with sox)."""
    if audio.suffix.lower() in (".ulaw", ".ul", ".pcmu", ".raw"):
        return _absolute(audio)
    out = workdir / (audio.stem + ".ulaw")
    proc = await asyncio.create_subprocess_exec(
        "sox", str(_absolute(audio)), "-t", "ul", "-r", "8000", "-c", "1", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise SippError(f"sox could not convert {audio}: {err.decode(errors='replace')}")
    return out


# --- one SIPp process ------------------------------------------------------------------


class SippProcess:
    """A running sipp whose ``<log>`` lines arrive through a FIFO as they are written."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.events: list[str] = []
        self._changed = asyncio.Condition()
        self._proc: asyncio.subprocess.Process | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._exit_task: asyncio.Task[int] | None = None
        self._writer_fd: int | None = None

    @classmethod
    async def start(cls, name: str, workdir: Path, args: list[str]) -> SippProcess:
        self = cls(name, workdir)
        fifo = workdir / f"{name}.events"
        await self._open_events(fifo)
        argv = ["sipp", *args, "-nostdin", "-trace_logs", "-log_file", str(fifo),
                "-trace_err", "-error_file", str(workdir / f"{name}.errors")]
        log.debug("starting %s", " ".join(argv))
        try:
            with (workdir / f"{name}.out").open("wb") as out, \
                    (workdir / f"{name}.err").open("wb") as err:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
                    cwd=workdir,
                )
        except FileNotFoundError:
            await self._close_events()
            raise SippError("sipp is not installed: apt-get install sip-tester") from None
        self._exit_task = asyncio.create_task(self._watch_exit(self._proc))
        return self

    async def _open_events(self, fifo: Path) -> None:
        os.mkfifo(fifo)
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO from reporting EOF before SIPp opens it; we close
        # it once SIPp has exited, so the reader then drains every line and sees EOF.
        self._writer_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        self._reader_task = asyncio.create_task(self._read_events(reader))

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            async with self._changed:
                self.events.append(line.decode("utf-8", "replace").strip())
                self._changed.notify_all()

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        self._release_writer()
        if self._reader_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader_task), STOP_GRACE)
        async with self._changed:
            self._changed.notify_all()
        return code

    def _release_writer(self) -> None:
        if self._writer_fd is not None:
            os.close(self._writer_fd)
            self._writer_fd = None

    def event(self, prefix: str) -> str | None:
        return next((e for e in self.events if e.split(" ", 1)[0] == prefix), None)

    @property
    def exited(self) -> bool:
        return self._exit_task is not None and self._exit_task.done()

    async def wait_event(self, *prefixes: str, within: float) -> str:
        """Wait for the first ``<log>`` line starting with one of ``prefixes``."""
        async def found() -> str:
            async with self._changed:
                while True:
                    for prefix in prefixes:
                        if (hit := self.event(prefix)) is not None:
                            return hit
                    if self.exited:
                        raise SippError(
                            f"sipp {self.name} exited ({self.returncode}) before "
                            f"{'/'.join(prefixes)}: {self.errors()}"
                        )
                    await self._changed.wait()
        return await asyncio.wait_for(found(), within)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def wait(self, within: float) -> int:
        """SIPp's exit code once it exits and its last events are read."""
        assert self._exit_task is not None
        return await asyncio.wait_for(asyncio.shield(self._exit_task), within)

    async def stop(self) -> None:
        """Kill SIPp if it still runs and release the event pipe. Safe to call twice."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self._exit_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exit_task), STOP_GRACE)
        await self._close_events()

    async def _close_events(self) -> None:
        self._release_writer()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def output(self) -> tuple[str, str]:
        out = _read_text(self.workdir / f"{self.name}.out")
        err = _read_text(self.workdir / f"{self.name}.err") + self.errors()
        return out, err

    def errors(self) -> str:
        return _read_text(self.workdir / f"{self.name}.errors")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- callers ---------------------------------------------------------------------------


async def place_call(
    settings: Settings,
    *,
    caller_number: str,
    caller_name: str = "",
    dial: str | None = None,
    audio: Path | None = None,
    keys: str = "",
    pause_before_keys_ms: int = 500,
    hold_ms: int = 3000,
    wait_for_bye: bool = False,
    local_port: int | None = None,
    answer_timeout_ms: int = 10_000,
    auth_password: str | None = None,
    max_seconds: float | None = None,
    local_ip: str = LOCAL_IP,
    headers: tuple[str, ...] = (),
    telephone_event: bool = True,
    codecs: tuple[Literal["PCMU", "PCMA"], ...] = ("PCMU",),
) -> CallResult:
    """Call the hotline (or ``dial``) from SIPp as ``caller_name <caller_number>``.

    Streams ``audio`` (8 kHz wav or raw u-law) from the answer on, sends ``keys`` as
    RFC 2833 events after ``pause_before_keys_ms`` (a ',' in ``keys`` pauses a second),
    then hangs up after ``hold_ms`` -- or,
    with ``wait_for_bye``, waits up to ``hold_ms`` for the remote side to hang up.
    ``auth_password`` makes the caller a registered phone (e.g. the softphone) that answers
    Asterisk's digest challenge as ``caller_number``. SIPp is killed on timeout or cancel.
    ``local_ip`` is the loopback address the call comes from (a carrier trunk's), ``headers``
    extra INVITE header lines (``P-Asserted-Identity: <sip:...>``), and without
    ``telephone_event`` the offer has no RFC 4733: keys then travel only as tones in
    ``audio`` (hotline.tools.dtmf_tones). ``codecs`` is the offer, in order of preference
    (the audio is always sent as PCMU).
    """
    dial = user_part(dial or settings.asterisk.hotline_number, "dial")
    if any(not _HEADER_VALUE.match(line) or "]]>" in line for line in headers):
        raise SippError(f"headers {headers!r} must be single lines")
    with tempfile.TemporaryDirectory(prefix="hotline-sipp-") as tmp:
        workdir = Path(tmp)
        steps = key_steps(keys, pause_before_keys_ms, workdir)
        scenario = render_scenario(
            "caller_until_bye.xml" if wait_for_bye else "caller.xml",
            workdir,
            caller_number=user_part(caller_number, "caller_number"),
            caller_name=_display_name(caller_name),
            audio=str(await _ulaw_audio(audio, workdir)) if audio else None,
            steps=steps,
            hold_ms=max(1, hold_ms),
            answer_timeout_ms=max(1, answer_timeout_ms),
            authenticate=auth_password is not None,
            headers=list(headers),
            telephone_event=telephone_event,
            codecs=list(codecs),
        )
        total_ms = answer_timeout_ms + pause_before_keys_ms + _steps_ms(steps) + hold_ms
        bound = max_seconds if max_seconds is not None else total_ms / 1000 + 5
        remote = (settings.asterisk.bind_host, settings.asterisk.sip_port)
        port = local_port or free_udp_port(host=local_ip)
        args = [
            f"{remote[0]}:{remote[1]}", "-sf", str(scenario), "-s", dial, "-i", local_ip,
            "-p", str(port), "-mp", str(free_udp_port(4, host=local_ip)), "-m", "1", "-l", "1",
        ]
        if auth_password is not None:
            args += ["-au", caller_number, "-ap", auth_password]
        dialog = _Dialog(local_port=port, caller_number=caller_number, dial=dial,
                         local_ip=local_ip)
        return await _run_call(workdir, args, bound, dialog, remote)


@dataclass(frozen=True)
class _Dialog:
    """What the caller needs to send BYE itself: logged by the scenario once answered."""

    local_port: int
    caller_number: str
    dial: str
    local_ip: str = LOCAL_IP
    call_id: str = ""
    from_tag: str = ""
    remote_target: str = ""
    to_tag: str = ""

    def with_log(self, line: str | None) -> _Dialog:
        fields = (line or "").split()
        if len(fields) < 5 or not fields[4].startswith(";tag="):
            return self
        return _Dialog(self.local_port, self.caller_number, self.dial, self.local_ip,
                       fields[1], fields[2], fields[3].strip("<>"),
                       fields[4].removeprefix(";tag="))

    def bye(self, remote: tuple[str, int]) -> bytes:
        local = f"{self.local_ip}:{self.local_port}"
        lines = [
            f"BYE {self.remote_target} SIP/2.0",
            f"Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-hotline-{os.urandom(6).hex()}",
            f"From: <sip:{self.caller_number}@{local}>;tag={self.from_tag}",
            f"To: <sip:{self.dial}@{remote[0]}:{remote[1]}>;tag={self.to_tag}",
            f"Call-ID: {self.call_id}",
            "CSeq: 99 BYE",
            "Max-Forwards: 70",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _send_bye(dialog: _Dialog, remote: tuple[str, int]) -> None:
    """Hang up a call whose SIPp we killed, so Asterisk does not keep an orphan channel."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((dialog.local_ip, dialog.local_port))
            sock.sendto(dialog.bye(remote), remote)
        except OSError as exc:
            log.warning("could not send BYE for %s: %s", dialog.call_id, exc)


async def _run_call(
    workdir: Path, args: list[str], bound: float, dialog: _Dialog, remote: tuple[str, int]
) -> CallResult:
    proc = await SippProcess.start("caller", workdir, args)
    code: int | None = None
    try:
        code = await proc.wait(bound)
    except TimeoutError:
        log.warning("sipp caller still running after %.1f s; killing it", bound)
    finally:
        await proc.stop()
        if proc.event("answered") and not (proc.event("remote_bye") or proc.event("local_bye")):
            _send_bye(dialog.with_log(proc.event("dialog")), remote)
    return _call_result(proc, code)


def _call_result(proc: SippProcess, code: int | None) -> CallResult:
    answered = proc.event("answered")
    hung_up: HungUpBy | None = None
    if proc.event("remote_bye"):
        hung_up = "remote"
    elif proc.event("local_bye"):
        hung_up = "local"
    out, err = proc.output()
    return CallResult(
        exit_code=code,
        call_id=answered.split(" ", 1)[1] if answered and " " in answered else None,
        answered=answered is not None,
        hung_up_by=hung_up,
        timed_out=code is None,
        events=list(proc.events),
        stdout=out,
        stderr=err,
    )


# --- single requests: probing the SIP edge ---------------------------------------------

SipMethod = Literal["INVITE", "REGISTER"]
_HEADER_VALUE = re.compile(r"^[^\r\n]*$")


@dataclass
class SipAnswer:
    """How Asterisk answered one request sent by ``send_request``."""

    status: int | None
    """The final status code (200, 401, 403...); None if none came in time."""
    challenged: bool
    """A 401/407 challenge came first and was answered with the credentials given."""
    events: list[str] = field(default_factory=list)
    stderr: str = ""


async def send_request(
    settings: Settings,
    method: SipMethod,
    *,
    from_user: str,
    to_user: str | None = None,
    local_ip: str = LOCAL_IP,
    contact: str | None = None,
    credentials: tuple[str, str] | None = None,
    expires: int = 60,
    within: float = 10.0,
) -> SipAnswer:
    """Send one INVITE or REGISTER from SIPp bound to ``local_ip`` (any 127.x address) and
    report Asterisk's final answer: what a SIP client sees at the hotline's edge.

    ``from_user`` is the user part of From (a caller's number, a phone's name, or a name it
    merely claims); ``to_user`` the dialled number (INVITE; default the hotline number) or the
    AOR (REGISTER; default ``from_user``). ``contact`` is the Contact header (default the
    sender's own address). With ``credentials`` (user, password) a digest challenge is
    answered once. An INVITE that is answered is acknowledged and hung up at once.
    """
    if method not in ("INVITE", "REGISTER"):
        raise SippError(f"send_request sends INVITE or REGISTER, not {method!r}")
    from_user = user_part(from_user, "from_user")
    default_to = settings.asterisk.hotline_number if method == "INVITE" else from_user
    to_user = user_part(to_user or default_to, "to_user")
    contact = contact or f"<sip:{from_user}@[local_ip]:[local_port]>"
    if not _HEADER_VALUE.match(contact) or "]]>" in contact:
        raise SippError(f"contact {contact!r} cannot be sent as one header line")
    with tempfile.TemporaryDirectory(prefix="hotline-sipp-request-") as tmp:
        workdir = Path(tmp)
        scenario = render_scenario(
            "sip_request.xml", workdir, method=method, from_user=from_user, to_user=to_user,
            contact=contact, expires=max(0, expires), authenticate=credentials is not None,
        )
        args = [
            f"{settings.asterisk.bind_host}:{settings.asterisk.sip_port}", "-sf", str(scenario),
            "-i", local_ip, "-p", str(free_udp_port(host=local_ip)), "-m", "1",
        ]
        if method == "INVITE":
            args += ["-mp", str(free_udp_port(4, host=local_ip))]
        if credentials is not None:
            args += ["-au", credentials[0], "-ap", credentials[1]]
        proc = await SippProcess.start("request", workdir, args)
        try:
            await proc.wait(within)
        except TimeoutError:
            log.warning("no final answer to %s from %s within %.1f s", method, local_ip, within)
        finally:
            await proc.stop()
        final = proc.event("final")
        return SipAnswer(
            status=int(final.split()[1]) if final else None,
            challenged=proc.event("challenged") is not None,
            events=list(proc.events),
            stderr=proc.output()[1],
        )
