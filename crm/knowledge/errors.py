"""The knowledge base's errors: subclasses of the families in crm.errors (the web layer maps
the families to HTTP)."""

from __future__ import annotations

from crm.errors import InvalidInput, NotFound


class ArticleNotFound(NotFound):
    code = "article_not_found"


class InvalidArticle(InvalidInput):
    """A field of an article is missing or wrong; ``details["field"]`` names it."""

    code = "invalid_article"
