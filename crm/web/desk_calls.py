"""What an agent does during and after a call at the desk: cases created, noted, linked,
read and moved on; the consultation's notes and disposition; a blind transfer; closing a call
that ended.

Which cases an agent may open or move on is the need-to-know rule of crm.cases.access (403
need_to_know, audited); every answer that shows a case is audited as a read.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy import select

from crm.audit import log as audit
from crm.cases import access as case_access
from crm.cases import repeats
from crm.cases import service as cases
from crm.consultations import service as consultation_desk
from crm.errors import ConsultationNotFound, InvalidInput, UnknownDepartment
from crm.i18n.phrases import Phrase
from crm.live.desk_hub import AgentDesk, DeskCall
from crm.storage.models import Consultation, Department
from crm.telephony.queue import TelephonyUnavailable
from crm.web import session as web_session
from crm.web.desk_auth import DESK_KEY, agent_required


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}


async def _call_for(request: web.Request, desk: AgentDesk) -> tuple[str, int, DeskCall | None]:
    """The call named in the path, if this agent may work on it: their current call, or one
    they answered (its consultation names them)."""
    deps = request.app[DESK_KEY]
    call_id = request.match_info["call_id"]
    live = deps.hub.call_of(desk.login, call_id)
    if live is not None and live.pop.consultation_id is not None:
        return call_id, live.pop.consultation_id, live
    async with deps.sessions() as session:
        row = (await session.execute(select(Consultation.id, Consultation.agent_id)
                                     .where(Consultation.call_id == call_id))).first()
    if row is None or (live is None and row.agent_id != desk.agent_id):
        raise ConsultationNotFound(Phrase("no call {call} on your desk", {"call": call_id}))
    return call_id, row.id, live


call_for = _call_for
"""The call in the path this agent may work on (for the desk's routes kept elsewhere, e.g.
crm.web.callbacks)."""


def _number(form: dict[str, str], key: str = "case") -> str:
    number = form.get(key, "").replace(" ", "")
    if not number:
        raise InvalidInput(Phrase("give a case number"))
    return cases.check_number(number)


@agent_required(post=True)
async def create_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    call_id, consultation_id, live = await _call_for(request, desk)
    form = await _form(request)
    caller = live.pop.caller_number if live else None
    if caller is None:
        caller = (await consultation_desk.get_consultation(deps.sessions,
                                                           consultation_id)).caller_number
    contact = form.get("contact_phone") or caller
    if form.get("check_repeats") == "1":  # the desk's form asks; "create anyway" does not
        repeats = await _repeats(request, desk, form, [p for p in (caller, contact) if p])
        if repeats:
            return repeats
    view = await cases.create_case(
        deps.sessions, category=form.get("category", ""), description=form.get("description", ""),
        actor=desk.actor, contact_phone=contact,
        resident_phone=caller if caller and cases.PHONE_PATTERN.fullmatch(caller) else None,
        address=form.get("address") or None, numbering_tz=deps.numbering_tz,
        time_limits=deps.time_limits)
    await consultation_desk.link_case(deps.sessions, consultation_id, view.number,
                                      actor=desk.actor)
    await deps.hub.refresh_pop(call_id, linked_case=view.number)
    reveal = live is not None and live.phase == "connected" and contact == caller
    await _audit_case_read(request, desk, view, "desk.create", reveal)
    return web.json_response({"case": view.to_json(viewer_role=desk.role, reveal_phone=reveal)},
                             status=201)


async def _repeats(request: web.Request, desk: AgentDesk, form: dict[str, str],
                   phones: list[str]) -> web.Response | None:
    """409 with the open cases this request may repeat (crm.cases.repeats), shown first so
    the agent links the call to one of them (asked with ``check_repeats=1``)."""
    deps = request.app[DESK_KEY]
    found = await repeats.find_repeats(
        deps.sessions, category=form.get("category", ""),
        phones=[p for p in phones if cases.PHONE_PATTERN.fullmatch(p)],
        address=form.get("address") or None, window_days=deps.repeats.window_days,
        min_similarity=deps.repeats.min_address_similarity)
    if not found:
        return None
    for candidate in found:
        await audit.write(deps.sessions, actor=desk.actor, action="case.read",
                          object_type="case", object_id=candidate.number,
                          detail={"via": "desk.repeats", "phone_revealed": False},
                          **web_session.audit_origin(request))
    return web.json_response(
        {"error": {"code": "possible_repeat",
                   "message": f"{len(found)} open case(s) of this caller may be the same "
                              "matter: link the call to one, or create a new case anyway"},
         "repeats": [c.to_json() for c in found]}, status=409)


@agent_required(post=True)
async def add_note(request: web.Request, desk: AgentDesk) -> web.Response:
    """A note on the call's consultation, or, with ``case``, in that case's history."""
    deps = request.app[DESK_KEY]
    call_id, consultation_id, _ = await _call_for(request, desk)
    form = await _form(request)
    note = form.get("note", "")
    if not note:
        raise InvalidInput(Phrase("the note is empty"))
    if form.get("case"):
        number = _number(form)
        await _check_link(request, desk, call_id)
        await cases.add_note(deps.sessions, number, note, actor=desk.actor)
        await consultation_desk.link_case(deps.sessions, consultation_id, number,
                                          actor=desk.actor)
        await deps.hub.refresh_pop(call_id, linked_case=number)
        return web.json_response({"case": number, "note": note})
    current = await consultation_desk.get_consultation(deps.sessions, consultation_id)
    stamp = f"[{time.strftime('%H:%M', time.localtime())} {desk.display_name}] {note}"
    notes = f"{current.notes}\n{stamp}" if current.notes else stamp
    await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, notes=notes, agent_login=desk.login)
    return web.json_response({"note": stamp})  # what they wrote; the record is read elsewhere


@agent_required(post=True)
async def link_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    call_id, consultation_id, _ = await _call_for(request, desk)
    number = _number(await _form(request))
    await _check_link(request, desk, call_id)
    await consultation_desk.link_case(deps.sessions, consultation_id, number, actor=desk.actor)
    await deps.hub.refresh_pop(call_id, linked_case=number)
    return web.json_response({"linked": number})


@agent_required(post=True)
async def set_disposition(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    _, consultation_id, _ = await _call_for(request, desk)
    disposition = (await _form(request)).get("disposition", "")
    updated = await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, disposition=disposition,
        agent_login=desk.login)
    return web.json_response({"disposition": updated.disposition})


@agent_required(post=True)
async def transfer(request: web.Request, desk: AgentDesk) -> web.Response:
    """Blind transfer of the connected caller to a department's phone."""
    deps = request.app[DESK_KEY]
    call_id, consultation_id, live = await _call_for(request, desk)
    if deps.queue is None:
        raise TelephonyUnavailable(Phrase("no telephony connected to this desk"))
    if live is None or live.phase != "connected" or not live.caller_channel:
        raise InvalidInput(Phrase("only a caller connected to you now can be transferred"))
    code = (await _form(request)).get("department", "")
    async with deps.sessions() as session:
        department = await session.scalar(select(Department).where(Department.code == code))
    if department is None or not department.phone:
        raise UnknownDepartment(Phrase("no department {code} with a phone",
                                       {"code": repr(code)}))
    await deps.queue.blind_transfer(live.caller_channel, department.phone)
    await consultation_desk.update_consultation(
        deps.sessions, consultation_id, actor=desk.actor, disposition="transferred",
        agent_login=desk.login)
    await audit.write(deps.sessions, actor=desk.actor, action="call.transfer",
                      object_type="consultation", object_id=consultation_id,
                      detail={"call_id": call_id, "department": code,
                              "number": department.phone})
    return web.json_response({"transferred_to": department.phone, "department": code})


