"""An agent account as the rest of the CRM sees it (never its password hash)."""

from __future__ import annotations

from dataclasses import dataclass

from crm.storage.models import Agent


@dataclass(frozen=True)
class AgentView:
    id: int
    login: str
    display_name: str
    role: str
    extension: str | None
    queues: tuple[str, ...]
    active: bool
    can_log_in: bool
    languages: tuple[str, ...] = ("cmn",)
    """Languages the agent speaks: the hotline offers them callers of these first."""
    locale: str | None = None
    """The language of their pages (None: the hotline's default)."""


def agent_view(a: Agent) -> AgentView:
    return AgentView(a.id, a.login, a.display_name, a.role, a.extension, tuple(a.queues),
                     a.active, a.password_hash is not None, tuple(a.languages or ("cmn",)),
                     a.locale)
