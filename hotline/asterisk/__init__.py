"""Run and configure the hotline's Asterisk 22 (embedded Debian root, system or external).

Nothing happens at import: see :mod:`hotline.asterisk.process` (up/down/status/cli),
:mod:`hotline.asterisk.render` (config from templates) and :mod:`hotline.asterisk.rootfs`.
"""

from hotline.asterisk.errors import AsteriskError
from hotline.asterisk.process import cli, down, status, up
from hotline.asterisk.render import install_config, render_config
from hotline.asterisk.rootfs import ensure_root, system_asterisk

__all__ = [
    "AsteriskError",
    "cli",
    "down",
    "ensure_root",
    "install_config",
    "render_config",
    "status",
    "system_asterisk",
    "up",
]
