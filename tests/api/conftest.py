"""A running open API over each database backend, with demo data and one token per need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm.agents import tokens as api_tokens
from crm.demo_data import seed_demo
from crm.storage.db import SessionFactory
from crm.web.app import HealthReport, create_app


@dataclass
class Api:
    client: TestClient
    sessions: SessionFactory
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


TOKENS = {
    "reader": ["cases:read"],
    "writer": ["cases:read", "cases:write"],
    "write_only": ["cases:write"],
    "calls": ["consultations:read"],
    "levels": ["reports:read"],
    "everything": list(api_tokens.SCOPES),
    "revoked": list(api_tokens.SCOPES),
}


@pytest.fixture
async def api(sessions: SessionFactory, db_url: str) -> AsyncIterator[Api]:
    await seed_demo(db_url)
    tokens = {name: await api_tokens.create_token(sessions, name, scopes)
              for name, scopes in TOKENS.items()}
    await api_tokens.revoke(sessions, "revoked")
    app = create_app(sessions, lambda: HealthReport("logged_in", 9092, 0, 0))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, sessions, tokens)
    finally:
        await client.close()
