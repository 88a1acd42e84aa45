"""The doctor's pure judgements: a manager.conf's binding and ACL, the AMI user's actions,
and the table an operator reads (with the exit status)."""

from __future__ import annotations

from pathlib import Path

from hotline.asterisk.render import render_config
from hotline.doctor.asterisk import NEEDED_ACTIONS, manager_acl_finding, privilege_finding
from hotline.doctor.findings import exit_status, fail, ok, table, warn
from hotline.settings import Settings

CONF = Path("/etc/asterisk/manager.conf")


def rendered_manager() -> str:
    settings = Settings(ami={"secret": "ami-secret-1"},
                        web={"session_secret": "s" * 20, "demo_password": "demo-pw-1"},
                        asterisk={"softphone_password": "soft-pw-1", "agent_extensions": ["2001"],
                                  "agent_passwords": {"2001": "agent-pw-1"}})
    return render_config(settings)["manager.conf"]


def test_rendered_manager_conf_is_loopback_only() -> None:
    found = manager_acl_finding(rendered_manager(), "hotline", CONF)
    assert found.status == "ok", found


def test_wide_binding_or_permit_is_named() -> None:
    text = rendered_manager()
    wide_bind = text.replace("bindaddr = 127.0.0.1", "bindaddr = 0.0.0.0")
    assert "bindaddr = 0.0.0.0" in manager_acl_finding(wide_bind, "hotline", CONF).detail
    wide_permit = text.replace("permit = 127.0.0.1/255.255.255.255",
                               "permit = 0.0.0.0/0.0.0.0")
    found = manager_acl_finding(wide_permit, "hotline", CONF)
    assert found.status == "warn" and "permit = 0.0.0.0/0.0.0.0" in found.detail
    assert "127.0.0.1/255.255.255.255" in found.fix
    assert "no [other]" in manager_acl_finding(text, "other", CONF).detail


def test_privileges() -> None:
    needed = {a.lower() for a in NEEDED_ACTIONS} | {"ping", "listcommands"}
    assert privilege_finding(needed, "hotline").status == "ok"
    short = privilege_finding(needed - {"originate"}, "hotline")
    assert short.status == "FAIL" and "Originate" in short.detail and "originate" in short.fix
    wide = privilege_finding(needed | {"command", "updateconfig"}, "hotline")
    assert wide.status == "warn" and "Command, UpdateConfig" in wide.detail


def test_table_and_exit_status() -> None:
    findings = [ok("database", "connected"),
                warn("speech en", "keypad only", "install a model"),
                fail("AMI login", "rejected", "set ami.secret")]
    text = table(findings, width=90)
    rows = text.splitlines()
    assert any(r.startswith("FAIL  AMI login") and "rejected" in r for r in rows)
    assert any(r.strip() == "fix: set ami.secret" for r in rows)
    assert rows[-1] == "3 checks: 1 ok, 1 warn, 1 FAIL"
    assert exit_status(findings) == 1
    assert exit_status(findings[:2]) == 0
