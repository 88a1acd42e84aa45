"""``hotline doctor``: checks an installation and says, line by line, what to change.

One module per group of checks (asterisk.py: AMI, modules, clock; database.py: reachable
and migrated; speech.py: models per language and prompts; host.py: ports, permissions,
disk). Every check returns :class:`~hotline.doctor.findings.Finding` lines; nothing is
changed on the way. The exit status is 1 when any line is FAIL.
"""

from __future__ import annotations

from pathlib import Path

from hotline.doctor.findings import Finding, exit_status, table
from hotline.settings import Settings

__all__ = ["Finding", "examine", "exit_status", "table"]


async def examine(settings: Settings, *, config_file: Path | None = None,
                  secret_files: tuple[Path, ...] = ()) -> list[Finding]:
    """Every check, in the order an operator fixes things: Asterisk, database, speech and
    prompts, then this host."""
    from hotline.doctor.asterisk import check_asterisk
    from hotline.doctor.database import check_database
    from hotline.doctor.host import (
        check_disk,
        check_permissions,
        check_ports,
        service_health,
    )
    from hotline.doctor.speech import check_prompts, check_speech

    findings = await check_asterisk(settings)
    findings += await check_database(settings)
    findings += check_speech(settings, service_health(settings))
    findings += check_prompts(settings)
    findings += check_ports(settings)
    findings += check_permissions(settings, config_file, secret_files)
    findings += check_disk(settings)
    return findings
