"""Case lookups and the anti-enumeration guard, on SQLite and PostgreSQL, with demo data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from crm.case_lookup import LookupGuard, find_case_status, resident_language
from crm.demo_data import seed_demo
from crm.models import Case, LookupFailure


async def test_demo_cases_are_found_in_the_callers_language(sessions, db_url) -> None:
    assert await seed_demo(db_url) > 0
    assert await seed_demo(db_url) == 0  # idempotent
    async with sessions() as s:
        number = (await s.scalars(select(Case.number).order_by(Case.id))).first()
    status = await find_case_status(sessions, number, "en")
    assert status is not None and status.stage == "in_progress"
    assert status.department == "Housing Office" and status.contact_phone == "13800138000"
    assert (await find_case_status(sessions, number, "cmn")).department == "住房保障科"
    assert await find_case_status(sessions, "00000000000") is None


async def test_resident_language_by_any_of_their_phones(sessions, db_url) -> None:
    await seed_demo(db_url)
    assert await resident_language(sessions, "13600136000") == "ko"
    assert await resident_language(sessions, "02512345678") == "cmn"
    assert await resident_language(sessions, "19999999999") is None
    assert await resident_language(sessions, None) is None


async def test_guard_blocks_after_five_failures_in_the_window(sessions) -> None:
    guard = LookupGuard(sessions)
    for _ in range(4):
        await guard.record_failure("13911112222", "invalid_number")
    assert not await guard.blocked("13911112222")
    await guard.record_failure("13911112222", "verification_failed")
    assert await guard.blocked("13911112222")
    assert not await guard.blocked("13800138000")


async def test_old_failures_do_not_count(sessions) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    async with sessions() as s, s.begin():
        s.add_all([LookupFailure(phone="555", reason="x", at=old) for _ in range(6)])
    assert not await LookupGuard(sessions).blocked("555")
