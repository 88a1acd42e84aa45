"""Which language a page is in, and rendering templates in it.

A signed-in user's own choice (``agents.locale``) wins; then the ``hotline_locale`` cookie
(what the switch on a sign-in page set); then ``[web] locale``. Templates use jinja2's i18n
extension (``{{ _("...") }}``, ``{% trans %}``) and ``name_of(kind, code)`` for the names of
codes; the translator of the page being rendered is held in a context variable for the
length of one (synchronous) render, so one Environment serves every language.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from crm.i18n.catalogs import DEFAULT_LOCALE, LOCALE_NAMES, Translator, normalize, translator
from crm.i18n.phrases import Phrase

COOKIE = "hotline_locale"
COOKIE_MAX_AGE = 365 * 24 * 3600
DEFAULT_LOCALE_KEY = web.AppKey("default_locale", str)
USER_LOCALE = "hotline.user_locale"
"""Request key: the signed-in user's own choice (set where the user is checked)."""
_RENDERING: ContextVar[Translator] = ContextVar("rendering_translator")


def _current() -> Translator:
    return _RENDERING.get(None) or translator(DEFAULT_LOCALE)


def environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    """The templates' environment: autoescaped, with gettext and the label helpers."""
    env = jinja2.Environment(loader=loader, autoescape=True, enable_async=False,
                             extensions=["jinja2.ext.i18n"])
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: _current().gettext(message),
        lambda singular, plural, n: _current().ngettext(singular, plural, n),
        newstyle=True)
    env.globals["name_of"] = lambda kind, code: _current().label(kind, code)
    env.globals["phrase"] = lambda value: _current().phrase(
        value if isinstance(value, Phrase) else Phrase.from_json(value))
    env.globals["locale_names"] = LOCALE_NAMES
    return env


def render(env: jinja2.Environment, template: str, t: Translator, **context: Any) -> str:
    """``template`` rendered in ``t``'s language; the page also gets ``locale``,
    ``html_lang`` and ``js_messages`` (the browser scripts' messages, as JSON)."""
    token = _RENDERING.set(t)
    try:
        return env.get_template(template).render(
            locale=t.locale, html_lang=t.html_lang,
            js_messages=Markup(json.dumps(t.js, ensure_ascii=False).replace("</", "<\\/")),
            **context)
    finally:
        _RENDERING.reset(token)


def chosen(request: web.Request, user_locale: str | None = None) -> Translator:
    """The translator for this request (see the module's docstring for the order)."""
    for value in (user_locale, request.get(USER_LOCALE), request.query.get("lang"),
                  request.cookies.get(COOKIE)):
        locale = normalize(value)
        if locale:
            return translator(locale)
    return translator(request.config_dict.get(DEFAULT_LOCALE_KEY, DEFAULT_LOCALE))


def remember(response: web.StreamResponse, request: web.Request, locale: str | None,
             *, secure: bool = False) -> None:
    """Keep ``locale`` (or a ``?lang=`` of this request) in the cookie for pages without
    a signed-in user."""
    value = normalize(locale) or normalize(request.query.get("lang"))
    if value and request.cookies.get(COOKIE) != value:
        response.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                            samesite="Lax", secure=secure)
