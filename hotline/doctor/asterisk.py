"""Asterisk as the hotline needs it: AMI answers and takes our login, the user may do what
the IVR does (and no more), AMI listens on loopback only, the modules the dialplan uses are
loaded, and Asterisk's clock agrees with ours."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from pathlib import Path

from hotline.asterisk import process
from hotline.asterisk.errors import AsteriskError
from hotline.asterisk.layout import Installation
from hotline.doctor.findings import Finding, fail, ok, warn
from hotline.settings import Settings
from ivr.ami.client import AmiClient, AmiError, AmiLoginError, AmiNotConnected

BANNER_TIMEOUT = 3.0
LOGIN_TIMEOUT = 8.0
REQUIRED_MODULES = ("chan_pjsip", "res_pjsip", "res_rtp_asterisk", "app_queue",
                    "app_audiosocket", "res_audiosocket", "app_mixmonitor", "app_userevent",
                    "pbx_config")
"""Loaded by the rendered modules.conf; a call cannot be served without any of them."""
NEEDED_ACTIONS = ("Originate", "Setvar", "Getvar", "Hangup", "Redirect", "QueueStatus",
                  "QueueAdd", "QueueRemove", "QueuePause", "QueuePenalty", "CoreShowChannels")
"""AMI actions the IVR and the CRM send (ivr/asterisk/)."""
TOO_MUCH = ("Command", "ModuleLoad", "UpdateConfig", "GetConfig", "Reload")
"""Actions the hotline never sends: a user who may send them holds write=command, system or
config, which would let a stolen secret reconfigure Asterisk."""
MODULE_HINTS = {"QueueStatus": "app_queue", "PJSIPShowEndpoints": "res_pjsip"}
"""Modules that register an AMI action: evidence when the Asterisk CLI is out of reach."""
BOOTED_WAIT_S = 3.0
CLOCK_WARN_S = 2.0
CLOCK_FAIL_S = 30.0


async def check_asterisk(settings: Settings) -> list[Finding]:
    findings = binding_findings(settings)
    where = f"{settings.ami.host}:{settings.ami.port}"
    try:
        await asyncio.to_thread(process.check_ami, settings, BANNER_TIMEOUT)
    except AsteriskError as exc:
        return [*findings, fail(
            "Asterisk reachable", str(exc),
            "start Asterisk (`systemctl start asterisk`, or `hotline asterisk up` for the "
            "built-in one), or set ami.host / ami.port to where its AMI listens")]
    ami = settings.ami.model_copy(update={"reconnect_min": 0.2, "reconnect_max": 1.0})
    client = AmiClient(ami, name="doctor")
    booted = asyncio.Event()
    client.subscribe("FullyBooted", lambda event: booted.set())
    await client.start()
    try:
        try:
            await client.wait_ready(LOGIN_TIMEOUT)
        except AmiLoginError as exc:
            return [*findings, fail(
                "AMI login", str(exc),
                f"make ami.secret (settings file, secrets file or HOTLINE_AMI__SECRET) the "
                f"secret of [{ami.username}] in Asterisk's manager.conf, or render "
                "manager.conf again: `hotline asterisk render DIR`"),
                *await module_findings(settings, None)]
        except AmiNotConnected as exc:
            return [*findings, fail(
                "Asterisk reachable", f"no AMI at {where}: {exc}",
                "start Asterisk (`systemctl start asterisk`, or `hotline asterisk up` for "
                "the built-in one), or set ami.host / ami.port to where its AMI listens")]
        findings.append(ok("AMI login", f"logged in at {where} as {ami.username}"))
        actions = await _permitted_actions(client)
        findings.append(privilege_finding(actions, ami.username))
        findings.append(await read_finding(booted, ami.username))
        findings += await module_findings(settings, actions)
        findings.append(await clock_finding(client))
    finally:
        await client.close()
    return findings


def binding_findings(settings: Settings) -> list[Finding]:
    """AMI on loopback, and the manager.conf of the Asterisk we installed permits only it."""
    host = settings.ami.host
    found: list[Finding] = []
    if _is_loopback(host):
        found.append(ok("AMI binding", f"ami.host {host} is loopback"))
    else:
        found.append(warn("AMI binding", f"ami.host {host} is not a loopback address: the AMI "
                          "secret crosses the network in clear text",
                          "run the hotline on the Asterisk host with ami.host = 127.0.0.1, or "
                          "keep AMI on a private network with permit= narrowed to this host"))
    manager = _manager_conf(settings)
    if manager is not None:
        found.append(manager_acl_finding(manager.read_text(encoding="utf-8", errors="replace"),
                                         settings.ami.username, manager))
    return found


def manager_acl_finding(text: str, username: str, path: Path) -> Finding:
    """bindaddr and the user's permit= lines of a manager.conf."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("[") and "]" in line:
            current = line[1:line.index("]")]
            sections.setdefault(current, [])
        elif "=" in line:
            key, _, value = line.partition("=")
            sections.setdefault(current, []).append((key.strip().strip(">"), value.strip()))
    general = dict(sections.get("general", []))
    problems = []
    bind = general.get("bindaddr", "0.0.0.0")
    if not _is_loopback(bind):
        problems.append(f"bindaddr = {bind}")
    permits = [v for k, v in sections.get(username, []) if k == "permit"]
    if username not in sections:
        problems.append(f"no [{username}] user")
    elif not permits or any(not _is_loopback(p.split("/")[0]) for p in permits):
        problems.append(f"[{username}] permit = {', '.join(permits) or '(any)'}")
    if problems:
        return warn("AMI ACL", f"{path}: {'; '.join(problems)}",
                    f"bindaddr = 127.0.0.1 and, under [{username}], deny = 0.0.0.0/0.0.0.0 "
                    "permit = 127.0.0.1/255.255.255.255 (as `hotline asterisk render` writes)")
    return ok("AMI ACL", f"{path}: bound to {bind}, [{username}] permitted from "
                         f"{', '.join(permits)} only")


