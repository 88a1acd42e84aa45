"""The storage part: private files tightened, the database migrated and opened."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from crm.storage.db import Database, SessionFactory, open_database
from crm.storage.migrate import upgrade
from crm.storage.private_files import SERVICE_UMASK, tighten_all, umask
from hotline.paths import asterisk_trees, recording_store, service_trees
from hotline.settings import Settings


async def open_storage(stack: contextlib.AsyncExitStack, settings: Settings, *,
                       migrate: bool = True,
                       on_open: Callable[[Database], None] | None = None) -> SessionFactory:
    """Residents' data on disk is for the service's user only (new files owner-only, older
    ones tightened, each change logged); the database upgraded (``migrate``: one role of a
    cluster does it) and opened; ``on_open`` sees the database (the metrics watch its
    engine's errors). Closed when ``stack`` exits."""
    stack.enter_context(umask(SERVICE_UMASK))
    recordings = recording_store(settings)
    tighten_all(service_trees(settings) + asterisk_trees(
        settings, recordings.host_dir if recordings is not None else None))
    if migrate:
        await upgrade(settings.database_url)
    database = open_database(settings.database_url, echo=settings.database.echo)
    stack.push_async_callback(database.close)
    if on_open is not None:
        on_open(database)
    return database.sessions
