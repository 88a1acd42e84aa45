"""Passwords, roles and what each role may see of residents' data.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile by default);
verification is constant-time and tells the caller when a stored hash should be upgraded
because the parameters changed since it was made.

argon2 is deliberately slow and memory-hard, so services run it on threads of its own
(:class:`PasswordWork`: one or two workers and a short waiting line), never on the event loop
and never on the loop's default executor, which the IVR's speech and prompt files use: a burst
of sign-ins then waits for itself, or is turned away, but cannot hold up a call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from crm.errors import HotlineError, InvalidInput
from crm.i18n.phrases import Labels, Phrase

ROLES = ("agent", "supervisor", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

DEFAULT_HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
MIN_PASSWORD_LENGTH = 8


# -- passwords --------------------------------------------------------------------------------
def hash_password(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(Phrase("a password needs at least {min} characters",
                                  {"min": MIN_PASSWORD_LENGTH}))
    return hasher.hash(password)


@dataclass(frozen=True)
class PasswordCheck:
    ok: bool
    new_hash: str | None = None
    """Set when the password was right but the stored hash used outdated parameters: store
    this one instead."""


_dummy_hashes: dict[tuple[int, int, int], str] = {}


def _dummy_hash(hasher: PasswordHasher) -> str:
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = hasher.hash("not-a-real-password")
    return _dummy_hashes[key]


def verify_password(stored_hash: str | None, password: str, *,
                    hasher: PasswordHasher = DEFAULT_HASHER) -> PasswordCheck:
    """Check ``password`` against ``stored_hash``. With no stored hash (unknown login, account
    without a password) a dummy hash is verified anyway, so timing does not tell them apart."""
    if stored_hash is None:
        try:
            hasher.verify(_dummy_hash(hasher), password)
        except VerificationError:
            pass
        return PasswordCheck(False)
    try:
        hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(False)
    if hasher.check_needs_rehash(stored_hash):
        return PasswordCheck(True, hasher.hash(password))
    return PasswordCheck(True)


# -- the threads that run argon2 ------------------------------------------------------------
THREAD_PREFIX = "argon2"
T = TypeVar("T")


class PasswordWorkBusy(HotlineError):
    """More password checks are waiting than the waiting line holds: try again shortly."""

    code = "busy"


class PasswordWork:
    """A bounded executor for argon2: ``workers`` threads named ``argon2_N`` and at most
    ``max_waiting`` jobs queued behind them; beyond that :class:`PasswordWorkBusy`. Threads
    start on first use; :meth:`close` stops them (the owner calls it at shutdown)."""

    def __init__(self, *, workers: int = 1, max_waiting: int = 16) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be at least 1 and max_waiting not negative")
        self.workers = workers
        self.max_waiting = max_waiting
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Jobs running or waiting."""
        return self._in_flight

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("password work is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers,
                                                    thread_name_prefix=THREAD_PREFIX)
            return self._executor

    async def run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        with self._lock:
            if self._in_flight >= self.workers + self.max_waiting:
                raise PasswordWorkBusy(Phrase("sign-in is busy; try again in a few seconds"))
            self._in_flight += 1
        try:
            pool = self._pool()
            return await asyncio.get_running_loop().run_in_executor(
                pool, lambda: fn(*args, **kwargs))
        finally:
            with self._lock:
                self._in_flight -= 1

    async def hash(self, password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
        return await self.run(hash_password, password, hasher=hasher)

    async def verify(self, stored_hash: str | None, password: str, *,
                     hasher: PasswordHasher = DEFAULT_HASHER) -> PasswordCheck:
        return await self.run(verify_password, stored_hash, password, hasher=hasher)

    def close(self) -> None:
        """Stop the threads; jobs not started yet are cancelled. Idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


_default_work: PasswordWork | None = None
_default_work_lock = threading.Lock()


def default_password_work() -> PasswordWork:
    """The process's shared argon2 executor (one thread), for callers that own none, such as
    the command line. Services make their own and close it."""
    global _default_work
    with _default_work_lock:
        if _default_work is None or _default_work._closed:
            _default_work = PasswordWork(workers=1)
        return _default_work


# -- roles ------------------------------------------------------------------------------------
def check_role_name(role: str) -> str:
    if role not in _RANK:
        raise InvalidInput(Phrase("unknown role {role}; valid roles: {roles}",
                                  {"role": repr(role), "roles": Labels("role", tuple(ROLES))}))
    return role


def has_role(role: str, minimum: str) -> bool:
    """True when ``role`` is ``minimum`` or above it (agent < supervisor < admin)."""
    return role in _RANK and _RANK[role] >= _RANK[check_role_name(minimum)]


# -- what a role may see ----------------------------------------------------------------------
def mask_phone(phone: str | None, role: str, *, reveal: bool = False) -> str | None:
    """Phone numbers in full for supervisors and admins; for agents (and anything unknown) only
    the first three characters show, 13800138000 -> 138********, unless ``reveal`` (the caller
    currently connected to this agent). The last four digits are the IVR's verification
    factor, so no mask ever shows any of them (shorter numbers show fewer leading ones)."""
    if phone is None or reveal or has_role(role, "supervisor"):
        return phone
    keep = max(0, min(3, len(phone) - 4))
    return phone[:keep] + "*" * (len(phone) - keep)


def mask_id_number(id_number_or_last4: str | None) -> str | None:
    """Resident ID numbers are only ever shown as their last four: ****2316."""
    if not id_number_or_last4:
        return None
    return "****" + id_number_or_last4[-4:]
