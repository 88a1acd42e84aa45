"""The open API's repeat requests (GET /api/cases/repeats): the same caller's open case at
the same place is offered with its count of calls, a look-alike address is not, each
offered case is an audited read, and bad queries are 400."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy import select

from crm.storage.models import AuditLog
from tests.api.conftest import Api

PHONE = "13800138000"


async def test_repeats_of_a_new_request(api: Api) -> None:
    w, r = api.auth("writer"), api.auth("reader")
    made = {}
    for address in ("幸福社区3号楼2单元", "幸福社区13号楼2单元"):
        resp = await api.client.post("/api/cases", headers=w, json={
            "category": "010101", "description": "漏水", "contact_phone": PHONE,
            "address": address})
        assert resp.status == 201, await resp.text()
        made[address] = (await resp.json())["number"]
    query = urlencode({"category": "010101", "phone": PHONE, "address": "幸福社区三号楼二单元"})
    resp = await api.client.get(f"/api/cases/repeats?{query}", headers=r)
    assert resp.status == 200, await resp.text()
    found = (await resp.json())["repeats"]
    assert [(c["number"], c["calls"], c["address_similarity"]) for c in found] == [
        (made["幸福社区3号楼2单元"], 0, 1.0)]
    async with api.sessions() as session:
        audited = (await session.scalars(select(AuditLog.object_id).where(
            AuditLog.action == "case.read", AuditLog.detail["via"].as_string() == "api.repeats"
        ))).all()
    assert audited == [made["幸福社区3号楼2单元"]]
    for bad in ("category=010101", "category=010101&phone=abc", "phone=13800138000&x=1"):
        resp = await api.client.get(f"/api/cases/repeats?{bad}", headers=r)
        assert resp.status == 400, bad
    resp = await api.client.get(f"/api/cases/repeats?{query}", headers=api.auth("calls"))
    assert resp.status == 403
