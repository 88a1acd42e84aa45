"""Sign-in throttling for the agent desk and the supervisor console, per account and per source
address, kept in the database so every web process on it shares one count.

Each attempt is counted *before* the password is checked (so a burst of parallel guesses is
counted in full), against two keys: ``account:<login>`` (known or not: an unknown login is
throttled like a real one) and ``address:<source>`` (an IPv6 source counts as its /64, which
one client usually holds whole). After ``free_failures`` consecutive failures a key is locked
for ``base_delay`` seconds, doubling with every further failure up to ``max_delay``; an attempt
while either key is locked is refused without checking the password. A successful sign-in
clears its account's count and gives back the attempt it took from the address; failures
quieter than ``forget_after`` are forgotten.

The UPDATE that starts each attempt takes the rows' locks (PostgreSQL) or the write lock
(SQLite) until commit, so concurrent attempts on the same keys queue up instead of both
passing a check made before either was counted.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import SignInFailure, utcnow

log = logging.getLogger(__name__)

_ATTEMPTS = 4
"""Tries when two first attempts on one key race to insert its row."""


@dataclass(frozen=True)
class ThrottlePolicy:
    account_free_failures: int = 5
    """Consecutive failed sign-ins of one account before it is locked."""
    address_free_failures: int = 20
    """The same for one source address (higher: an office may share one address)."""
    base_delay: float = 1.0
    """Seconds of the first lock; each further failure doubles it."""
    max_delay: float = 900.0
    forget_after: float = 3600.0
    """Seconds without a failure after which a key starts again from zero."""

    def __post_init__(self) -> None:
        if min(self.account_free_failures, self.address_free_failures) < 1:
            raise ValueError("free failures must be at least 1")
        if not 0 < self.base_delay <= self.max_delay <= self.forget_after:
            raise ValueError("need 0 < base_delay <= max_delay <= forget_after")

    def delay(self, failures: int, free: int) -> float:
        """Seconds a key with ``failures`` consecutive failures stays locked after the last."""
        if failures < free:
            return 0.0
        exponent = min(failures - free, 40)
        return min(self.base_delay * 2.0 ** exponent, self.max_delay)


def account_key(login: str) -> str:
    return f"account:{login.strip().lower()[:64]}"


def address_key(source: str | None) -> str:
    """IPv4 as is, IPv6 as its /64, anything else (no address, a unix socket) as given."""
    if not source:
        return "address:unknown"
    try:
        ip = ipaddress.ip_address(source.split("%")[0])
    except ValueError:
        return f"address:{source[:80]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


@dataclass(frozen=True)
class Attempt:
    """The verdict on one sign-in attempt."""

    allowed: bool
    retry_after: float = 0.0
    """When refused: seconds until the attempt may be made again."""
    locked: str | None = None
    """When refused: which key is locked, ``account`` or ``address``."""
    keys: tuple[str, str] = ("", "")
    """(account key, address key), for :meth:`SignInThrottle.succeeded` and ``.failed``."""

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))

    @property
    def phrase(self) -> Phrase:
        return Phrase("too many failed sign-ins, try again in {seconds} s",
                      {"seconds": self.retry_after_seconds})

    @property
    def message(self) -> str:
        return self.phrase.render()


class SignInThrottle:
    def __init__(self, sessions: SessionFactory, policy: ThrottlePolicy | None = None, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self.policy = policy or ThrottlePolicy()
        self._clock = clock

    def _free(self, key: str) -> int:
        p = self.policy
        return p.account_free_failures if key.startswith("account:") else p.address_free_failures

    def _locked_for(self, row: SignInFailure | None, now: datetime) -> float:
        if row is None or now - row.last_failure_at > timedelta(seconds=self.policy.forget_after):
            return 0.0
        delay = self.policy.delay(row.failures, self._free(row.key))
        if delay <= 0:  # under the free count: not locked, even if a later attempt (its clock
            return 0.0  # read after ours) wrote a last failure in our future
        until = row.last_failure_at + timedelta(seconds=delay)
        return max(0.0, (until - now).total_seconds())

    async def attempt(self, login: str, source: str | None) -> Attempt:
        """Count an attempt for the login from this source, or refuse it while either is
        locked. An allowed attempt counts as a failure until :meth:`succeeded` says
        otherwise."""
        keys = (account_key(login), address_key(source))
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._attempt(keys)
            except IntegrityError:  # a concurrent first attempt inserted a row: count again
                if attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _attempt(self, keys: tuple[str, str]) -> Attempt:
        now = self._clock()
        refused = await self._refusal(keys, now)  # read only: a locked key costs no write
        if refused is not None:
            return refused
        async with self._sessions() as session, session.begin():
            rows = await self._lock_rows(session, sorted(keys), now)
            refused = self._refused(keys, rows, now)
            if refused is not None:
                return refused
            forget = timedelta(seconds=self.policy.forget_after)
            for key in keys:
                row = rows.get(key)
                if row is None:
                    session.add(SignInFailure(key=key, failures=1, last_failure_at=now))
                else:
                    row.failures = 1 if now - row.last_failure_at > forget else row.failures + 1
                    row.last_failure_at = max(now, row.last_failure_at)  # never backwards
        return Attempt(True, keys=keys)

    def _refused(self, keys: tuple[str, str], rows: dict[str, SignInFailure],
                 now: datetime) -> Attempt | None:
        waits = {key: self._locked_for(rows.get(key), now) for key in keys}
        key, wait = max(waits.items(), key=lambda kv: kv[1])
        return Attempt(False, wait, key.split(":", 1)[0], keys) if wait > 0 else None

    async def _refusal(self, keys: tuple[str, str], now: datetime) -> Attempt | None:
        async with self._sessions() as session:
            rows = (await session.scalars(select(SignInFailure)
                                          .where(SignInFailure.key.in_(keys)))).all()
        return self._refused(keys, {row.key: row for row in rows}, now)

    @staticmethod
    async def _lock_rows(session: AsyncSession, keys: Iterable[str],
                         now: datetime) -> dict[str, SignInFailure]:
        """The keys' rows, locked until commit: an UPDATE that changes nothing takes the row
        lock on PostgreSQL and the write lock on SQLite, where SELECT ... FOR UPDATE cannot.
        Missing rows are made first (zero failures, ON CONFLICT DO NOTHING): a row another
        attempt inserts after our UPDATE would otherwise be read unlocked and two attempts
        would both write the same count."""
        keys = list(keys)
        dialect = session.bind.dialect.name if session.bind is not None else ""
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        await session.execute(
            insert(SignInFailure).values([
                {"key": key, "failures": 0, "last_failure_at": now} for key in keys
            ]).on_conflict_do_nothing(index_elements=["key"]))
        await session.execute(update(SignInFailure).where(SignInFailure.key.in_(keys))
                              .values(failures=SignInFailure.failures))
        found = (await session.scalars(select(SignInFailure)
                                       .where(SignInFailure.key.in_(keys)))).all()
        return {row.key: row for row in found}

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the account starts again from zero, and the address gets
        back the attempt counted for it."""
        account, address = attempt.keys
        async with self._sessions() as session, session.begin():
            await session.execute(delete(SignInFailure).where(SignInFailure.key == account))
            await session.execute(update(SignInFailure)
                                  .where(SignInFailure.key == address,
                                         SignInFailure.failures > 0)
                                  .values(failures=SignInFailure.failures - 1))

    async def released(self, attempt: Attempt) -> None:
        """The attempt could not be checked at all (the server was busy): give it back."""
        async with self._sessions() as session, session.begin():
            await session.execute(update(SignInFailure)
                                  .where(SignInFailure.key.in_(attempt.keys),
                                         SignInFailure.failures > 0)
                                  .values(failures=SignInFailure.failures - 1))

    async def retry_after(self, attempt: Attempt) -> float:
        """Seconds until the next attempt on these keys may be made (0: now)."""
        now = self._clock()
        async with self._sessions() as session:
            rows = (await session.scalars(select(SignInFailure)
                                          .where(SignInFailure.key.in_(attempt.keys)))).all()
        return max((self._locked_for(row, now) for row in rows), default=0.0)

    async def failures(self, key: str) -> int:
        async with self._sessions() as session:
            row = await session.get(SignInFailure, key)
        return 0 if row is None else row.failures

    async def forget_old(self) -> int:
        """Delete counts quieter than ``forget_after`` (they no longer lock anything)."""
        before = self._clock() - timedelta(seconds=self.policy.forget_after)
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(SignInFailure)
                                           .where(SignInFailure.last_failure_at < before))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
