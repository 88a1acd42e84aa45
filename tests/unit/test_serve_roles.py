"""``hotline serve --role``: a role other than all is refused, with what to set, unless the
bus is Redis (the processes of a cluster share call events only through it)."""

from __future__ import annotations

import os

import pytest

from hotline.cli import main
from hotline.roles.cluster import RoleError, check_role
from hotline.settings import Settings


def test_core_and_web_need_the_redis_bus() -> None:
    settings = Settings()
    check_role(settings, "all")
    for role in ("core", "web", "control", "ivr"):
        with pytest.raises(RoleError, match=r'\[bus\] kind = "redis"'):
            check_role(settings, role)
    settings.bus.kind = "redis"
    check_role(settings, "core")
    with pytest.raises(RoleError, match="unknown role"):
        check_role(settings, "media")


def test_serve_refuses_a_role_without_redis_before_starting_anything(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOTLINE_BUS__KIND", raising=False)
    umask = os.umask(0o022)  # main() sets the service's umask: give the test run its own back
    try:
        assert main(["serve", "--role", "web"]) == 1
    finally:
        os.umask(umask)
    err = capsys.readouterr().err
    assert "--role web" in err and "HOTLINE_BUS__KIND=redis" in err
