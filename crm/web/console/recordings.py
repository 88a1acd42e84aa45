"""Call recordings for supervisors: a consultation's recording, streamed to the browser.

The files are found by crm.storage.recordings: a call's recording in Asterisk's monitor
directory (as this host reaches it), a spoken survey comment in the survey comment directory,
and nothing outside them.

Only supervisors and admins may listen. Every request for the audio is written to the audit
log (``recording.play`` / ``survey_comment.play`` when playback starts, ``recording.range`` /
``survey_comment.range`` for the further pieces a player fetches while seeking). Range
requests are answered by aiohttp's FileResponse.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from aiohttp import hdrs, web
from sqlalchemy import select

from crm.audit import log as audit
from crm.errors import NotFound
from crm.i18n.phrases import Phrase
from crm.storage.db import SessionFactory
from crm.storage.models import Consultation, ConsultationStep
from crm.storage.recordings import CONTENT_TYPES, RecordingStore, survey_comment_file
from crm.surveys import service as surveys
from crm.web.console.auth import SESSIONS_KEY, ConsoleUser, console_route

log = logging.getLogger(__name__)

class RecordingNotFound(NotFound):
    code = "recording_not_found"


SURVEY_COMMENTS_KEY = web.AppKey("survey_comments", Path)
"""The directory of spoken survey comments, when this server reaches it."""


STORE_KEY = web.AppKey("recording_store", RecordingStore)


async def recording_of(sessions: SessionFactory, consultation_id: int) -> tuple[str, str | None]:
    """The consultation's call id and the recording file announced for it (if any)."""
    async with sessions() as session:
        call_id = await session.scalar(select(Consultation.call_id)
                                       .where(Consultation.id == consultation_id))
        if call_id is None:
            raise NotFound(Phrase("no consultation {id}", {"id": consultation_id}))
        detail = await session.scalar(
            select(ConsultationStep.detail)
            .where(ConsultationStep.consultation_id == consultation_id,
                   ConsultationStep.kind == "recording")
            .order_by(ConsultationStep.id.desc()).limit(1))
    announced = detail.get("file") if isinstance(detail, dict) else None
    return call_id, announced if isinstance(announced, str) else None


def _is_start(range_header: str | None) -> bool:
    """A request from the start of the file (a player starting playback)."""
    if not range_header:
        return True
    return bool(re.fullmatch(r"\s*bytes=0-\d*\s*", range_header))


async def _send_audio(request: web.Request, user: ConsoleUser, path: Path, *, kind: str,
                      object_type: str, object_id: int, detail: dict[str, object]
                      ) -> web.StreamResponse:
    """Stream ``path``, auditing the request (not a HEAD) as ``<kind>.play``/``.range``."""
    range_header = request.headers.get(hdrs.RANGE)
    if request.method != "HEAD":
        await audit.write(request.app[SESSIONS_KEY], actor=user.actor,
                          action=f"{kind}.play" if _is_start(range_header) else f"{kind}.range",
                          object_type=object_type, object_id=object_id,
                          detail={**detail, "file": path.name, "range": range_header,
                                  "via": "console"})
        log.info("%s %s %d played by %s (%s)", kind, object_type, object_id, user.login,
                 range_header or "whole file")
    return web.FileResponse(path, headers={
        hdrs.CONTENT_TYPE: CONTENT_TYPES[path.suffix.lower()],
        hdrs.CACHE_CONTROL: "no-store",
        hdrs.CONTENT_DISPOSITION: f'inline; filename="{path.name}"'})


@console_route()
async def get_survey_comment(request: web.Request, user: ConsoleUser) -> web.StreamResponse:
    survey_id = int(request.match_info["id"])
    if survey_id > 2**31 - 1:
        raise NotFound(Phrase("no survey {id}", {"id": survey_id}))
    survey = await surveys.get_survey(request.app[SESSIONS_KEY], survey_id)
    path = survey_comment_file(request.app.get(SURVEY_COMMENTS_KEY), survey.comment_path)
    if path is None:
        raise RecordingNotFound(Phrase("no spoken comment of survey {id} here",
                                       {"id": survey_id}))
    return await _send_audio(request, user, path, kind="survey_comment", object_type="survey",
                             object_id=survey_id,
                             detail={"consultation": survey.consultation_id})


@console_route()
async def get_recording(request: web.Request, user: ConsoleUser) -> web.StreamResponse:
    consultation_id = int(request.match_info["id"])
    store = request.app.get(STORE_KEY)
    sessions = request.app[SESSIONS_KEY]
    if consultation_id > 2**31 - 1:
        raise NotFound(Phrase("no consultation {id}", {"id": consultation_id}))
    call_id, announced = await recording_of(sessions, consultation_id)
    path = store.locate(call_id, announced) if store is not None else None
    if path is None:
        raise RecordingNotFound(Phrase("no recording of consultation {id} here",
                                       {"id": consultation_id}))
    return await _send_audio(request, user, path, kind="recording",
                             object_type="consultation", object_id=consultation_id,
                             detail={"call_id": call_id})
