"""Knowledge-base search: how long one search takes over a knowledge base of N articles on
SQLite (the term index stored per article, BM25 in process; crm/knowledge/).

    python -m bench.knowledge_search [--articles 500] [--queries 200] [--url URL]

The articles are the demo articles repeated with their titles numbered, so every query finds
many candidates (a harder case than distinct articles). Prints the median and 95th
percentile of one search, and the time to save (segment and index) one article.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from crm.knowledge.demo_articles import ARTICLES
from crm.knowledge.service import ArticleInput, create_article, search
from crm.storage.db import open_database
from crm.storage.migrate import upgrade

QUERIES = ["我们小区停水了什么时候恢复供水", "高龄津贴要带什么材料", "垃圾几点可以扔",
           "楼道灯坏了", "低保怎么申请", "쓰레기 버리는 시간", "我的快递丢了"]


async def run(url: str, articles: int, queries: int) -> None:
    await upgrade(url)
    database = open_database(url)
    try:
        saves: list[float] = []
        for i in range(articles):
            _, _, _, title, body, answers, _ = ARTICLES[i % len(ARTICLES)]
            started = time.perf_counter()
            await create_article(database.sessions, ArticleInput(
                f"{title} {i}", body, date.today() + timedelta(days=30), answers), actor="bench")
            saves.append(time.perf_counter() - started)
        await search(database.sessions, "预热 warm up")  # loads jieba's dictionary
        took: list[float] = []
        for i in range(queries):
            started = time.perf_counter()
            await search(database.sessions, QUERIES[i % len(QUERIES)])
            took.append(time.perf_counter() - started)
    finally:
        await database.close()
    took.sort()
    print(f"articles {articles}, searches {queries}")
    print(f"search: median {statistics.median(took) * 1000:.1f} ms, "
          f"p95 {took[int(0.95 * (len(took) - 1))] * 1000:.1f} ms")
    print(f"save (segment + index) one article: median {statistics.median(saves) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--url", help="a database URL (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.articles, args.queries))


if __name__ == "__main__":
    main()
