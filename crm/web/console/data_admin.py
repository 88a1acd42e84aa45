"""Data administration (admins): departments, case categories, agents and residents as CSV.

``/console/data`` offers, for each kind, a download (the export of crm.directory.csv_io,
audited like the console's other CSV exports) and an upload form (the import: all or
nothing; on errors the page lists every problem with its line and field and nothing is
written; else how many records were added and updated). Every import, refused or done, is
audited. Agents' files never carry passwords: new accounts need one from
``hotline agents set-password``.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from aiohttp import hdrs, web

from crm.audit import log as audit
from crm.directory.agents_csv import NO_PASSWORD_NOTE
from crm.directory.columns import COLUMNS, REQUIRED, Kind
from crm.directory.csv_io import CsvImportError, ImportResult, export_csv, import_csv
from crm.i18n.phrases import N_, Phrase
from crm.web import locale
from crm.web.console.auth import ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY, audit_export, render_page
from crm.web.session import audit_origin

KINDS: tuple[str, ...] = ("departments", "categories", "agents", "residents")
"""The kinds, in the order the page shows them (departments before the categories that name
them); their names are the "data_kind" labels."""
KIND_PATTERN = "|".join(KINDS)
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
"""An uploaded file's limit (the web app's bodies are otherwise 1 MiB at most; a city's
residents run to several)."""
NOTES: dict[str, str] = {
    "categories": N_("parent: the parent category's code; time_limit e.g. 2h, 24h, 7d, 15d; "
                     "department: a department's code."),
    "agents": N_("languages ';'-separated (cmn, en, ko): they route calls. Never passwords: "
                 "new accounts have no password and cannot sign in until given one "
                 "(hotline agents set-password LOGIN)."),
    "residents": N_("phones ';'-separated. Personal data: the download is audited."),
}
"""What each kind's columns mean (message ids: the page shows them translated)."""
SET_PASSWORD_COMMAND = NO_PASSWORD_NOTE.rpartition(": ")[2]
"""The command that gives a new account its password."""


def _kind(request: web.Request) -> Kind:
    return cast("Kind", request.match_info["kind"])


def _page(request: web.Request, user: ConsoleUser, status: int = 200, *,
          kind: str | None = None, problems: Sequence[str | Phrase] | None = None,
          result: ImportResult | None = None, file_name: str = "") -> web.Response:
    response = render_page(request, "console/data_admin.html", user, "data", kinds=KINDS,
                           columns=COLUMNS, required=REQUIRED, notes=NOTES, kind=kind,
                           problems=problems or [], result=result, file_name=file_name,
                           set_password_command=SET_PASSWORD_COMMAND,
                           max_mib=MAX_UPLOAD_BYTES // (1024 * 1024))
    response.set_status(status)
    return response


@console_route("admin", page=True)
async def data_page(request: web.Request, user: ConsoleUser) -> web.Response:
    return _page(request, user)


@console_route("admin")
async def data_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    """The kind's export, the import's own columns (a byte-order mark for spreadsheets)."""
    deps = request.app[CONSOLE_KEY]
    kind = _kind(request)
    out = io.StringIO()
    out.write("\ufeff")
    count = await export_csv(deps.sessions, kind, out)
    await audit_export(deps, user, kind, {}, count)
    return web.Response(body=out.getvalue().encode(), content_type="text/csv", charset="utf-8",
                        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{kind}.csv"'})


@console_route("admin", page=True, post=True)
async def data_import(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    kind = _kind(request)
    upload = (await request.post()).get("file")
    if not isinstance(upload, web.FileField):
        return _page(request, user, 422, kind=kind,
                     problems=[Phrase("no file chosen: pick a CSV file to import")])
    name = (upload.filename or "upload.csv")[:128]
    try:
        text = upload.file.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _page(request, user, 422, kind=kind, file_name=name, problems=[
            Phrase("not UTF-8 text (byte {byte}): save the sheet as CSV UTF-8",
                   {"byte": exc.start})])
    origin = audit_origin(request)
    try:
        result = await import_csv(deps.sessions, kind, io.StringIO(text), source=name,
                                  importer=user.login)
    except CsvImportError as exc:
        await audit.write(deps.sessions, actor=user.actor, action=f"{kind}.import_refused",
                          object_type=kind, detail={"file": name, "via": "console",
                                                    "problems": len(exc.problems)}, **origin)
        t = locale.chosen(request, user.locale)  # the problems in the reader's language
        return _page(request, user, 422, kind=kind, file_name=name,
                     problems=[t.phrase(p) for p in exc.phrases])
    await audit.write(deps.sessions, actor=user.actor, action=f"{kind}.import",
                      object_type=kind, detail={"file": name, "via": "console",
                                                "created": result.created,
                                                "updated": result.updated}, **origin)
    return _page(request, user, kind=kind, file_name=name, result=result)


def _larger_body(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler, given bodies up to MAX_UPLOAD_BYTES (its attributes kept: html_errors)."""

    @functools.wraps(handler)
    async def larger(request: web.Request) -> web.StreamResponse:
        return await handler(request.clone(client_max_size=MAX_UPLOAD_BYTES))

    return larger


ROUTES = [
    ("GET", "/data", data_page),
    ("GET", f"/data/{{kind:{KIND_PATTERN}}}.csv", data_csv),
    ("POST", f"/data/{{kind:{KIND_PATTERN}}}/import", _larger_body(data_import)),
]