@agent_required(post=True)
async def close_call(request: web.Request, desk: AgentDesk) -> web.Response:
    closed = await request.app[DESK_KEY].hub.dismiss(desk.login, request.match_info["call_id"])
    if not closed:
        raise InvalidInput(Phrase("only a call that has ended can be closed"))
    return web.json_response({"closed": True})


@agent_required(post=True)
async def change_stage(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    number = cases.check_number(request.match_info["number"])
    form = await _form(request)
    await case_access.check(deps.sessions, number, viewer_of(desk), "change_stage",
                            via="desk.stage", audit_origin=web_session.audit_origin(request))
    view = await cases.change_stage(deps.sessions, number, form.get("stage", ""),
                                    actor=desk.actor, note=form.get("note") or None)
    if desk.call is not None:
        await deps.hub.refresh_pop(desk.call.call_id)
    return web.json_response({"case": await _case_json(request, desk, view, "desk.stage")})


@agent_required()
async def get_case(request: web.Request, desk: AgentDesk) -> web.Response:
    deps = request.app[DESK_KEY]
    number = cases.check_number(request.match_info["number"])
    await case_access.check(deps.sessions, number, viewer_of(desk), "read",
                            via="desk", audit_origin=web_session.audit_origin(request))
    view = await cases.get_case(deps.sessions, number)
    return web.json_response({"case": await _case_json(request, desk, view, "desk")})


def viewer_of(desk: AgentDesk) -> case_access.Viewer:
    """The viewer signed in at this desk, with the call on it (for crm.cases.access)."""
    call = desk.call
    line = None
    if call is not None:
        line = case_access.Line(call.call_id, call.phase, call.pop.caller_number,
                                call.pop.case.number if call.pop.case is not None else None)
    return case_access.Viewer(desk.agent_id, desk.login, desk.role, line)


async def _check_link(request: web.Request, desk: AgentDesk, call_id: str) -> None:
    """Need to know: cases are taken up by linking them to the call the agent is on (or one
    they answered lately), never to a call still ringing or long gone (crm.cases.access)."""
    deps = request.app[DESK_KEY]
    async with deps.sessions() as session:
        row = (await session.execute(
            select(Consultation.agent_id, Consultation.started_at, Consultation.ended_at)
            .where(Consultation.call_id == call_id))).first()
    viewer = viewer_of(desk)
    decision = case_access.may_link(
        viewer, call_id, answered_by_viewer=row is not None and row.agent_id == desk.agent_id,
        started_at=row.started_at if row else None, ended_at=row.ended_at if row else None)
    if not decision.allowed:
        await audit.write(deps.sessions, actor=desk.actor, action="case.link_denied",
                          object_type="consultation", object_id=call_id,
                          detail={"via": "desk"}, **web_session.audit_origin(request))
        raise case_access.NeedToKnow(decision.phrase or decision.reason,
                                     details={"call_id": call_id})


async def _audit_case_read(request: web.Request, desk: AgentDesk, view: cases.CaseView,
                           via: str, phone_revealed: bool) -> None:
    await audit.write(request.app[DESK_KEY].sessions, actor=desk.actor, action="case.read",
                      object_type="case", object_id=view.number,
                      detail={"via": via, "phone_revealed": phone_revealed},
                      **web_session.audit_origin(request))


async def _case_json(request: web.Request, desk: AgentDesk, view: cases.CaseView,
                     via: str) -> dict[str, Any]:
    """The case as this agent may see it (the read is audited): the contact phone in full
    only when it is the caller connected to them."""
    call = desk.call
    reveal = (call is not None and call.phase == "connected"
              and view.contact_phone is not None and view.contact_phone == call.pop.caller_number)
    await _audit_case_read(request, desk, view, via, reveal)
    return view.to_json(viewer_role=desk.role, reveal_phone=reveal)

