"""Bearer tokens for the open API.

A token is shown once, when it is made; only its SHA-256 is stored (tokens are 256 random
bits, so a fast hash is enough and lookups by hash stay cheap). Each token carries scopes and,
optionally, an expiry: an expired token is refused with a message that says so
(:class:`TokenExpired`, a 401), a revoked or unknown one as unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from crm.audit import log as audit
from crm.errors import InvalidInput, InvalidScope, InvalidToken
from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import ApiToken, utcnow

log = logging.getLogger(__name__)

SCOPES = {
    "cases:read": "read cases, their stage, department, deadline and history",
    "cases:write": "create cases and change their stage, department, notes",
    "consultations:read": "read consultation (call) records",
    "reports:read": "read the service-level figures (aggregates only, no residents' data)",
}
TOKEN_PREFIX = "hlt_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_TOKEN_LENGTH = 128
MAX_EXPIRES_IN_DAYS = 3650


class TokenExpired(InvalidToken):
    code = "token_expired"


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked: bool
    expires_at: datetime | None = None
    """None: until revoked."""
    revoked_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How the token is named in case history and the audit log."""
        return f"token:{self.name}"

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    def allows(self, scope: str) -> bool:
        return not self.revoked and not self.expired() and scope in self.scopes

    @property
    def state(self) -> str:
        """live, expired or revoked."""
        return "revoked" if self.revoked else "expired" if self.expired() else "live"


def _record(t: ApiToken) -> TokenRecord:
    return TokenRecord(t.id, t.name, frozenset(t.scopes), t.created_at, t.revoked,
                       t.expires_at, t.revoked_at)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, de-duplicated, or InvalidScope naming the unknown ones and the valid ones."""
    scopes = list(dict.fromkeys(scopes))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        values = {"unknown": ", ".join(unknown), "scopes": ", ".join(SCOPES)}
        raise InvalidScope(Phrase("unknown scope(s): {unknown}; valid scopes: {scopes}", values)
                           if unknown else
                           Phrase("a token needs at least one scope; valid scopes: {scopes}",
                                  values),
                           details={"valid_scopes": list(SCOPES)})
    return scopes


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(Phrase("token name {name} must be 1-64 letters, digits, '.', '_' "
                                  "or '-'", {"name": repr(name)}))
    return name


def _check_expires_in(days: float | None) -> float | None:
    if days is not None and not 0 < days <= MAX_EXPIRES_IN_DAYS:
        raise InvalidInput(Phrase("a token expires 0 to {max} days after it is made (got "
                                  "{days})", {"max": MAX_EXPIRES_IN_DAYS, "days": days}))
    return days


async def create(sessions: SessionFactory, name: str, scopes: Iterable[str], *,
                 expires_in_days: float | None = None,
                 now: datetime | None = None) -> tuple[str, TokenRecord]:
    """A new token: (the plaintext, shown only now; its stored record). With
    ``expires_in_days`` it is refused from that many days on."""
    made = now or utcnow()
    days = _check_expires_in(expires_in_days)
    row = ApiToken(name=_check_name(name), scopes=check_scopes(scopes), created_at=made,
                   revoked=False,
                   expires_at=made + timedelta(days=days) if days is not None else None)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row.token_hash = _digest(plaintext)
    async with sessions() as session, session.begin():
        session.add(row)
        await session.flush()
        audit.record(session, actor="cli", action="api_token.create", object_type="api_token",
                     object_id=row.id,
                     detail={"name": name, "scopes": row.scopes,
                             "expires_at": row.expires_at.isoformat() if row.expires_at
                             else None})
    log.info("API token %r created with scopes %s", name, ", ".join(row.scopes))
    return plaintext, _record(row)


async def create_token(sessions: SessionFactory, name: str, scopes: Iterable[str], *,
                       expires_in_days: float | None = None) -> str:
    """For ``hotline token create --name NAME --scope SCOPE... [--expires-in DAYS]``: the
    plaintext token."""
    plaintext, _ = await create(sessions, name, scopes, expires_in_days=expires_in_days)
    return plaintext


async def verify(sessions: SessionFactory, token: str, *,
                 now: datetime | None = None) -> TokenRecord | None:
    """The live token record for a presented token, or None (unknown, malformed, revoked);
    :class:`TokenExpired` (an InvalidToken: 401) for a token past its expiry, so its holder
    learns why."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    digest = _digest(token)
    async with sessions() as session:
        row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        return None
    record = _record(row)
    if record.expired(now):
        assert record.expires_at is not None
        raise TokenExpired(f"the API token {record.name!r} expired at "
                           f"{record.expires_at.isoformat(timespec='seconds')}; ask the "
                           "hotline's administrator for a new one",
                           details={"expired_at": record.expires_at.isoformat()})
    return record


async def revoke(sessions: SessionFactory, name: str) -> int:
    """Revoke every live token with this name; how many were revoked."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(ApiToken).where(ApiToken.name == name, ApiToken.revoked.is_(False))
            .values(revoked=True, revoked_at=utcnow()))
        count = result.rowcount  # type: ignore[attr-defined]
        if count:
            audit.record(session, actor="cli", action="api_token.revoke",
                         object_type="api_token", detail={"name": name, "count": count})
    return count


async def list_tokens(sessions: SessionFactory, *, include_revoked: bool = False,
                      include_expired: bool = True) -> list[TokenRecord]:
    """Tokens by age; never their secret (it is not kept)."""
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked.is_(False))
    async with sessions() as session:
        records = [_record(t) for t in (await session.scalars(query)).all()]
    return [r for r in records if include_expired or not r.expired()]
