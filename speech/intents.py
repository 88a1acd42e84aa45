"""What a caller wants, from the words they said: keyword and synonym scoring, not exact phrases.

Each language has a table of keywords (words or short phrases) with a weight towards one
intent. The text is covered by non-overlapping keywords (as much of it as possible, longer
keywords first), so "人工服务" counts once for ``agent`` and not again as "服务" for
``service_info``, and "找人工" finds 人工 rather than 找人. An intent
wins with a total of at least ``MIN_SCORE`` and strictly more than any other; otherwise the
answer is ``None`` and the IVR asks again. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal, TypeVar

from speech.languages import Language, check_language

Intent = Literal["check_status", "agent", "service_info", "repeat", "end", "urge"]
INTENTS: Final[tuple[Intent, ...]] = ("check_status", "agent", "service_info", "repeat", "end",
                                      "urge")
MIN_SCORE: Final = 1.0

_KEYWORDS: Final[dict[str, dict[Intent, dict[str, float]]]] = {
    "cmn": {
        "check_status": {
            "查进度": 1.5, "进度": 1.0, "进展": 1.0, "查询": 0.6, "查": 0.5, "工单": 0.6,
            "单子": 0.5, "案件": 0.6, "状态": 0.8, "处理情况": 1.2, "办理情况": 1.2,
            "处理得怎么样": 1.2, "办得怎么样": 1.2, "怎么样了": 0.6, "结果": 0.5, "投诉": 0.5,
            "反映的问题": 0.8, "诉求": 0.5, "编号": 0.4, "受理": 0.4, "处理": 0.4,
        },
        "agent": {
            "转人工": 1.5, "人工服务": 1.5, "人工": 1.2, "客服": 1.0, "接线员": 1.2,
            "话务员": 1.2, "工作人员": 1.0, "真人": 1.0, "找人": 0.8, "说话": 0.4, "坐席": 1.2,
        },
        "service_info": {
            "服务信息": 1.5, "服务时间": 1.2, "办公时间": 1.2, "上班时间": 1.2, "营业时间": 1.2,
            "开放时间": 1.2, "几点": 0.8, "上班": 0.5, "下班": 0.5, "关门": 0.8, "时间": 0.5,
            "地址": 1.0, "在哪里": 0.8, "在哪": 0.8,
            "地点": 0.8, "服务中心": 0.8, "开门": 0.8, "怎么走": 0.8, "办事": 0.5, "信息": 0.5,
            "服务": 0.4,
        },
        "repeat": {
            "再说一遍": 1.5, "再听一遍": 1.5, "再来一遍": 1.2, "重听": 1.5, "重复": 1.2,
            "没听清楚": 1.2, "没听清": 1.2, "没听见": 1.2, "再说": 1.0, "什么": 0.4,
        },
        "end": {
            "再见": 1.2, "拜拜": 1.2, "没有了": 1.0, "没事了": 1.0, "不用了": 1.0, "结束": 1.2,
            "挂了": 1.0, "挂机": 1.0, "不需要": 0.8, "就这样": 0.8, "谢谢": 0.6, "好了": 0.4,
        },
        "urge": {"催办": 1.5, "催一下": 1.5, "催促": 1.2, "催": 1.0, "尽快": 0.8, "快点": 0.8},
    },
    "en": {
        "check_status": {
            "status": 1.0, "progress": 1.0, "check": 0.5, "case": 0.6, "complaint": 0.5,
            "ticket": 0.6, "work order": 0.8, "request": 0.4, "update": 0.5, "track": 0.6,
            "follow up": 0.6, "report": 0.4, "happened": 0.4, "happening": 0.4,
        },
        "agent": {
            "agent": 1.2, "operator": 1.2, "representative": 1.2, "real person": 1.5,
            "person": 0.8, "human": 1.0, "someone": 0.6, "somebody": 0.6, "anyone": 0.6,
            "talk to": 0.6, "talk with": 0.6, "speak to": 0.6, "speak with": 0.6, "staff": 0.8,
            "customer service": 1.2, "help": 0.3,
        },
        "service_info": {
            "opening hours": 1.5, "office hours": 1.5, "hours": 1.0, "open": 0.6,
            "address": 1.0, "location": 1.0, "directions": 1.0, "where": 0.4, "office": 0.6,
            "service centre": 0.8, "service center": 0.8, "information": 0.6, "info": 0.6,
            "services": 0.6, "service": 0.5, "when": 0.3,
        },
        "repeat": {
            "repeat": 1.2, "again": 1.0, "say that again": 1.5, "come again": 1.2,
            "one more time": 1.2, "pardon": 1.0, "didn't hear": 1.0, "did not hear": 1.0,
            "didn't catch": 1.0, "what": 0.3, "sorry": 0.3,
        },
        "end": {
            "goodbye": 1.2, "bye": 1.2, "that's all": 1.2, "that is all": 1.2, "hang up": 1.2,
            "no thanks": 1.0, "no thank you": 1.0, "nothing": 0.6, "done": 0.6, "finished": 0.6,
            "thank you": 0.6, "thanks": 0.6, "quit": 1.0, "exit": 1.0, "end": 0.6, "stop": 0.6,
        },
        "urge": {"urge": 1.5, "hurry": 1.5, "hurry up": 1.5, "speed up": 1.2, "faster": 1.0},
    },
    "ko": {
        "check_status": {
            "민원조회": 1.5, "조회": 1.0, "진행상황": 1.2, "진행": 0.6, "상황": 0.5,
            "처리결과": 1.2, "처리": 0.5, "결과": 0.5, "민원": 0.6, "접수": 0.5, "신고": 0.5,
            "확인": 0.4, "어떻게됐": 0.6,
        },
        "agent": {
            "상담원": 1.2, "상담사": 1.2, "상담": 0.8, "직원": 1.0, "사람": 0.8, "연결": 0.5,
            "연결해주세요": 1.5, "연결해줘": 1.5,
            "바꿔": 0.5, "통화": 0.4,
        },
        "service_info": {
            "운영시간": 1.5, "운영": 0.6, "시간": 0.5, "주소": 1.0, "위치": 1.0, "어디": 0.6,
            "센터": 0.6, "안내": 0.6, "영업": 0.8, "몇시": 0.6,
        },
        "repeat": {
            "다시들려": 1.5, "들려": 1.0, "다시": 1.0, "반복": 1.2, "못들었": 1.0, "뭐라고": 0.8,
            "한번더": 1.2,
        },
        "end": {
            "종료": 1.2, "끝": 1.0, "끊": 1.0, "안녕히": 1.2, "됐어요": 1.0, "그만": 1.0,
            "괜찮아요": 0.6, "없어요": 0.6, "감사합니다": 0.6,
        },
        "urge": {"독촉": 1.5, "재촉": 1.5, "빨리": 1.0, "서둘러": 1.0},
    },
}

L = TypeVar("L")
_EN_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")
_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class IntentMatch:
    intent: Intent | None
    score: float
    matched: tuple[str, ...]
    """The keywords found (of every intent), in the order they were said."""


@cache
def _table(lang: str) -> tuple[tuple[str, Intent, float], ...]:
    entries = [
        (keyword, intent, weight)
        for intent, keywords in _KEYWORDS[lang].items()
        for keyword, weight in keywords.items()
    ]
    return tuple(sorted(entries, key=lambda e: len(e[0]), reverse=True))


def keywords(lang: str) -> dict[Intent, dict[str, float]]:
    """The keyword table of one language (a copy), e.g. for building a grammar."""
    return {intent: dict(kw) for intent, kw in _KEYWORDS[check_language(lang)].items()}


def _best_cover(
    units: Sequence[str], candidates: Sequence[tuple[Sequence[str], str, L, float]]
) -> list[tuple[str, L, float]]:
    """Non-overlapping keywords covering the most of ``units``; ties: fewer, then heavier.

    Dynamic programming over positions, so "我要找人工" finds 人工 (agent) rather than the
    earlier but overlapping 找人.
    """
    n = len(units)
    # best[i]: (covered units, -keywords, weight, matches) for units[:i]
    best: list[tuple[int, int, float, tuple[tuple[str, L, float], ...]]] = [
        (0, 0, 0.0, ())] * (n + 1)
    for i in range(n):
        covered, neg_count, weight, found = best[i]
        if best[i + 1][:3] < (covered, neg_count, weight):
            best[i + 1] = best[i]
        for parts, keyword, intent, kw_weight in candidates:
            end = i + len(parts)
            if end <= n and list(units[i:end]) == list(parts):
                option = (covered + len(parts), neg_count - 1, weight + kw_weight,
                          (*found, (keyword, intent, kw_weight)))
                if option[:3] > best[end][:3]:
                    best[end] = option
    return list(best[n][3])


def _scan_compact(text: str, lang: str) -> list[tuple[str, Intent, float]]:
    """cmn and ko: match keywords inside words (상담원과, 我的工单呢), spaces ignored."""
    compact = _PUNCT_RE.sub("", text)
    candidates = [(kw, kw, intent, w) for kw, intent, w in _table(lang) if kw in compact]
    return _best_cover(compact, candidates)


def _scan_words(text: str, lang: str) -> list[tuple[str, Intent, float]]:
    """en: match whole words and word sequences."""
    tokens = _EN_TOKEN_RE.findall(text.lower().replace("’", "'"))
    candidates = [(kw.split(), kw, intent, w) for kw, intent, w in _table(lang)]
    return _best_cover(tokens, candidates)


def match_intent(text: str, lang: str, allowed: Iterable[str] | None = None) -> IntentMatch:
    """Score ``text`` against every intent (or only ``allowed`` ones, e.g. the after-status
    menu's repeat/agent/end); ``intent`` is None when nothing clearly wins."""
    lang = check_language(lang)
    text = unicodedata.normalize("NFKC", text).lower()
    found = _scan_words(text, lang) if lang == "en" else _scan_compact(text, lang)
    only = set(allowed) if allowed is not None else None
    scores: dict[Intent, float] = defaultdict(float)
    for _, intent, weight in found:
        if only is None or intent in only:
            scores[intent] += weight
    matched = tuple(keyword for keyword, _, _ in found)
    if not scores:
        return IntentMatch(None, 0.0, matched)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    best, score = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if score + 1e-9 < MIN_SCORE or abs(score - runner_up) < 1e-9:
        return IntentMatch(None, round(score, 3), matched)
    return IntentMatch(best, round(score, 3), matched)


_LANGUAGE_NAMES: Final[dict[str, dict[str, Language]]] = {
    "cmn": {"普通话": "cmn", "中文": "cmn", "国语": "cmn", "汉语": "cmn", "英语": "en",
            "英文": "en", "韩语": "ko", "韩国语": "ko", "朝鲜语": "ko", "韩文": "ko"},
    "en": {"mandarin": "cmn", "chinese": "cmn", "english": "en", "korean": "ko"},
    "ko": {"중국어": "cmn", "만다린": "cmn", "영어": "en", "한국어": "ko", "한국말": "ko"},
}


def language_choice(text: str, lang: str) -> Language | None:
    """Which language the caller asked for ("普通话", "English", "한국어"), heard by the
    recognizer of ``lang``; None when no language or more than one was named."""
    names = _LANGUAGE_NAMES[check_language(lang)]
    text = unicodedata.normalize("NFKC", text).lower()
    if lang == "en":
        found = {names[t] for t in _EN_TOKEN_RE.findall(text) if t in names}
    else:
        compact = _PUNCT_RE.sub("", text)  # 韩国语 is Korean, not 国语 inside it
        candidates = [(name, name, choice, 1.0) for name, choice in names.items()
                      if name in compact]
        found = {choice for _, choice, _ in _best_cover(compact, candidates)}
    return found.pop() if len(found) == 1 else None
