"""The knowledge base on the web: the desk's search and suggestions during a call and the
agent's "answered from article N" mark; the console's list (expired articles flagged) and
the form supervisors and admins create and edit articles with. Routes are added to the
desk's and the console's tables (crm.web.app), as crm.web.callbacks' are."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web
from sqlalchemy import select

from crm.errors import InvalidInput
from crm.i18n.catalogs import SOURCE_LOCALE
from crm.i18n.phrases import Phrase
from crm.knowledge import service as knowledge
from crm.knowledge.errors import InvalidArticle
from crm.knowledge.service import LANGUAGES, ArticleInput, ArticleView
from crm.live.desk_hub import AgentDesk
from crm.storage.models import Case, CaseCategory, ConsultationCase, ConsultationStep, Department
from crm.web import locale
from crm.web import session as web_session
from crm.web.console.auth import ConsoleUser, console_route
from crm.web.console.common import CONSOLE_KEY, PREFIX, record_id, render_page, today
from crm.web.desk import DESK_KEY, agent_required, call_for
from crm.web.errors import readable

SUGGESTIONS = 5


def _article_id(value: str) -> int:
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise InvalidInput(Phrase("give the article's number"), details={"field": "article"})
    return int(value)


# -- the desk -----------------------------------------------------------------------------------
@agent_required()
async def desk_search(request: web.Request, desk: AgentDesk) -> web.Response:
    """Free-text search: ``q`` as the agent typed it."""
    query = request.query.get("q", "").strip()
    matches = await knowledge.search(request.app[DESK_KEY].sessions, query,
                                     limit=SUGGESTIONS) if query else []
    return web.json_response({"query": query, "articles": [m.to_json() for m in matches]})


async def _call_words(request: web.Request, consultation_id: int) -> list[str]:
    """What the caller said in the IVR (one text) and the descriptions of the cases linked
    to the call."""
    deps = request.app[DESK_KEY]
    async with deps.sessions() as session:
        said = (await session.scalars(
            select(ConsultationStep.detail)
            .where(ConsultationStep.consultation_id == consultation_id,
                   ConsultationStep.kind == "speech")
            .order_by(ConsultationStep.id))).all()
        described = (await session.scalars(
            select(Case.description).join(ConsultationCase, ConsultationCase.case_id == Case.id)
            .where(ConsultationCase.consultation_id == consultation_id))).all()
    transcript = " ".join(str(d.get("text") or "") for d in said)
    return [t for t in [transcript, *described] if t and t.strip()]


@agent_required()
async def desk_suggestions(request: web.Request, desk: AgentDesk) -> web.Response:
    """The best articles for the call on this desk: the IVR transcript's words, the linked
    cases' descriptions and ``text`` (the description the agent is typing); and the
    articles already marked as its answer."""
    deps = request.app[DESK_KEY]
    _, consultation_id, _ = await call_for(request, desk)
    texts = [*await _call_words(request, consultation_id), request.query.get("text", "").strip()]
    matches = await knowledge.search_each(deps.sessions, [t for t in texts if t],
                                          limit=SUGGESTIONS)
    return web.json_response({
        "articles": [m.to_json() for m in matches],
        "answered": await knowledge.answered_articles(deps.sessions, consultation_id)})


@agent_required(post=True)
async def desk_mark_answered(request: web.Request, desk: AgentDesk) -> web.Response:
    """"Answered from article N" on the call's consultation."""
    deps = request.app[DESK_KEY]
    _, consultation_id, _ = await call_for(request, desk)
    article_id = _article_id(str((await request.post()).get("article", "")).strip())
    await knowledge.mark_answered(deps.sessions, consultation_id, article_id,
                                  agent_id=desk.agent_id, actor=desk.actor,
                                  **web_session.audit_origin(request))
    return web.json_response(
        {"answered": await knowledge.answered_articles(deps.sessions, consultation_id)})


# -- the console --------------------------------------------------------------------------------
async def _departments(request: web.Request, user: ConsoleUser) -> list[tuple[str, str]]:
    """(code, name) of each department, named in English for a reader of English."""
    english = locale.chosen(request, user.locale).locale == SOURCE_LOCALE
    async with request.app[CONSOLE_KEY].sessions() as session:
        rows = (await session.execute(select(Department.code, Department.name,
                                             Department.name_en)
                                      .order_by(Department.code))).all()
    return [(r.code, (english and r.name_en) or r.name) for r in rows]


