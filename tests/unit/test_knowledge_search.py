"""Chinese word segmentation (jieba) and BM25 ranking of the knowledge base, over the demo
articles indexed in memory exactly as the service stores them."""

from __future__ import annotations

import pytest

from crm.knowledge.demo_articles import ARTICLES
from crm.knowledge.ranking import bm25
from crm.knowledge.segmentation import article_terms, query_terms, terms

TITLES = {i: a[3] for i, a in enumerate(ARTICLES, start=1)}


@pytest.fixture(scope="module")
def index() -> tuple[dict[str, dict[int, int]], dict[int, int]]:
    postings: dict[str, dict[int, int]] = {}
    lengths: dict[int, int] = {}
    for i, (_, _, _, title, body, answers, _) in enumerate(ARTICLES, start=1):
        counts = article_terms(title, body, answers.values())
        lengths[i] = sum(counts.values())
        for term, count in counts.items():
            postings.setdefault(term, {})[i] = count
    return postings, lengths


def best(index: tuple[dict[str, dict[int, int]], dict[int, int]], query: str) -> str | None:
    postings, lengths = index
    ranked = bm25(query_terms(query), postings, lengths, articles=len(lengths),
                  average_length=sum(lengths.values()) / len(lengths))
    return TITLES[ranked[0].article_id] if ranked else None


def test_segmentation_finds_words_and_drops_question_words() -> None:
    assert terms("我家停水了什么时候恢复供水") == ["停水", "恢复", "供水"]
    # search mode: the compound and the words inside it
    assert {"垃圾", "分类", "垃圾分类"} <= set(terms("垃圾分类几点投放"))
    assert terms("请问，怎么办？") == []


def test_korean_becomes_bigrams_that_survive_particles() -> None:
    assert set(terms("쓰레기")) <= set(terms("쓰레기를 언제 버려요"))


@pytest.mark.parametrize(("query", "title"), [
    ("小区垃圾几点可以扔", "生活垃圾分类投放时间"),
    ("厨余垃圾投放时间", "生活垃圾分类投放时间"),
    ("我们楼停水了，什么时候恢复供水", "计划停水通知及临时供水"),
    ("我妈八十岁了，高龄津贴要带什么材料", "高龄津贴申请材料"),
    ("低保怎么申请", "最低生活保障（低保）申请条件"),
    ("楼道灯坏了", "楼道灯和公共设施报修"),
    ("쓰레기 버리는 시간", "生活垃圾分类投放时间"),
    ("bulky waste", "生活垃圾分类投放时间"),
])
def test_questions_find_their_article(index, query: str, title: str) -> None:
    assert best(index, query) == title


@pytest.mark.parametrize("query", [
    "我要投诉楼上噪音太吵",
    "我的快递丢了",
    "我家停电了",
    "你好，请问",
    "",
    "的了吗呢",
])
def test_other_matters_find_nothing(index, query: str) -> None:
    assert best(index, query) is None
