"""Alembic environment: runs migrations over the async engine given in the config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import crm.storage.dispatch_models  # (registers the dispatch tables)
import crm.storage.survey_models  # noqa: F401  (registers the survey tables)
from crm.storage.db import open_database
from crm.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    async with open_database(config.get_main_option("sqlalchemy.url") or "") as database, \
            database.engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
