"""The console's supervision page (督办) over HTTP on SQLite and PostgreSQL: overdue and
due-soon lists with urge counts and reminder marks, a supervisor's rulings on returns and
extensions through its forms (CSRF-checked, audited), and agents kept out."""

from __future__ import annotations

import re
from datetime import timedelta

from crm.audit import log as audit
from crm.cases import dispatch
from crm.cases.service import change_stage, create_case, get_case
from crm.storage.models import utcnow
from tests.storage.test_console_web import Console, console  # noqa: F401  (the fixture)


async def _dispatched(sessions, category: str, age: timedelta) -> str:
    case = await create_case(sessions, category=category, description="路灯坏了",
                             actor="agent:agent1", contact_phone="13800138000",
                             now=utcnow() - age)
    await change_stage(sessions, case.number, "dispatched", actor="agent:agent1")
    return case.number


async def test_supervision_page_lists_and_rulings(console: Console) -> None:  # noqa: F811
    s = console.sessions
    late = await _dispatched(s, "garbage", timedelta(days=5))  # 3-day limit: overdue
    soon = await _dispatched(s, "garbage", timedelta(days=2, hours=12))  # due in 12 h
    await dispatch.urge(s, late, channel="ivr_keys")
    back = await dispatch.request_return(s, late, "不是环卫的事", department="sanitation",
                                         actor="token:sanitation")
    longer = await dispatch.request_extension(
        s, soon, (await get_case(s, soon)).deadline + timedelta(days=2), "等审批",
        department="sanitation", actor="token:sanitation")

    client, csrf = await console.sign_in()
    page = await (await client.get("/console/supervision")).text()
    overdue = page[page.index('id="overdue"'):page.index('id="due-soon"')]
    due = page[page.index('id="due-soon"'):page.index('id="requests"')]
    assert f'id="case-{late}" data-urges="1"' in overdue and soon not in overdue
    assert f'id="case-{soon}"' in due and late not in due
    assert f'id="request-{back.id}" data-kind="return"' in page
    assert f'id="request-{longer.id}" data-kind="extension"' in page
    assert "不是环卫的事" in page

    # reminders: the button sends them, the page marks the cases reminded
    assert (await client.post("/console/supervision/remind", data={})).status == 403
    await client.post("/console/supervision/remind", data={"csrf": csrf})
    page = await (await client.get("/console/supervision")).text()
    assert re.search(rf'id="case-{late}" data-urges="1" data-reminded="overdue"', page)
    assert re.search(rf'id="case-{soon}" data-urges="0" data-reminded="due_soon"', page)
    feed = await dispatch.reminders(s, department="sanitation")
    assert {late, soon} <= {r.case_number for r in feed}

    forged = await client.post(f"/console/supervision/returns/{back.id}/ruling",
                               data={"ruling": "uphold"})
    assert forged.status == 403
    ruled = await client.post(f"/console/supervision/returns/{back.id}/ruling",
                              data={"csrf": csrf, "ruling": "redispatch",
                                    "department": "housing", "note": "归房屋维修"})
    assert ruled.status == 200 and str(ruled.url).endswith("/console/supervision")
    assert (await get_case(s, late)).department_code == "housing"
    again = await client.post(f"/console/supervision/returns/{back.id}/ruling",
                              data={"csrf": csrf, "ruling": "uphold"})
    assert again.status == 409
    before = (await get_case(s, soon)).deadline
    granted = await client.post(f"/console/supervision/extensions/{longer.id}/decision",
                                data={"csrf": csrf, "grant": "yes"})
    assert granted.status == 200
    assert (await get_case(s, soon)).deadline == before + timedelta(days=2)
    bad = await client.post(f"/console/supervision/extensions/{longer.id}/decision",
                            data={"csrf": csrf, "grant": "maybe"})
    assert bad.status == 400
    page = await (await client.get("/console/supervision")).text()
    assert f'id="request-{back.id}"' not in page and f'id="request-{longer.id}"' not in page

    actions = [e.action for e in await audit.entries(s, object_type="case", limit=500)]
    assert {"case.return_ruling", "case.extension_decision", "case.urge"} <= set(actions)


async def test_agents_cannot_open_the_supervision_page(console: Console) -> None:  # noqa: F811
    await console.password("agent1")
    client = await console.client()
    response = await client.get("/console/supervision", allow_redirects=False)
    assert response.status == 303 and "/console/login" in response.headers["Location"]
    refused = await client.post("/console/supervision/remind", data={})
    assert refused.status == 401


async def test_a_department_account_sees_and_acts_on_its_own_cases_only(
        console: Console) -> None:  # noqa: F811
    from crm.agents import accounts as agents
    from tests.storage.test_console_web import PASSWORD, _csrf

    s = console.sessions
    ours = await _dispatched(s, "repair", timedelta(days=8))  # housing's, 7 days: overdue
    theirs = await _dispatched(s, "garbage", timedelta(hours=1))  # sanitation's
    clerk = await agents.create_agent(s, login="housing1", display_name="住房科", role="agent",
                                      password=PASSWORD)
    await dispatch.bind_agent(s, clerk.id, "housing", actor="agent:admin")
    await dispatch.send_reminders(s)

    client = await console.client()
    form = await client.get("/console/login")
    signed = await client.post("/console/login", data={
        "csrf": _csrf(await form.text()), "login": "housing1", "password": PASSWORD})
    assert signed.status == 200 and str(signed.url).endswith("/console/department")
    page = await signed.text()
    csrf = _csrf(page)
    assert f'id="case-{ours}" class="case overdue" data-stage="dispatched" ' \
           'data-reminded="overdue"' in page
    assert theirs not in page
    assert "/console/supervision" not in page  # a department's navigation
    for other in ("/console/supervision", "/console/", "/console/consultations"):
        assert (await client.get(other)).status == 403, other

    act = f"/console/department/cases/{ours}"
    assert (await client.post(f"{act}/accept", data={})).status == 403  # CSRF
    accepted = await client.post(f"{act}/accept", data={"csrf": csrf})
    assert accepted.status == 200 and (await get_case(s, ours)).stage == "in_progress"
    asked = await client.post(f"{act}/extension", data={"csrf": csrf, "until": "2099-01-31",
                                                        "text": "等配件"})
    assert asked.status == 200
    [pending] = await dispatch.list_requests(s, department="housing")
    assert (pending.kind, pending.requested_deadline.year) == ("extension", 2099)
    assert (await client.post(f"{act}/extension", data={
        "csrf": csrf, "until": "soon", "text": "x"})).status == 400
    replied = await client.post(f"{act}/reply", data={"csrf": csrf, "text": "已修好"})
    assert replied.status == 200
    view = await get_case(s, ours)
    assert (view.stage, view.latest_update) == ("resolved", "已修好")

    # another department's case: refused like a missing one, and unchanged
    refused = await client.post(f"/console/department/cases/{theirs}/accept",
                                data={"csrf": csrf})
    assert refused.status == 404
    assert (await get_case(s, theirs)).stage == "dispatched"
    assert (await client.post(f"/console/department/cases/{theirs}/return",
                              data={"csrf": csrf, "text": "x"})).status == 404
    actions = [(e.actor, e.action) for e in await audit.entries(s, object_type="case",
                                                               limit=500)]
    assert ("agent:housing1", "case.dept_accept") in actions
    assert ("agent:housing1", "case.dept_reply") in actions
    assert (await client.post("/console/logout", data={"csrf": csrf})).status == 200
