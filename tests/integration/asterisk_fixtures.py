"""The real Asterisk 22 test bed as a session fixture.

Register it once for the session with ``pytest_plugins = ["tests.integration.asterisk_fixtures"]``
(in ``tests/conftest.py`` or a test module), or import ``asterisk_bed`` into a conftest.py.
Asterisk runs from the shared Debian root with a private state directory and free
loopback ports, so it never collides with services on the default ports. Nothing is
listening on its AudioSocket port unless a test starts a server there.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator

import pytest

from hotline.asterisk import down, up
from hotline.asterisk.layout import chroot_installation
from hotline.asterisk.process import daemon_pid
from hotline.asterisk.rootfs import has_asterisk
from hotline.settings import Settings
from hotline.tools.bed import asterisk_test_settings


def _skip_unless_possible(settings: Settings) -> None:
    if settings.asterisk.mode == "external":
        pytest.skip("asterisk.mode is external: the test bed runs its own Asterisk")
    if os.geteuid() != 0:
        pytest.skip("the Asterisk test bed needs root (chroot, mount)")
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (apt-get install sip-tester)")
    if not has_asterisk(settings.asterisk.root_dir) and shutil.which("mmdebstrap") is None:
        pytest.skip("no Asterisk root and no mmdebstrap to build one")


def _refuse_running_instance(settings: Settings) -> None:
    root = settings.asterisk.root_dir
    if not has_asterisk(root):
        return
    pid = daemon_pid(chroot_installation(root))
    if pid is not None:
        pytest.fail(
            f"an Asterisk already runs from {root} (pid {pid}); stop it "
            "(hotline.asterisk.down) before running the Asterisk tests",
            pytrace=False,
        )


class _SharedBed:
    """One Asterisk per test process, even if the fixture is defined in two places."""

    settings: Settings | None = None
    users = 0

    @classmethod
    def acquire(cls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
        if cls.settings is None:
            settings = asterisk_test_settings(tmp_path_factory.mktemp("asterisk-state"))
            _skip_unless_possible(settings)
            _refuse_running_instance(settings)
            up(settings, progress=lambda message: None)
            cls.settings = settings
        cls.users += 1
        return cls.settings

    @classmethod
    def revive(cls) -> None:
        """Start the shared Asterisk again if a test left it stopped (a failed restart in a
        fault test): that test has failed already, the ones after it need not."""
        settings = cls.settings
        if settings is None or daemon_pid(chroot_installation(settings.asterisk.root_dir)):
            return
        warnings.warn("the shared Asterisk test bed was found stopped; starting it again",
                      stacklevel=1)
        up(settings, progress=lambda message: None)

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.settings is not None:
            settings, cls.settings = cls.settings, None
            down(settings)


@pytest.fixture(scope="session")
def asterisk_bed_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One Asterisk for the whole session; yields the Settings it was started with."""
    settings = _SharedBed.acquire(tmp_path_factory)
    try:
        yield settings
    finally:
        _SharedBed.release()


@pytest.fixture
def asterisk_bed(asterisk_bed_session: Settings) -> Settings:
    """The session's Asterisk, running when the test starts."""
    _SharedBed.revive()
    return asterisk_bed_session
