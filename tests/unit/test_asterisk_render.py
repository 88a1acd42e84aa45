"""Rendering the Asterisk configuration (and the pure helpers around it), without Asterisk."""

from __future__ import annotations

import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hotline.assets import ASTERISK_CONFIG, DIALPLANS, asset_dir
from hotline.asterisk import process, rootfs
from hotline.asterisk.errors import (
    ArchiveUnreachableError,
    MissingToolError,
    NotRootError,
    RootBuildError,
)
from hotline.asterisk.layout import resolve_in_root
from hotline.asterisk.render import (
    ConfigRenderError,
    install_config,
    render_config,
)
from hotline.settings import Settings
from hotline.tools.sipp import key_steps, render_scenario

SECRET = "s3cr3t-AMI-value"
SOFTPHONE_PASSWORD = "soft-phone-pw-123"
AGENT_PASSWORDS = {"3001": "agent-3001-pw", "3002": "agent-3002-pw"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        asterisk={
            "sip_port": 5070, "rtp_start": 12000, "rtp_end": 12019,
            "hotline_number": "96110", "queue_name": "front-desk",
            "softphone_password": SOFTPHONE_PASSWORD, "agent_passwords": AGENT_PASSWORDS,
            "agent_extensions": ["3001", "3002"],
        },
        ami={"port": 5039, "username": "hotline-svc", "secret": SECRET},
        audiosocket={"port": 9999},
    )


@pytest.fixture
def config(settings: Settings) -> dict[str, str]:
    return render_config(settings)


