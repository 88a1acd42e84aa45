"""Case lookups and the anti-enumeration guard, on SQLite and PostgreSQL, with demo data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from crm.cases.lookup import LookupGuard, find_case_status, is_withheld_number, resident_language
from crm.demo_data import seed_demo
from crm.storage.models import Case, LookupFailure, Resident
from tests.scripted_ivr import keys, run_scripted_call


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


# -- withheld numbers and the case's own limit ---------------------------------------------------
WITHHELD = (None, "", "anonymous", "Anonymous", "<unknown>", "restricted", "0000000000", "+0")


def test_which_numbers_are_withheld() -> None:
    assert all(is_withheld_number(n) for n in WITHHELD)
    assert not any(is_withheld_number(n) for n in ("13800138000", "+8613800138000", "1001",
                                                   " 13800138000 "))


async def test_withheld_callers_never_share_one_bucket(sessions) -> None:
    guard = LookupGuard(sessions)
    for number in WITHHELD:
        for _ in range(guard.limit + 1):
            await guard.record_failure(number, "invalid_number")
    assert [await guard.blocked(n) for n in WITHHELD] == [False] * len(WITHHELD)
    async with sessions() as s:
        assert (await s.scalars(select(LookupFailure))).all() == []
    # Known numbers keep their hourly limit.
    for _ in range(guard.limit):
        await guard.record_failure("13911112222", "invalid_number")
    assert await guard.blocked("13911112222") and not await guard.blocked(None)


async def test_failed_verifications_close_digit_verification_of_that_case(sessions) -> None:
    guard = LookupGuard(sessions, verification_limit=3)
    for caller in (None, "anonymous", "13911112222"):
        assert not await guard.verification_locked("26112200014")
        await guard.record_failure(caller, "verification_failed", case="26112200014")
    assert await guard.verification_locked("26112200014")
    assert not await guard.verification_locked("26112200022")
    assert not await guard.blocked(None)  # the callers are not locked out of anything
    async with sessions() as s:
        keys = sorted((await s.scalars(select(LookupFailure.phone))).all())
    assert keys == ["13911112222", *["case:26112200014"] * 3]


async def test_old_verification_failures_expire(sessions) -> None:
    guard = LookupGuard(sessions, verification_limit=2)
    old = datetime.now(UTC) - guard.verification_window - timedelta(minutes=1)
    async with sessions() as s, s.begin():
        s.add_all([LookupFailure(phone="case:26112200014", reason="verification_failed", at=old)
                   for _ in range(3)])
    assert not await guard.verification_locked("26112200014")
    # Rows within twice the longest window are kept by the clean-up, older ones go.
    ancient = datetime.now(UTC) - 3 * guard.verification_window
    async with sessions() as s, s.begin():
        s.add(LookupFailure(phone="case:26112200014", reason="verification_failed", at=ancient))
    await guard.record_failure("13911112222", "invalid_number")
    async with sessions() as s:
        ats = (await s.scalars(select(LookupFailure.at)
                               .where(LookupFailure.phone == "case:26112200014"))).all()
    assert len(ats) == 3


async def _zhang_san_case(sessions, db_url) -> str:
    await seed_demo(db_url)
    async with sessions() as s:
        return await s.scalar(select(Case.number).join(Resident).where(Resident.name == "张三"))


def _told(call) -> dict:
    [told] = [s.detail for s in call.steps if s.kind == "told"]
    return told


async def test_one_withheld_caller_failing_does_not_lock_out_another(sessions, db_url) -> None:
    """Through the IVR: withheld callers fail again and again; the next withheld caller still
    looks up a case and verifies with the right digits."""
    number = await _zhang_san_case(sessions, db_url)
    guard = LookupGuard(sessions)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    for caller in ("anonymous", None, "anonymous"):  # six failures: a shared bucket closes
        hostile = await run_scripted_call(sessions, guard, caller, {
            "greeting": keys("1"),
            "ask_case_number": keys(wrong + "#"), "case_number_invalid": keys(number + "#"),
            "confirm_case_number": keys("1"), "ask_phone_last4": keys("0000"),
            "after_status_menu": keys("3")})
        assert _told(hostile)["verified"] is False
        assert [s.kind for s in hostile.steps].count("case_lookup") == 1
    honest = await run_scripted_call(sessions, guard, "anonymous", {
        "greeting": keys(number + "#"),  # keyed at the greeting: no menu on the way
        "confirm_case_number": keys("1"), "ask_phone_last4": keys("8000"),
        "after_status_menu": keys("3")})
    assert "lookup_blocked" not in [s.kind for s in honest.steps]
    assert _told(honest)["verified"] is True and "status_full" in honest.caller.prompts
    async with sessions() as s:
        phones = set((await s.scalars(select(LookupFailure.phone))).all())
    assert phones == {f"case:{number}"}  # counted against the case, never a shared caller


async def test_a_withheld_caller_gets_an_agent_after_three_failures_in_the_call(
        sessions, db_url) -> None:
    number = await _zhang_san_case(sessions, db_url)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    call = await run_scripted_call(sessions, LookupGuard(sessions), None, {
        "greeting": keys(wrong + "#"), "case_number_invalid": keys(wrong + "#" + wrong + "#")})
    assert [s.kind for s in call.steps].count("case_number_invalid") == 3
    assert [s.detail for s in call.steps if s.kind == "route"] == [
        {"route": "agent", "reason": "invalid numbers"}]
    assert call.caller.hung_up == "routed to agent"


async def test_a_case_with_many_failed_verifications_is_not_verified_by_digits(
        sessions, db_url) -> None:
    number = await _zhang_san_case(sessions, db_url)
    guard = LookupGuard(sessions, verification_limit=2)
    for _ in range(2):
        await guard.record_failure(None, "verification_failed", case=number)
    script = {"greeting": keys("1"),
              "ask_case_number": keys(number + "#"), "confirm_case_number": keys("1"),
              "ask_phone_last4": keys("8000"), "after_status_menu": keys("3")}
    digits = await run_scripted_call(sessions, guard, "13911112222", dict(script))
    assert "ask_phone_last4" not in digits.caller.prompts
    assert _told(digits)["verified"] is False
    own_phone = await run_scripted_call(sessions, guard, "13800138000", dict(script))
    assert _told(own_phone)["verified"] is True
