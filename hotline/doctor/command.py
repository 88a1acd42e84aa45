"""The ``hotline doctor`` command: run every check, print the table, exit 1 on a FAIL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hotline.doctor import examine, exit_status, table
from hotline.settings import Settings, settings_file

SYSTEM_SECRETS_ENV = Path("/etc/hotline/hotline.env")
"""The secrets the systemd unit reads (deploy/): private to the service's user too."""


def run_doctor(settings: Settings, config: str | None) -> int:
    secret_files = (SYSTEM_SECRETS_ENV,) if SYSTEM_SECRETS_ENV.exists() else ()
    findings = asyncio.run(examine(settings, config_file=settings_file(config),
                                   secret_files=secret_files))
    print(table(findings))
    return exit_status(findings)
