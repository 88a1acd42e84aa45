"""Wiring of the start-up reconciliation: calls the records show as live that ended while no
service ran are closed from Asterisk's own record (read by ``ivr.asterisk.call_records``,
closed by ``crm.consultations.reconciliation``) before the AMI login would close them with
the time the service came back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from crm.consultations.reconciliation import close_reconciled
from crm.consultations.recorder import OpenCall
from crm.storage.db import SessionFactory
from hotline.asterisk.layout import Installation
from hotline.settings import Settings
from ivr.asterisk.call_records import CEL_FILE, call_endings, read_events

log = logging.getLogger(__name__)

EARLIER = timedelta(minutes=5)
"""How much before the oldest open call's start the record is read (clock skew, a start
recorded late)."""


def call_record_path(settings: Settings) -> Path:
    """Asterisk's channel event record as this host sees it: ``asterisk.call_record_file``
    when set, else in the root of the Asterisk that ``hotline up`` started, else a local
    Asterisk's log directory."""
    if settings.asterisk.call_record_file is not None:
        return settings.asterisk.call_record_file
    installation = Installation.load(settings.state_dir)
    if installation is not None:
        return installation.host_path(f"{installation.dirs.log}/{CEL_FILE}")
    return Path("/var/log/asterisk") / CEL_FILE


async def reconcile_open_calls(settings: Settings, sessions: SessionFactory,
                               calls: Sequence[OpenCall]) -> set[str]:
    """Close the open calls Asterisk's record shows ended; the call ids closed."""
    if not calls:
        return set()
    starts = [c.started_at for c in calls if c.started_at is not None]
    since = min(starts) - EARLIER if len(starts) == len(calls) else None
    path = call_record_path(settings)
    ends = await asyncio.to_thread(
        lambda: call_endings(read_events(path, since=since), [c.call_id for c in calls]))
    closed = set(await close_reconciled(sessions, ends))
    if closed or calls:
        log.info("%d call(s) open at start-up: %d closed from Asterisk's record %s, the "
                 "others are left to the AMI resynchronisation", len(calls), len(closed), path)
    return closed
