"""Passwords, roles and what each role may see of residents' data.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile by default);
verification is constant-time and tells the caller when a stored hash should be upgraded
because the parameters changed since it was made.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from crm.errors import InvalidInput, PermissionDenied

ROLES = ("agent", "supervisor", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}

DEFAULT_HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
MIN_PASSWORD_LENGTH = 8


# -- passwords --------------------------------------------------------------------------------
def hash_password(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
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


# -- roles ------------------------------------------------------------------------------------
def check_role_name(role: str) -> str:
    if role not in _RANK:
        raise InvalidInput(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    return role


def has_role(role: str, minimum: str) -> bool:
    """True when ``role`` is ``minimum`` or above it (agent < supervisor < admin)."""
    return role in _RANK and _RANK[role] >= _RANK[check_role_name(minimum)]


def require_role(role: str, minimum: str) -> None:
    if not has_role(role, minimum):
        raise PermissionDenied(f"this needs the {minimum} role or above")


# -- what a role may see ----------------------------------------------------------------------
def mask_phone(phone: str | None, role: str, *, reveal: bool = False) -> str | None:
    """Phone numbers in full for supervisors and admins; for agents (and anything unknown) the
    middle is hidden, 13800138000 -> 138****8000, unless ``reveal`` (the caller currently
    connected to this agent)."""
    if phone is None or reveal or has_role(role, "supervisor"):
        return phone
    n = len(phone)
    if n >= 8:
        return phone[:3] + "*" * (n - 7) + phone[-4:]
    keep = min(2, n // 2)
    return "*" * (n - keep) + phone[n - keep:]


def mask_id_number(id_number_or_last4: str | None) -> str | None:
    """Resident ID numbers are only ever shown as their last four: ****2316."""
    if not id_number_or_last4:
        return None
    return "****" + id_number_or_last4[-4:]