def section(text: str, name: str) -> str:
    """The body of the first ``[name]`` section (up to the next section)."""
    match = re.search(rf"^\[{re.escape(name)}\][^\n]*\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert match, f"no [{name}] section"
    return match.group(1)


def test_renders_every_config_asterisk_needs(config: dict[str, str]) -> None:
    needed = {"asterisk.conf", "modules.conf", "logger.conf", "pjsip.conf", "manager.conf",
              "queues.conf", "rtp.conf", "extensions.conf", "hotline.conf"}
    assert needed <= config.keys()
    assert "#include hotline.conf" in config["extensions.conf"]


def test_sip_rtp_and_ami_use_the_configured_ports_on_loopback(config: dict[str, str]) -> None:
    transport = section(config["pjsip.conf"], "transport-udp")
    assert "bind = 127.0.0.1:5070" in transport
    assert re.search(r"^media_address = 127\.0\.0\.1$", config["pjsip.conf"], re.M)
    assert "rtpstart = 12000" in config["rtp.conf"]
    assert "rtpend = 12019" in config["rtp.conf"]
    general = section(config["manager.conf"], "general")
    assert "bindaddr = 127.0.0.1" in general
    assert "port = 5039" in general
    binds = re.findall(r"^(?:bind|bindaddr|media_address)\s*=\s*(\S+)", "".join(config.values()),
                       re.M)
    assert binds and all(b.startswith("127.0.0.1") for b in binds)


def test_ami_user_is_loopback_only_with_least_privilege(config: dict[str, str]) -> None:
    user = section(config["manager.conf"], "hotline-svc")
    assert f"secret = {SECRET}" in user
    assert re.findall(r"^(deny|permit) = (\S+)", user, re.M) == [
        ("deny", "0.0.0.0/0.0.0.0"), ("permit", "127.0.0.1/255.255.255.255"),
    ]
    assert "read = system,call,agent,user,reporting" in user
    assert "write = call,agent,originate,reporting" in user
    assert "channelvars = CALL_ID,IVR_ROUTE" in config["manager.conf"]


def test_pjsip_identifies_phones_by_user_and_the_gateway_by_address_only(
    config: dict[str, str],
) -> None:
    pjsip = config["pjsip.conf"]
    assert "endpoint_identifier_order = username,ip" in pjsip
    assert re.findall(r"^match = (\S+)$", section(pjsip, "pstn-gateway-identify"), re.M) == [
        "127.0.0.1"]
    gateway = section(pjsip, "pstn-gateway")
    assert "context = hotline-inbound" in gateway
    # Its name in From identifies nothing: only its source address does.
    assert "identify_by = ip" in gateway
    assert "acl = hotline-gateway" in gateway
    assert not re.search(r"^(auth|aors)\s*=", gateway, re.M)  # never registers
    phone = section(pjsip, "endpoint-phone")
    assert "identify_by = username" in phone
    assert "acl = hotline-phones" in phone
    assert "contact_acl = hotline-phone-contacts" in phone
    assert "context = hotline-internal" in phone
    for user, password in (("1001", SOFTPHONE_PASSWORD), ("3001", AGENT_PASSWORDS["3001"]),
                           ("3002", AGENT_PASSWORDS["3002"])):
        assert re.search(rf"^\[{user}\]\(endpoint-phone\)$", pjsip, re.M)
        assert f"password = {password}" in section(pjsip, f"{user}-auth")
    assert "max_contacts = 1" in section(pjsip, "aor-phone")
    assert "remove_existing = yes" in section(pjsip, "aor-phone")
    assert "allow = ulaw,alaw" in pjsip and "direct_media = no" in pjsip


def test_dialplan_routes_the_hotline_number_through_the_ivr_to_the_queue(
    config: dict[str, str],
) -> None:
    inbound = section(config["hotline.conf"], "hotline-inbound")
    assert inbound.startswith("exten => 96110,1,")
    assert "Set(__CALL_ID=${UUID()})" in inbound
    assert "Set(CHANNEL(hangup_handler_push)=hotline-call-end,s,1)" in inbound
    assert "UserEvent(HotlineCallStart,CallId: ${CALL_ID})" in inbound
    assert "TryExec(AudioSocket(${CALL_ID},127.0.0.1:9999))" in inbound
    assert 'ExecIf($["${IVR_ROUTE}" = ""]?Set(IVR_ROUTE=fallback))' in inbound
    # The IVR names the caller's language queue; empty or unknown is the main queue.
    assert 'ExecIf($["${HOTLINE_QUEUE}" = ""]?Set(HOTLINE_QUEUE=front-desk))' in inbound
    assert "ExecIf($[${QUEUE_EXISTS(${HOTLINE_QUEUE})} = 0]?Set(HOTLINE_QUEUE=front-desk))" \
        in inbound
    assert ("Queue(${HOTLINE_QUEUE},c,,,120,,,hotline-language,"
            "${FILTER(0123456789,${REQUEUE_POSITION})})") in inbound
    assert inbound.index("Set(QUEUE_MAX_PENALTY=0)") < inbound.index("Queue(${HOTLINE_QUEUE}")
    assert re.search(r"^exten => 96110,1,Goto\(hotline-inbound", config["hotline.conf"], re.M)
    ends = section(config["hotline.conf"], "hotline-call-end")
    assert "UserEvent(HotlineCallEnd,CallId: ${CALL_ID},Route: ${IVR_ROUTE}" in ends
    internal = section(config["hotline.conf"], "hotline-internal")
    assert "exten => 3002,1,Dial(PJSIP/3002,30)" in internal


def test_dialplan_surveys_callers_an_agent_talked_to_and_return_visits(
    config: dict[str, str],
) -> None:
    inbound = section(config["hotline.conf"], "hotline-inbound")
    # Surveyed when an agent answered (or, in a cluster, the queue node said the agent
    # hung up first: AGENT_DONE).
    assert 'GotoIf($["${MEMBERINTERFACE}" = "" & "${AGENT_DONE}" = ""]?done)' in inbound
    assert inbound.index("Queue(${HOTLINE_QUEUE},c,,,120") < inbound.index(
        "Gosub(hotline-survey,s,1(after_call))")
    survey = section(config["hotline.conf"], "hotline-survey")
    assert "Set(IVR_STAGE=survey)" in survey
    assert "UserEvent(HotlineSurveyStart,SurveyCallId: ${SURVEY_ID},Kind: ${ARG1}," in survey
    assert "Member: ${MEMBERINTERFACE}" in survey
    assert "TryExec(AudioSocket(${SURVEY_ID},127.0.0.1:9999))" in survey
    visit = section(config["hotline.conf"], "hotline-return-visit")
    assert "Gosub(hotline-survey,s,1(return_visit))" in visit


def test_queue_has_no_static_members(config: dict[str, str]) -> None:
    assert re.search(r"^\[front-desk\]\(hotline-queue\)$", config["queues.conf"], re.M)
    queue = section(config["queues.conf"], "hotline-queue")
    assert "strategy = ringall" in queue
    assert not re.search(r"^member\s*=", queue, re.M)
    assert "persistentmembers = no" in config["queues.conf"]
    # Callbacks assigned to one agent: a queue of its own where every entry can be served
    # at once (not ringall: that serves the head entry alone).
    assert re.search(r"^\[front-desk-assigned\]\(hotline-queue\)\nstrategy = leastrecent$",
                     config["queues.conf"], re.M)
    slot = section(config["hotline.conf"], "hotline-callback-slot")
    assert slot.index("Gosub(hotline-callback-penalty,s,1)") < slot.index("Queue(")
    assert "UserEvent(HotlineCallbackLeft,CallId: ${CALL_ID}," in slot
    penalty = section(config["hotline.conf"], "hotline-callback-penalty")
    assert "Set(QUEUE_MIN_PENALTY=${penalty})" in penalty
    assert "Set(QUEUE_MAX_PENALTY=${penalty})" in penalty


def test_modules_needed_by_the_hotline_are_loaded(config: dict[str, str]) -> None:
    loaded = set(re.findall(r"^load = (\S+)\.so$", config["modules.conf"], re.M))
    assert {"chan_pjsip", "app_queue", "app_audiosocket", "app_mixmonitor", "func_shell",
            "app_exec", "pbx_config", "app_stack", "app_userevent"} <= loaded
    assert "autoload = no" in config["modules.conf"]


def test_templates_on_disk_hold_no_secrets() -> None:
    templates = [*asset_dir(ASTERISK_CONFIG).glob("*.j2"), *asset_dir(DIALPLANS).glob("*.j2")]
    assert templates
    for path in templates:
        for line in path.read_text().splitlines():
            if re.match(r"^\s*(secret|password)\s*=", line):
                assert re.search(r"=\s*\{\{.*\}\}\s*$", line), f"{path.name}: {line}"


def test_secrets_appear_only_in_the_files_that_need_them(config: dict[str, str]) -> None:
    secrets = [SECRET, SOFTPHONE_PASSWORD, *AGENT_PASSWORDS.values()]
    holders = {name for name, text in config.items() if any(s in text for s in secrets)}
    assert holders == {"manager.conf", "pjsip.conf"}


@pytest.mark.parametrize("bad", ["", "with;comment", "two words", 'quo"te'])
def test_unsafe_or_missing_secret_is_refused(settings: Settings, bad: str) -> None:
    settings.ami.secret = bad
    with pytest.raises(ConfigRenderError, match=r"ami\.secret"):
        render_config(settings)


def test_each_agent_phone_needs_its_own_safe_password(settings: Settings) -> None:
    settings.asterisk.agent_passwords = {"3001": "same-pw", "3002": "same-pw"}
    with pytest.raises(ConfigRenderError, match="3001 and 3002 share a password"):
        render_config(settings)
    settings.asterisk.agent_passwords = {"3001": "pw-one", "3002": SOFTPHONE_PASSWORD}
    with pytest.raises(ConfigRenderError, match="1001 and 3002 share a password"):
        render_config(settings)
    settings.asterisk.agent_passwords = {"3001": "pw-one"}
    with pytest.raises(ConfigRenderError, match=r"agent_passwords\.3002 is empty"):
        render_config(settings)
    settings.asterisk.agent_passwords = {"3001": "pw-one", "3002": "pw;two"}
    with pytest.raises(ConfigRenderError, match=r"agent_passwords\.3002 contains"):
        render_config(settings)


def acl_rules(acl_conf: str, name: str) -> list[tuple[str, str]]:
    return re.findall(r"^(deny|permit) = (\S+)$", section(acl_conf, name), re.M)


def test_acls_deny_everything_but_the_configured_networks(settings: Settings) -> None:
    deny_all = [("deny", "0.0.0.0/0"), ("deny", "::/0")]
    acl = render_config(settings)["acl.conf"]
    assert acl_rules(acl, "hotline-gateway") == [*deny_all, ("permit", "127.0.0.1")]
    assert acl_rules(acl, "hotline-phones") == [*deny_all, ("permit", "127.0.0.0/8")]
    assert acl_rules(acl, "hotline-phone-contacts") == [*deny_all, ("permit", "127.0.0.0/8")]

    settings.asterisk.gateway_addresses = ["203.0.113.5", "198.51.100.0/28"]
    settings.asterisk.sip_permit = ["10.20.0.0/16"]
    settings.asterisk.sip_contact_permit = ["10.20.0.0/16", "192.168.0.0/16"]
    config = render_config(settings)
    acl = config["acl.conf"]
    assert acl_rules(acl, "hotline-gateway") == [
        *deny_all, ("permit", "203.0.113.5"), ("permit", "198.51.100.0/28")]
    assert acl_rules(acl, "hotline-phones") == [*deny_all, ("permit", "10.20.0.0/16")]
    assert acl_rules(acl, "hotline-phone-contacts") == [
        *deny_all, ("permit", "10.20.0.0/16"), ("permit", "192.168.0.0/16")]
    identify = section(config["pjsip.conf"], "pstn-gateway-identify")
    assert re.findall(r"^match = (\S+)$", identify, re.M) == ["203.0.113.5", "198.51.100.0/28"]


def test_install_replaces_stock_configs_and_protects_secrets(
    settings: Settings, tmp_path: Path
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "sip.conf").write_text("; stock\n")
    (etc / "extensions.ael").write_text("// not a .conf\n")
    written = install_config(settings, etc)
    names = {p.name for p in etc.iterdir()}
    assert "sip.conf" not in names and "extensions.ael" in names
    assert {p.name for p in written} == set(render_config(settings))
    assert stat.S_IMODE((etc / "manager.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((etc / "pjsip.conf").stat().st_mode) == 0o640


# --- rootfs and layout helpers ---------------------------------------------------------


def test_host_mirror_reads_deb822_and_skips_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
        "Components: main\n"
    )
    assert rootfs.host_mirror(tmp_path) == "http://mirror.example/debian"


def test_host_mirror_reads_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert rootfs.host_mirror(tmp_path) == "http://one.example/debian"


def test_host_mirror_without_debian_sources_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(rootfs.AsteriskError, match=r"asterisk\.mirror"):
        rootfs.host_mirror(tmp_path)


def test_mmdebstrap_command_builds_sid_with_asterisk(tmp_path: Path) -> None:
    argv = rootfs.mmdebstrap_argv(tmp_path / "root.tmp", "http://m.example/debian")
    assert argv[:2] == ["mmdebstrap", "--variant=apt"]
    assert "--include=asterisk,asterisk-modules,asterisk-core-sounds-en" in argv
    assert argv[-1] == "deb http://m.example/debian sid main"
    assert any("Check-Valid-Until" in a for a in argv)


def test_unreachable_archive_is_recognized() -> None:
    output = ["I: running apt-get update...", "E: Failed to fetch http://m.example/debian/..."]
    assert isinstance(rootfs._build_error(output, "http://m.example/debian"),
                      ArchiveUnreachableError)
    assert isinstance(rootfs._build_error(["E: something else"], "x"), RootBuildError)


def test_building_a_root_requires_root_and_mmdebstrap(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.asterisk.root_dir = tmp_path / "asterisk-root"
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="sudo"):
        rootfs.ensure_root(settings, progress=lambda m: None)
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match="apt-get install mmdebstrap"):
        rootfs.ensure_root(settings, progress=lambda m: None)


def test_starting_asterisk_requires_root(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="starting Asterisk needs root"):
        process.up(settings, progress=lambda m: None)


def test_existing_root_is_reused(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "asterisk-root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/asterisk").write_text("")
    settings.asterisk.root_dir = root
    assert rootfs.ensure_root(settings, progress=pytest.fail) == root


@pytest.mark.parametrize(
    ("banner", "major"),
    [("Asterisk 22.10.1+dfsg-1", 22), ("Asterisk certified-20.7-cert5", 20),
     ("Asterisk 18.9.0", None)],
)
def test_system_asterisk_needs_version_20_or_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, banner: str, major: int | None
) -> None:
    fake = tmp_path / "asterisk"
    fake.write_text(f"#!/bin/sh\necho '{banner}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = rootfs.system_asterisk()
    assert (found.major if found else None) == major


def test_symlinks_resolve_inside_the_chroot(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var/run").symlink_to("/run")
    assert resolve_in_root(tmp_path, "/var/run/asterisk/asterisk.pid") == (
        tmp_path / "run/asterisk/asterisk.pid"
    )
    assert resolve_in_root(tmp_path, "/../../etc") == tmp_path / "etc"


# --- SIPp scenarios --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["caller.xml", "caller_until_bye.xml"])
def test_caller_scenarios_render_to_valid_sipp_xml(tmp_path: Path, name: str) -> None:
    path = render_scenario(
        name, tmp_path, caller_number="13800138000", caller_name="张三", audio=None,
        steps=key_steps("5#*", 300, tmp_path), hold_ms=1000, answer_timeout_ms=5000,
        authenticate=True,
    )
    root = ET.parse(path).getroot()
    text = path.read_text(encoding="utf-8")
    assert root.tag == "scenario"
    assert 'From: "张三" <sip:13800138000@' in text
    assert "dtmf_2833_pound.pcap" in text and "dtmf_2833_star.pcap" in text
    assert ("no_remote_bye" in text) == (name == "caller_until_bye.xml")


@pytest.mark.parametrize("name", ["agent_phone.xml", "agent_register.xml"])
def test_agent_scenarios_render_to_valid_sipp_xml(tmp_path: Path, name: str) -> None:
    path = render_scenario(name, tmp_path, user="2001", contact="*", expires=0,
                           ring_ms=1, hold_ms=1000)
    assert ET.parse(path).getroot().tag == "scenario"


def test_registration_scenario_reports_a_refusal_with_its_code(tmp_path: Path) -> None:
    root = ET.parse(render_scenario("agent_register.xml", tmp_path, user="2001",
                                    contact="*", expires=0)).getroot()
    labels = {e.get("id") for e in root.iter("label")}
    refusals = [e for e in root.iter("recv") if e.get("next", "").startswith("refused_")]
    # The answer to the digest response: 401 or 403 is reported, not a SIPp error.
    assert {e.get("response") for e in refusals} >= {"401", "403"}
    assert all(e.get("optional") == "true" and e.get("next") in labels for e in refusals)
    logs = [e.get("message") for e in root.iter("log")]
    assert "registered" in logs and "refused 401" in logs and "refused 403" in logs


@pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
@pytest.mark.parametrize("authenticate", [False, True])
def test_request_probe_scenario_reports_the_final_answer(
    tmp_path: Path, method: str, authenticate: bool
) -> None:
    path = render_scenario("sip_request.xml", tmp_path, method=method,
                           from_user="pstn-gateway", to_user="12345",
                           contact="<sip:x@192.0.2.10:5060>", expires=60,
                           authenticate=authenticate)
    root = ET.parse(path).getroot()
    text = path.read_text(encoding="utf-8")
    assert f"{method} sip:" in text and "From: <sip:pstn-gateway@[local_ip]" in text
    assert "Contact: <sip:x@192.0.2.10:5060>" in text
    labels = [e.get("id") for e in root.iter("label")]
    assert len(labels) == len(set(labels))
    assert all(e.get("next") in labels for e in root.iter() if e.get("next"))
    challenges = [e for e in root.iter("recv") if e.get("auth") == "true"]
    assert len(challenges) == (2 if authenticate else 0)  # 401 and 407, answered once
    logs = {e.get("message") for e in root.iter("log")}
    assert {"final 200", "final 401", "final 403"} <= logs
    assert ("challenged" in logs) == authenticate
    assert ("ACK " in text) == (method == "INVITE")


def test_key_presses_are_renumbered_to_follow_each_other(tmp_path: Path) -> None:
    """SIPp's own captures go backwards between keys ('6' then '1'), which Asterisk drops."""
    import struct

    def rtp_fields(pcap: Path) -> list[tuple[int, int]]:
        data, offset, out = pcap.read_bytes(), 24, []
        while offset + 16 <= len(data):
            caplen = struct.unpack_from("<I", data, offset + 8)[0]
            out.append(struct.unpack_from(">HI", data, offset + 16 + 42 + 2))
            offset += 16 + caplen
        return out

    steps = key_steps("611", 300, tmp_path)
    fields = [rtp_fields(Path(str(s["pcap"]))) for s in steps]
    seqs = [seq for press in fields for seq, _ in press]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stamps = [press[0][1] for press in fields]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_no_caller_controlled_text_in_dialplan_application_arguments(
    config: dict[str, str],
) -> None:
    """Application arguments are split on commas and UserEvent's later fields overwrite
    earlier ones: the display name and the user part (CALLERID, CONNECTEDLINE, the dialled
    number's digits) must never be expanded into them, unless encoded or filtered."""
    dialplan = config["hotline.conf"]
    code = "\n".join(line.split(";", 1)[0] for line in dialplan.splitlines())
    for function in ("CALLERID(", "CONNECTEDLINE(", "REDIRECTING(", "PJSIP_HEADER(",
                     "SIP_HEADER(", "CHANNEL(name)"):
        for match in re.finditer(re.escape("${" + function), code):
            line = code[code.rfind("\n", 0, match.start()) + 1:code.find("\n", match.end())]
            prefix = code[:match.start()]
            assert prefix.endswith(("BASE64_ENCODE(", "FILTER(0123456789,")), line


def test_language_desks_are_queues_with_the_main_queues_options(
    config: dict[str, str],
) -> None:
    """One queue per other language, rendered with the main queue's options, and the rule
    that lets any agent answer after [intake] language_fallback_after."""
    queues = config["queues.conf"]
    # Every queue, the main one and each desk, is the same template with nothing of its own.
    for name in ("front-desk", "front-desk-en", "front-desk-ko"):
        assert re.search(rf"^\[{name}\]\(hotline-queue\)$", queues, re.M), name
        assert not [line for line in section(queues, name).splitlines()
                    if line.strip() and not line.startswith(";")], name
    assert "strategy = ringall" in section(queues, "hotline-queue")
    rules = section(config["queuerules.conf"], "hotline-language")
    assert "penaltychange => 30,1,,1" in rules
def test_callback_contexts_keep_caller_text_out_of_arguments(config: dict[str, str]) -> None:
    offer = section(config["hotline.conf"], "hotline-callback-offer")
    assert "TryExec(AudioSocket(${CALLBACK_OFFER_ID},127.0.0.1:9999))" in offer
    assert "Set(CALLBACK_REASON=${FILTER(abcdefghijklmnopqrstuvwxyz_,${CALLBACK_REASON})})" \
        in offer
    assert "Reason: ${CALLBACK_REASON},Answer: unheard)" in offer
    assert offer.index("UserEvent(HotlineCallbackOffer,") < offer.index("TryExec(AudioSocket(")
    slot = section(config["hotline.conf"], "hotline-callback-slot")
    # The placeholder joins the caller's queue at its arrival position (Queue's 9th argument).
    assert ("Queue(${CALLBACK_QUEUE},r,,,${CALLBACK_QUEUE_TIMEOUT},,,,${CALLBACK_POSITION})"
            in slot)
    assert "Set(CALLERID(num)=${FILTER(0123456789+,${CALLBACK_NUMBER})})" in slot
    assert "Set(IVR_ROUTE=callback)" in slot
    report = section(config["hotline.conf"], "hotline-callback-report")
    assert "DialStatus: ${FILTER(ABCDEFGHIJKLMNOPQRSTUVWXYZ,${DIALSTATUS})}" in report
    assert "Dial(${CALLBACK_DIAL},${CALLBACK_RING_TIMEOUT})" in section(
        config["hotline.conf"], "hotline-callback-connect")