def privilege_finding(actions: set[str] | None, username: str) -> Finding:
    if actions is None:
        return warn("AMI privileges", "ListCommands did not answer",
                    f"check [{username}] read=/write= in manager.conf")
    missing = [a for a in NEEDED_ACTIONS if a.lower() not in actions]
    extra = [a for a in TOO_MUCH if a.lower() in actions]
    if missing:
        return fail("AMI privileges", f"{username} may not send {', '.join(missing)}",
                    f"in manager.conf [{username}]: write = call,agent,originate,reporting; "
                    "read = system,call,agent,user,reporting")
    if extra:
        return warn("AMI privileges", f"{username} may also send {', '.join(extra)}, which "
                    "the hotline never needs",
                    f"narrow manager.conf [{username}] write= to call,agent,originate,"
                    "reporting (no command, system or config)")
    return ok("AMI privileges", f"{username} may send what the IVR needs, and no "
              "configuration or CLI commands")


async def read_finding(booted: asyncio.Event, username: str) -> Finding:
    """Asterisk sends FullyBooted at login only to users with read=system; without it the
    IVR's resynchronisation after an Asterisk restart waits a minute."""
    try:
        async with asyncio.timeout(BOOTED_WAIT_S):
            await booted.wait()
    except TimeoutError:
        return fail("AMI events", f"no FullyBooted event within {BOOTED_WAIT_S:g} s of login: "
                    f"{username} lacks read=system (or Asterisk is still starting)",
                    f"in manager.conf [{username}]: read = system,call,agent,user,reporting")
    return ok("AMI events", f"{username} receives system events (FullyBooted)")


async def module_findings(settings: Settings, actions: set[str] | None) -> list[Finding]:
    """Loaded modules from the Asterisk CLI; without it, what AMI's actions reveal."""
    try:
        listing = await asyncio.to_thread(process.cli, settings, "module show")
    except AsteriskError as exc:
        if actions is None:
            return [warn("Asterisk modules", f"cannot ask Asterisk: {exc}",
                         "run `hotline doctor` as a user that may use `asterisk -rx`")]
        missing = [m for action, m in MODULE_HINTS.items() if action.lower() not in actions]
        if missing:
            return [fail("Asterisk modules", f"not loaded (seen over AMI): {', '.join(missing)}",
                         f"load = {missing[0]}.so in modules.conf, then `asterisk -rx "
                         f"'module load {missing[0]}.so'`")]
        return [warn("Asterisk modules", f"app_queue and res_pjsip answer over AMI; the others "
                     f"({', '.join(REQUIRED_MODULES)}) could not be checked: {exc}",
                     "run `hotline doctor` as a user that may use `asterisk -rx`")]
    running = set(re.findall(r"^(\w+)\.so\s.*\bRunning\b", listing, re.MULTILINE))
    missing = [m for m in REQUIRED_MODULES if m not in running]
    if missing:
        return [fail("Asterisk modules", f"not running: {', '.join(missing)}",
                     "add load = <module>.so to modules.conf (as `hotline asterisk render` "
                     f"writes) and load it: asterisk -rx 'module load {missing[0]}.so'")]
    return [ok("Asterisk modules", f"{len(REQUIRED_MODULES)} required modules running "
               f"({', '.join(REQUIRED_MODULES)})")]


async def clock_finding(client: AmiClient) -> Finding:
    """Asterisk's time (its Ping answer's Timestamp) against ours: call times in the
    records come from both."""
    before = time.time()
    try:
        pong = await client.action("Ping")
    except AmiError as exc:
        return warn("clock", f"Ping failed: {exc}", "check AMI")
    after = time.time()
    stamp = pong.get("Timestamp")
    if stamp is None:
        return warn("clock", "Asterisk's Ping answer has no Timestamp", "")
    skew = float(stamp) - (before + after) / 2
    detail = f"Asterisk's clock is {skew:+.2f} s from ours (round trip {after - before:.3f} s)"
    fix = "synchronise both hosts' clocks (systemd-timesyncd or chrony: `timedatectl`)"
    if abs(skew) > CLOCK_FAIL_S:
        return fail("clock", detail, fix)
    if abs(skew) > CLOCK_WARN_S:
        return warn("clock", detail, fix)
    return ok("clock", detail)


async def _permitted_actions(client: AmiClient) -> set[str] | None:
    """Lower-cased names of the actions this AMI user may send (ListCommands lists only
    those its write= classes allow)."""
    try:
        response = await client.action("ListCommands")
    except AmiError:
        return None
    return {key.lower() for key in response.headers
            if key.lower() not in ("response", "actionid", "message")}


def _manager_conf(settings: Settings) -> Path | None:
    inst = Installation.load(settings.state_dir)
    if inst is None:
        return None
    path = inst.etc_dir / "manager.conf"
    return path if path.is_file() else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
