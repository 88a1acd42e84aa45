"""The supervisor console's records: drill-down lists of surveys and consultations (and their
CSV export), a consultation's whole record with its recording, a resident's record, the
low-score follow-up queue, and the audit log (admins).

What a supervisor reads about residents is audited: a list shown, a record viewed, a CSV
exported (the recording's playback is audited by crm.web.console.recordings).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crm.audit import log as audit
from crm.consultations import service as consultation_desk
from crm.errors import InvalidInput
from crm.i18n.labels import LABELS
from crm.i18n.phrases import Phrase
from crm.live.screen_pop import summarise_ivr
from crm.reports import audit_log
from crm.reports import satisfaction as reports
from crm.reports.audit_log import CSV_AUDIT_COLUMNS, AuditFilter, audit_entries
from crm.reports.residents import resident_of_consultation, resident_record
from crm.storage.recordings import survey_comment_file
from crm.surveys import service as surveys
from crm.web import locale
from crm.web.console.auth import PREFIX, ConsoleUser, console_route
from crm.web.console.common import (
    CONSOLE_KEY,
    audit_export,
    csv_response,
    export_filter,
    href,
    local,
    parse_at,
    record_id,
    render_page,
    report_filter,
    span,
    today,
    when,
)
from crm.web.console.recordings import recording_of
from crm.web.console.supervision import directory_names


def _next_page(path: str, f: reports.ReportFilter | AuditFilter, rows: list[Any]) -> str | None:
    """The link to the next page of a list, when this page is full."""
    return href(path, f.query(page=f.page + 1)) if len(rows) == reports.PAGE_SIZE else None


# -- surveys and consultations ------------------------------------------------------------------
@console_route(page=True)
async def surveys_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = report_filter(request)
    rows = await reports.list_surveys(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="survey.search",
                      object_type="survey",
                      detail={"query": f.query(), "ids": [r.id for r in rows], "via": "console"})
    return render_page(request, "console/surveys.html", user, "surveys", f=f, rows=rows,
                       choices=await reports.filter_choices(deps.sessions),
                       csv_href=href("/surveys.csv", f.query(page=1)),
                       next_href=_next_page("/surveys", f, rows))


@console_route()
async def surveys_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = export_filter(report_filter(request))
    rows = await reports.list_surveys(deps.sessions, f, deps.tz, limit=reports.EXPORT_LIMIT)
    await audit_export(deps, user, "survey", f.query(), len(rows))
    return csv_response(f"surveys_{span(f)}", reports.CSV_SURVEY_COLUMNS, rows)


@console_route(page=True)
async def consultations_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = report_filter(request)
    rows = await reports.list_consultations(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="consultation.search",
                      object_type="consultation",
                      detail={"query": f.query(), "ids": [r.id for r in rows], "via": "console"})
    return render_page(request, "console/consultations.html", user, "consultations", f=f,
                       rows=rows, choices=await reports.filter_choices(deps.sessions),
                       outcomes=[(o, "") for o in reports.OUTCOMES],
                       csv_href=href("/consultations.csv", f.query(page=1)),
                       next_href=_next_page("/consultations", f, rows))


@console_route()
async def consultations_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = export_filter(report_filter(request))
    rows = await reports.list_consultations(deps.sessions, f, deps.tz,
                                            limit=reports.EXPORT_LIMIT)
    await audit_export(deps, user, "consultation", f.query(), len(rows))
    return csv_response(f"consultations_{span(f)}", reports.CSV_CONSULTATION_COLUMNS, rows)


@console_route(page=True)
async def consultation_page(request: web.Request, user: ConsoleUser) -> web.Response:
    """The whole record of one call: the IVR transcript, the agent's notes and disposition,
    the survey answers, and the recording."""
    deps = request.app[CONSOLE_KEY]
    consultation_id = record_id(request)
    detail = await consultation_desk.get_consultation(deps.sessions, consultation_id)
    resident_id = await resident_of_consultation(deps.sessions, consultation_id)
    call_surveys = await surveys.list_surveys(deps.sessions, call_id=detail.call_id)
    ivr = summarise_ivr(detail.steps)
    transcript = [(when(local(deps, parse_at(line.at)), "%H:%M:%S"), line)
                  for line in ivr.transcript]
    call_id, announced = await recording_of(deps.sessions, consultation_id)
    recorded = (deps.recordings is not None
                and deps.recordings.locate(call_id, announced) is not None)
    playable = {s.id for s in call_surveys
                if survey_comment_file(deps.survey_comments, s.comment_path) is not None}
    await audit.write(deps.sessions, actor=user.actor, action="consultation.read",
                      object_type="consultation", object_id=consultation_id,
                      detail={"call_id": detail.call_id, "resident": resident_id,
                              "via": "console"})
    return render_page(request, "console/consultation.html", user, "consultations", c=detail,
                       ivr=ivr, transcript=transcript, surveys=call_surveys, recorded=recorded,
                       playable_comments=playable,
                       announced=announced, resident_id=resident_id,
                       started=when(local(deps, detail.started_at)),
                       ended=when(local(deps, detail.ended_at)))


@console_route(page=True)
async def resident_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    resident_id = record_id(request)
    record = await resident_record(deps.sessions, resident_id, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="resident.read",
                      object_type="resident", object_id=resident_id,
                      detail={"consultations": [c.id for c in record.consultations],
                              "via": "console"})
    return render_page(request, "console/resident.html", user, "consultations", r=record)


# -- the follow-up queue ------------------------------------------------------------------------
FOLLOW_UP_COLUMNS = ("id", "survey_id", "score", "phone", "case_numbers", "agent_login",
                     "created_at", "status", "assignee_login", "assigned_at", "assigned_by",
                     "closed_at", "closed_by", "note")


def _follow_up_query(request: web.Request, user: ConsoleUser) -> tuple[str | None, str | None]:
    status = request.query.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise InvalidInput(Phrase("status must be open, closed or all"))
    assignee = request.query.get("assignee") or None
    if assignee == "me":
        assignee = user.login
    if assignee is not None and not reports.LOGIN_PATTERN.fullmatch(assignee):
        raise InvalidInput(Phrase("assignee is not a login"))
    return (None if status == "all" else status), assignee


def _actor_login(actor: str | None) -> str:
    """Who acted, as the page shows them: ``agent:chen`` -> ``chen``."""
    kind, _, name = (actor or "").partition(":")
    return name or kind


@console_route(page=True)
async def follow_ups_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    status, assignee = _follow_up_query(request, user)
    items = await surveys.list_follow_ups(deps.sessions, status=status,
                                                assignee_login=assignee, limit=500)
    consultations = await reports.consultations_of_surveys(deps.sessions,
                                                                 [i.survey_id for i in items])
    await audit.write(deps.sessions, actor=user.actor, action="survey_follow_up.search",
                      object_type="survey_follow_up",
                      detail={"status": status, "assignee": assignee,
                                    "ids": [i.id for i in items], "via": "console"})
    query = {k: v for k, v in request.query.items() if k in ("status", "assignee")}
    return render_page(request, "console/follow_ups.html", user, "follow-ups", items=items,
                       consultations=consultations, status=request.query.get("status", "open"),
                       assignee=request.query.get("assignee", ""),
                       choices=await reports.filter_choices(deps.sessions),
                       local=lambda v: when(local(deps, v), "%Y-%m-%d %H:%M"),
                       actor=_actor_login,
                       csv_href=href("/follow-ups.csv", query), back=href("/follow-ups", query))


@console_route()
async def follow_ups_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    status, assignee = _follow_up_query(request, user)
    items = await surveys.list_follow_ups(deps.sessions, status=status,
                                          assignee_login=assignee, limit=reports.EXPORT_LIMIT)
    await audit_export(deps, user, "survey_follow_up",
                        {"status": status or "all", "assignee": assignee or ""}, len(items))
    return csv_response(f"follow-ups_{status or 'all'}", FOLLOW_UP_COLUMNS, items)


def _back(form: Any) -> str:
    """Where a follow-up form returns to: a console follow-up list, nothing else."""
    back = str(form.get("back", ""))
    return back if back.startswith(f"{PREFIX}/follow-ups") and "//" not in back \
        else f"{PREFIX}/follow-ups"


@console_route(page=True, post=True)
async def assign_follow_up(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    item = await surveys.assign_follow_up(
        deps.sessions, record_id(request), agent_login=str(form.get("assignee", "")).strip(),
        actor=user.actor)
    raise web.HTTPSeeOther(f"{_back(form)}#follow-up-{item.id}")


@console_route(page=True, post=True)
async def close_follow_up(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    item = await surveys.close_follow_up(deps.sessions, record_id(request),
                                         note=str(form.get("note", "")), actor=user.actor)
    raise web.HTTPSeeOther(f"{_back(form)}#follow-up-{item.id}")


# -- the audit log (admins) ---------------------------------------------------------------------
def _audit_filter(request: web.Request) -> AuditFilter:
    return AuditFilter.from_query(request.query, today=today(request.app[CONSOLE_KEY]))


@console_route("admin", page=True)
async def audit_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _audit_filter(request)
    rows = await audit_entries(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="audit.read", object_type="audit",
                      detail={"query": f.query(), "rows": len(rows), "via": "console"})
    t = locale.chosen(request, user.locale)
    departments, _ = await directory_names(request, user)

    def label(kind: str, code: str) -> str:
        return departments.get(code, code) if kind == "department" else t.label(kind, code)

    return render_page(request, "console/audit.html", user, "audit", f=f, rows=rows,
                       detail_pairs=lambda d: audit_log.detail_pairs(d, label),
                       actor_parts=audit_log.actor_parts,
                       action_codes=sorted(LABELS["audit_action"]),
                       object_codes=sorted(LABELS["audit_object"]),
                       csv_href=href("/audit.csv", f.query(page=1)),
                       next_href=_next_page("/audit", f, rows))


@console_route("admin")
async def audit_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _audit_filter(request)
    f = AuditFilter(f.since, f.until, f.actor, f.action, f.object_type, f.object_id)
    rows = await audit_entries(deps.sessions, f, deps.tz, limit=reports.EXPORT_LIMIT)
    await audit_export(deps, user, "audit", f.query(), len(rows))
    return csv_response(f"audit_{span(f)}", CSV_AUDIT_COLUMNS, rows)
