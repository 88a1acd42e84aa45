"""BM25 over the stored term index (Okapi BM25 with Lucene's non-negative idf).

Pure: the service reads the postings of a query's words from the database and hands them
here. Ranking in-process over the few hundred articles a hotline has costs less than a
millisecond and behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

K1 = 1.2
B = 0.75
MIN_SCORE = 0.1
"""Below this a match is noise (a word in nearly every article); what keeps coincidences out
is ``words_needed``."""


def words_needed(query_words: int) -> int:
    """How many of a query's distinct words an article must contain to be offered: half of
    a short query, two of a longer one ("楼上装修噪音太吵" shares only "装修" with the
    garbage article: that is not an answer)."""
    return min(2, math.ceil(query_words / 2))


@dataclass(frozen=True)
class Ranked:
    article_id: int
    score: float
    matched: tuple[str, ...]
    """The query's words found in the article."""


def bm25(query: Sequence[str], postings: Mapping[str, Mapping[int, int]],
         lengths: Mapping[int, int], *, articles: int, average_length: float,
         min_score: float = MIN_SCORE, limit: int = 5) -> list[Ranked]:
    """Articles ranked for ``query``. ``postings``: word -> article -> count; ``lengths``:
    article -> its number of indexed words; ``articles``: how many there are in all."""
    if articles <= 0 or average_length <= 0:
        return []
    scores: dict[int, float] = {}
    matched: dict[int, list[str]] = {}
    for word in dict.fromkeys(query):
        found = postings.get(word) or {}
        df = len(found)
        if df == 0:
            continue
        idf = math.log(1 + (articles - df + 0.5) / (df + 0.5))
        for article, count in found.items():
            norm = K1 * (1 - B + B * lengths.get(article, 0) / average_length)
            scores[article] = scores.get(article, 0.0) + idf * count * (K1 + 1) / (count + norm)
            matched.setdefault(article, []).append(word)
    needed = words_needed(len(set(query)))
    ranked = [Ranked(a, round(s, 3), tuple(matched[a])) for a, s in scores.items()
              if s >= min_score and len(matched[a]) >= needed]
    ranked.sort(key=lambda r: (-r.score, r.article_id))
    return ranked[:limit]