async def _category_names(request: web.Request) -> dict[str, str]:
    async with request.app[CONSOLE_KEY].sessions() as session:
        rows = (await session.execute(select(CaseCategory.code, CaseCategory.name))).all()
    return {r.code: r.name for r in rows}


def _form_values(article: ArticleView | None) -> dict[str, str]:
    if article is None:
        return {}
    values = {"title": article.title, "body": article.body,
              "category": article.category_code or "", "department": article.department_code or "",
              "review_date": article.review_date.isoformat(), "ivr_key": article.ivr_key or ""}
    values.update({f"answer_{lang}": text for lang, text in article.answers.items()})
    return values


def _input(form: dict[str, str]) -> ArticleInput:
    try:
        review = date.fromisoformat(form.get("review_date", ""))
    except ValueError:
        raise InvalidArticle(Phrase("give the review date as YYYY-MM-DD"),
                             details={"field": "review_date"}) from None
    return ArticleInput(form.get("title", ""), form.get("body", ""), review,
                        {lang: form.get(f"answer_{lang}", "") for lang in LANGUAGES},
                        form.get("category"), form.get("department"), form.get("ivr_key"))


async def _edit_page(request: web.Request, user: ConsoleUser, article_id: int | None,
                     values: dict[str, str], error: InvalidInput | None = None) -> web.Response:
    return render_page(request, "console/knowledge_edit.html", user, "knowledge",
                       article_id=article_id, values=values, languages=LANGUAGES,
                       departments=await _departments(request, user),
                       error=readable(request, error) if error else None,
                       error_field=(error.details.get("field") if error else None))


@console_route(page=True)
async def knowledge_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    articles = await knowledge.list_articles(deps.sessions, today=today(deps))
    return render_page(request, "console/knowledge.html", user, "knowledge", articles=articles,
                       expired=sum(a.expired for a in articles),
                       categories=await _category_names(request),
                       departments=dict(await _departments(request, user)))


@console_route(page=True)
async def new_article_page(request: web.Request, user: ConsoleUser) -> web.Response:
    return await _edit_page(request, user, None, {})


@console_route(page=True)
async def edit_article_page(request: web.Request, user: ConsoleUser) -> web.Response:
    article = await knowledge.get_article(request.app[CONSOLE_KEY].sessions, record_id(request))
    return await _edit_page(request, user, article.id, _form_values(article))


async def _submitted(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: str(v) for k, v in form.items() if isinstance(v, str) and k != "csrf"}


@console_route(page=True, post=True)
async def save_article(request: web.Request, user: ConsoleUser) -> web.StreamResponse:
    """Creates (no id in the path) or updates an article; a wrong field shows the form again
    with everything as submitted and the field named."""
    deps = request.app[CONSOLE_KEY]
    article_id = record_id(request) if "id" in request.match_info else None
    values = await _submitted(request)
    try:
        data = _input(values)
        if article_id is None:
            article_id = await knowledge.create_article(deps.sessions, data, actor=user.actor,
                                                        **web_session.audit_origin(request))
        else:
            await knowledge.update_article(deps.sessions, article_id, data, actor=user.actor,
                                           **web_session.audit_origin(request))
    except InvalidInput as error:
        response = await _edit_page(request, user, article_id, values, error)
        response.set_status(400)
        return response
    raise web.HTTPSeeOther(f"{PREFIX}/knowledge#article-{article_id}")


DESK_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/knowledge/search", desk_search),
    ("GET", "/calls/{call_id}/knowledge", desk_suggestions),
    ("POST", "/calls/{call_id}/knowledge", desk_mark_answered),
]
CONSOLE_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/knowledge", knowledge_page),
    ("GET", "/knowledge/new", new_article_page),
    ("POST", "/knowledge", save_article),
    ("GET", r"/knowledge/{id:\d+}", edit_article_page),
    ("POST", r"/knowledge/{id:\d+}", save_article),
]
