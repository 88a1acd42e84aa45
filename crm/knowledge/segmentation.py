"""Words of a text for the knowledge base's index and queries.

Chinese is segmented with jieba (its search mode: a long word also yields the shorter
dictionary words inside it, so "垃圾分类" is found by "垃圾" and by "分类"); Korean runs of
Hangul become character bigrams (particles stick to Korean words: "쓰레기를" and "쓰레기"
share 쓰레, 레기); Latin words and numbers are lower-cased. Punctuation, single-character
function words and a short list of question words ("什么", "怎么", "时候") are dropped: they
are in every question and would make anything match anything.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

MAX_TERM_LENGTH = 64
DOMAIN_WORDS = ("垃圾分类", "厨余垃圾", "可回收物", "有害垃圾", "其他垃圾", "停水", "停电",
                "供水", "高龄津贴", "低保", "居住证", "社保卡", "医保", "养老金", "物业费",
                "充电桩", "电动车", "噪音", "办事大厅", "一网通办", "楼道灯", "门禁")
"""Words of the hotline's matters that jieba's general dictionary would split."""

STOPWORDS = frozenset("""
的 了 是 在 我 你 他 她 它 们 我们 你们 他们 这 那 哪 哪里 哪儿 这个 那个 什么 怎么 怎么办
怎样 如何 为什么 多少 几 几点 吗 呢 吧 啊 呀 哦 嗯 和 与 及 或 或者 就 都 也 还 又 要 想
请 请问 能 能不能 可以 会 有 没有 没 不 一个 一下 时候 什么时候 需要 问 问问 知道 告诉
很 太 家 我家 一 个 给 对 把 被 从 到 让 用 说 下 上 里 去 来 过 着 得 地 就是 还是 现在 今天
the a an is are to of and or what when where how do does i my we our you it in on for
""".split())

_HAN = re.compile(r"[\u4e00-\u9fff]")
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]+")
_WORD = re.compile(r"[0-9a-z\u4e00-\u9fff]+")

_lock = threading.Lock()
_tokenizer: Any = None


def _jieba() -> Any:
    """The one jieba tokenizer of the process, its dictionary loaded on first use."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            for word in DOMAIN_WORDS:
                tokenizer.add_word(word, freq=20000)
            _tokenizer = tokenizer
        return _tokenizer


def warm_up() -> None:
    """Loads the dictionary now (about half a second) rather than on the first search."""
    _jieba()


def _korean(run: str) -> list[str]:
    if len(run) <= 2:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def terms(text: str) -> list[str]:
    """The index words of ``text`` in order (repeats kept: they count)."""
    text = text.lower()
    out: list[str] = []
    for run in _HANGUL_RUN.findall(text):
        out += _korean(run)
    rest = _HANGUL_RUN.sub(" ", text)
    if _HAN.search(rest):
        words: Iterable[str] = _jieba().lcut_for_search(rest)
    else:
        words = rest.split()
    for word in words:
        for piece in _WORD.findall(word):
            if piece in STOPWORDS or len(piece) > MAX_TERM_LENGTH:
                continue
            if len(piece) == 1 and not piece.isdigit() and _HAN.match(piece) is None:
                continue  # a stray Latin letter
            out.append(piece)
    return out


def query_terms(text: str) -> list[str]:
    """The distinct words of a query, in order."""
    return list(dict.fromkeys(terms(text)))


def article_terms(title: str, body: str, answers: Iterable[str]) -> Counter[str]:
    """What an article is indexed under: its title counted twice, its text and spoken
    answers once."""
    counts: Counter[str] = Counter()
    counts.update(terms(title) * 2)
    counts.update(terms(body))
    for answer in answers:
        counts.update(terms(answer))
    return counts
