"""The callback journey in a real browser: a caller gives up in the queue; the agent's desk
lists the pending callback (number masked); when the agent signs in, the callback rings
their phone with a pop that says why, when and how long the resident waited and what they
did in the IVR; the resident's phone answers, and the agent records the outcome. A
supervisor assigns a callback on the console: it rings the assigned agent alone, marked as
theirs on their desk."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.agents import accounts as agents
from crm.agents.auth import mask_phone
from crm.callbacks import service as callbacks
from crm.demo_data import seed_demo
from crm.telephony.events import AgentRinging
from crm.telephony.steps import CallbackDialling, CallbackOutcome, CallbackRequested
from hotline.settings import Settings
from hotline.tools.phones import AgentPhone, ResidentPhone
from tests.integration.test_callbacks import (
    abandon_after_wait,
    callback_hotline,
    step_of,
)
from tests.integration.test_console_browser import PASSWORD as CONSOLE_PASSWORD
from tests.integration.test_console_browser import base_url, open_console
from tests.integration.test_desk_browser import PASSWORD, QUICK_MS, WAIT_MS, open_desk

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = pytest.mark.asterisk


async def test_the_agent_desk_shows_and_completes_a_callback(
        asterisk_bed: Settings, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    number = "13900000011"
    async with (ResidentPhone(asterisk_bed, mode="answer", hold_ms=30_000) as resident,
                callback_hotline(asterisk_bed, tmp_path,
                                 dial=resident.dial_string) as (hotline, watcher)):
        await seed_demo(hotline.settings.database_url)
        await agents.set_password(hotline.sessions, "agent1", PASSWORD)
        call_id = await abandon_after_wait(hotline, watcher, number)
        made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
        await watcher.wait_for(step_of(CallbackDialling), 30)
        async with AgentPhone(hotline.settings, "2001", ring_ms=1500, hold_ms=20_000) as phone:
            page = await open_desk(browser, hotline, "agent1")  # signing in joins the queue
            try:
                pending = page.locator("#callback-list li")
                await expect(pending).to_have_count(1, timeout=QUICK_MS)
                await expect(pending.first).to_contain_text(mask_phone(number, "agent"))
                await expect(pending.first).not_to_contain_text(number)
                card = page.locator("#callback-card")
                await expect(card).to_be_visible(timeout=WAIT_MS)
                await expect(card).to_have_attribute("data-request-id",
                                                     str(made.step.request_id))
                await expect(page.locator("#callback-reason")).to_have_text(
                    "排队时挂机")  # abandoned, named in the agent's language
                await expect(page.locator("#callback-reason")).to_have_attribute(
                    "data-reason", "abandoned")
                await expect(page.locator("#callback-transcript")).to_contain_text(
                    "转至人工坐席（无输入）")
                await phone.wait_answered(15)
                await resident.wait_event("answered", within=15)
                await page.select_option("#callback-outcome", "declined")
                await page.click("#callback-outcome-form button[type=submit]")
                await expect(page.locator("#callback-outcome-form output")).to_have_attribute(
                    "data-state", "ok", timeout=QUICK_MS)
                assert page.js_errors == []
            finally:
                await page.context.close()
                assert hotline.queue_control is not None  # the Asterisk outlives the test
                await hotline.queue_control.leave("PJSIP/2001")
        view = await callbacks.get_callback(hotline.sessions, made.step.request_id)
        assert (view.status, view.outcome) == ("completed", "declined")


async def test_a_callback_a_supervisor_assigns_goes_to_that_agent_alone(
        asterisk_bed: Settings, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    number = "13900000016"
    async with (ResidentPhone(asterisk_bed, mode="answer", hold_ms=30_000) as resident,
                callback_hotline(asterisk_bed, tmp_path,
                                 dial=resident.dial_string) as (hotline, watcher)):
        await seed_demo(hotline.settings.database_url)
        for login in ("agent1", "agent2"):
            await agents.set_password(hotline.sessions, login, PASSWORD)
        await agents.set_password(hotline.sessions, "supervisor1", CONSOLE_PASSWORD)
        call_id = await abandon_after_wait(hotline, watcher, number)
        made = await watcher.wait_for(step_of(CallbackRequested, call_id), 10)
        request_id = made.step.request_id
        first = await watcher.wait_for(step_of(CallbackDialling), 30)

        # The supervisor assigns it to agent2 on the console's callback list: it leaves the
        # general queue and waits for agent2.
        console = await open_console(browser, hotline, "supervisor1")
        try:
            await console.wait_for_url(f"{base_url(hotline)}/console/", timeout=QUICK_MS)
            await console.goto(f"{base_url(hotline)}/console/callbacks")
            item = console.locator(f"#callback-{request_id}")
            await item.locator("select[name=agent]").select_option("agent2")
            await item.locator(".reassign-form button").click()
            await expect(console.locator(f"#callback-{request_id}")).to_contain_text(
                "指派给 Kim Jisoo", timeout=QUICK_MS)
            assert console.js_errors == []
        finally:
            await console.context.close()
        await watcher.wait_for(step_of(CallbackOutcome, first.call_id), 15)

        # agent1 signs in first: sees the callback (not theirs), is not rung. agent2 signs
        # in: theirs ("mine"), their phone rings with the callback's pop.
        async with (AgentPhone(hotline.settings, "2001", ring_ms=1500, hold_ms=20_000),
                    AgentPhone(hotline.settings, "2002", ring_ms=1500,
                               hold_ms=20_000) as phone):
            pages = [await open_desk(browser, hotline, "agent1")]
            try:
                listed = pages[0].locator("#callback-list li")
                await expect(listed).to_have_count(1, timeout=QUICK_MS)
                await expect(listed.first).not_to_have_attribute("data-mine", "true")
                pages.append(await open_desk(browser, hotline, "agent2"))
                await expect(pages[1].locator("#callback-list li").first).to_have_attribute(
                    "data-mine", "true", timeout=QUICK_MS)
                card = pages[1].locator("#callback-card")
                await expect(card).to_be_visible(timeout=WAIT_MS)
                await expect(card).to_have_attribute("data-request-id", str(request_id))
                await phone.wait_answered(15)
                await resident.wait_event("answered", within=15)
                await expect(pages[0].locator("#callback-card")).to_be_hidden()
                assert [p.js_errors for p in pages] == [[] for _ in pages]
            finally:
                for page in pages:
                    await page.context.close()
                assert hotline.queue_control is not None  # the Asterisk outlives the test
                for interface in ("PJSIP/2001", "PJSIP/2002"):
                    await hotline.queue_control.leave(interface)
            done = await hotline.callbacks.wait_finished(
                lambda v: v.id == request_id and v.attempts == 1, 30)
        assert (done.status, done.outcome, done.assigned_agent) == (
            "completed", "reached", "agent2")
        assert [e for e in watcher.events if isinstance(e, AgentRinging)
                and e.extension == "2001"] == []
