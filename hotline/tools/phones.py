"""SIPp phones that Asterisk calls: agent desk phones (registered, answering queue calls) and
residents' phones (dialled directly by return visits), for tests, benches and demos."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

from hotline.settings import Settings
from hotline.tools.sipp import (
    LOCAL_IP,
    HungUpBy,
    SippError,
    SippProcess,
    free_udp_port,
    key_steps,
    render_scenario,
    udp_bound,
    user_part,
)

log = logging.getLogger(__name__)


class RegistrationRefused(SippError):
    """Asterisk answered a phone's REGISTER with a refusal (``status``: 401, 403...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def phone_password(settings: Settings, extension: str) -> str:
    """The SIP password of an agent phone (each has its own) or of the softphone."""
    asterisk = settings.asterisk
    if extension == asterisk.softphone_user:
        return asterisk.softphone_password
    password = asterisk.agent_passwords.get(extension)
    if not password:
        raise SippError(
            f"no SIP password for extension {extension}: it is not in "
            "asterisk.agent_extensions, or settings were not loaded with load_settings()"
        )
    return password


def at_phones_port(settings: Settings) -> Settings:
    """Settings whose SIP address is a cluster's SIP edge's phones' port (``[edge]
    phone_port``): where agents' phones register; the edge sends them to the queue node, or
    its standby when it is down."""
    asterisk = settings.asterisk.model_copy(
        update={"bind_host": settings.edge.address, "sip_port": settings.edge.phone_port})
    return settings.model_copy(update={"asterisk": asterisk})


class AgentPhone:
    """An agent desk phone: registers ``extension`` with digest auth, answers one call.

    The password is the extension's own (``asterisk.agent_passwords``; the softphone's for
    ``softphone_user``) unless ``password`` is given. A refused registration raises
    RegistrationRefused with Asterisk's status code.

    Usage::

        async with AgentPhone(settings, "2001") as phone:   # returns once registered
            ...                                             # put PJSIP/2001 in the queue
            call_id = await phone.wait_answered(10)  # seconds
    """

    def __init__(
        self,
        settings: Settings,
        extension: str,
        *,
        password: str | None = None,
        ring_ms: int = 0,
        hold_ms: int = 120_000,
        register_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.extension = user_part(extension, "extension")
        self.password = password if password is not None else phone_password(settings, extension)
        self.ring_ms = ring_ms
        self.hold_ms = hold_ms
        self.register_timeout = register_timeout
        self.port = 0
        self.granted = 0
        """Seconds the registrar granted the last registration (its Contact's expires)."""
        self._registrations = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._uas: SippProcess | None = None

    @property
    def workdir(self) -> Path:
        assert self._tmp is not None, "AgentPhone is not started"
        return Path(self._tmp.name)

    async def __aenter__(self) -> AgentPhone:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"hotline-agent-{self.extension}-")
        try:
            await self._start_phone()
            await self.refresh()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._uas is not None:
                await self._uas.stop()
            with contextlib.suppress(SippError, TimeoutError):
                await self._register(expires=0, contact="*")
        finally:
            await self._close()

    async def _start_phone(self) -> None:
        self.port = free_udp_port()
        scenario = render_scenario(
            "agent_phone.xml", self.workdir, user=self.extension,
            ring_ms=max(1, self.ring_ms), hold_ms=max(1, self.hold_ms),
        )
        # No call limit: every OPTIONS probe (Asterisk qualifies agent phones) is a SIPp call
        # of its own; the phone runs until it is stopped.
        args = ["-sf", str(scenario), "-i", LOCAL_IP, "-p", str(self.port),
                "-mp", str(free_udp_port(4))]
        self._uas = await SippProcess.start("phone", self.workdir, args)
        await self._wait_listening()

    async def _wait_listening(self) -> None:
        """Wait until the answering SIPp has bound its port (it logs nothing before a call)."""
        async def bound() -> None:
            while not udp_bound(self.port):
                if self._uas is None or self._uas.returncode is not None:
                    raise SippError(f"agent phone sipp exited: {self._uas and self._uas.output()}")
                await asyncio.sleep(0.01)
        await asyncio.wait_for(bound(), self.register_timeout)

    async def refresh(self) -> None:
        """Register (again), as a phone does before its registration expires: asks for an
        hour, and learns what the registrar granted (``granted``)."""
        contact = f"<sip:{self.extension}@{LOCAL_IP}:{self.port}>"
        await self._register(expires=3600, contact=contact)

    async def _register(self, *, expires: int, contact: str) -> None:
        self._registrations += 1
        name = f"register-{self._registrations}-{expires}"
        scenario = render_scenario(
            "agent_register.xml", self.workdir, user=self.extension, contact=contact,
            expires=expires,
        )
        scenario = scenario.rename(self.workdir / f"{name}.xml")
        args = [
            f"{self.settings.asterisk.bind_host}:{self.settings.asterisk.sip_port}",
            "-sf", str(scenario), "-i", LOCAL_IP, "-p", str(free_udp_port()),
            "-m", "1", "-au", self.extension, "-ap", self.password,
        ]
        proc = await SippProcess.start(name, self.workdir, args)
        try:
            code = await proc.wait(self.register_timeout)
        finally:
            await proc.stop()
        refused = proc.event("refused")
        if refused is not None:
            status = int(refused.split()[1])
            raise RegistrationRefused(
                f"agent phone {self.extension} could not register: Asterisk answered {status}",
                status,
            )
        if code != 0 or proc.event("registered") is None:
            raise SippError(
                f"agent phone {self.extension} could not register (sipp exit {code}): "
                f"{proc.errors() or proc.output()[1]}"
            )
        granted = (proc.event("granted") or "").partition("expires=")[2]
        self.granted = int(granted) if granted.isdigit() else 0

    async def wait_answered(self, within: float) -> str:
        """Wait until this phone has answered a call; return the SIP Call-ID."""
        return self._call_id(await self._phone().wait_event("answered", within=within))

    async def wait_hangup(self, within: float) -> HungUpBy:
        """Wait until the answered call ends; return who hung up."""
        event = await self._phone().wait_event("remote_bye", "local_bye", within=within)
        return "remote" if event == "remote_bye" else "local"

    async def crash(self) -> None:
        """Kill the phone without un-registering, as a crashed or unplugged phone goes: its
        registration stays, and it answers nothing any more (not even OPTIONS probes)."""
        await self._phone().stop()

    def _phone(self) -> SippProcess:
        if self._uas is None:
            raise SippError("AgentPhone is not started")
        return self._uas

    @staticmethod
    def _call_id(event: str) -> str:
        return event.split(" ", 1)[1] if " " in event else ""

    async def _close(self) -> None:
        if self._uas is not None:
            await self._uas.stop()
            self._uas = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --- residents' phones (return visits) -------------------------------------------------

ResidentMode = Literal["answer", "busy", "no_answer"]


class ResidentPhone:
    """A resident's phone for outbound calls: a SIPp UAS on its own port that Asterisk dials
    directly (``dial_string``), no registration. ``answer`` picks up after ``ring_ms`` and
    sends ``keys`` (',' pauses a second) after ``pause_before_keys_ms``; ``busy`` answers
    486; ``no_answer`` rings until Asterisk gives up.

    Usage::

        async with ResidentPhone(settings, mode="answer", keys="4,,4") as phone:
            settings.survey.dial = phone.dial_string
            ...
            await phone.wait_event("answered", within=10)
    """

    def __init__(self, settings: Settings, *, mode: ResidentMode = "answer", keys: str = "",
                 pause_before_keys_ms: int = 1000, ring_ms: int = 200,
                 hold_ms: int = 60_000, port: int = 0) -> None:
        """``port``: the UDP port to answer on (0: a free one, chosen at start)."""
        self.settings = settings
        self.mode = mode
        self.keys = keys
        self.pause_before_keys_ms = pause_before_keys_ms
        self.ring_ms = ring_ms if mode != "no_answer" else 600_000
        self.hold_ms = hold_ms
        self.port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._uas: SippProcess | None = None

    @property
    def dial_string(self) -> str:
        """The Asterisk dial string that reaches this phone, for any ``{number}``."""
        return f"PJSIP/pstn-gateway/sip:{{number}}@{LOCAL_IP}:{self.port}"

    async def __aenter__(self) -> ResidentPhone:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"hotline-resident-{self.mode}-")
        workdir = Path(self._tmp.name)
        try:
            self.port = self.port or free_udp_port()
            scenario = render_scenario(
                "resident_phone.xml", workdir, mode=self.mode,
                steps=key_steps(self.keys, self.pause_before_keys_ms, workdir),
                ring_ms=max(1, self.ring_ms), hold_ms=max(1, self.hold_ms))
            args = ["-sf", str(scenario), "-i", LOCAL_IP, "-p", str(self.port),
                    "-mp", str(free_udp_port(4)), "-m", "1"]
            self._uas = await SippProcess.start("resident", workdir, args)

            async def bound() -> None:
                while not udp_bound(self.port):
                    if self._uas is None or self._uas.returncode is not None:
                        raise SippError("resident phone sipp exited: "
                                        f"{self._uas and self._uas.output()}")
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(bound(), 10)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def wait_event(self, *prefixes: str, within: float) -> str:
        """Wait for a ``<log>`` line: ringing, answered, remote_bye, local_bye, busy,
        cancelled."""
        if self._uas is None:
            raise SippError("ResidentPhone is not started")
        return await self._uas.wait_event(*prefixes, within=within)

    async def _close(self) -> None:
        if self._uas is not None:
            await self._uas.stop()
            self._uas = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
