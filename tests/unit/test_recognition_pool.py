"""The recognition pool's urgent lane (speech.metered_pool): the end of one caller's
utterance is decoded before other calls' chunks that were submitted earlier."""

import threading

import pytest

from speech.metered_pool import MeteredThreadPool


@pytest.fixture
def pool():
    p = MeteredThreadPool(1, thread_name_prefix="test-pool")
    yield p
    p.shutdown(wait=True, cancel_futures=True)


def occupy(pool: MeteredThreadPool) -> threading.Event:
    """Hold the pool's only thread until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(5)

    pool.submit(hold)
    assert started.wait(5)
    return release


def test_urgent_work_runs_before_ordinary_work_waiting(pool: MeteredThreadPool) -> None:
    release = occupy(pool)
    order: list[str] = []
    futures = [pool.submit(order.append, "chunk 1"), pool.submit(order.append, "chunk 2"),
               pool.submit_urgent(order.append, "end of speech"),
               pool.submit(order.append, "chunk 3")]
    assert pool.waiting == 4
    release.set()
    for f in futures:
        f.result(timeout=5)
    assert order == ["end of speech", "chunk 1", "chunk 2", "chunk 3"]
    assert pool.waiting == 0


def test_results_and_errors_reach_the_submitter(pool: MeteredThreadPool) -> None:
    assert pool.submit_urgent(sum, [1, 2]).result(timeout=5) == 3
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    assert pool.busy_seconds() > 0 and pool.running == 0


def test_a_cancelled_submission_is_skipped(pool: MeteredThreadPool) -> None:
    release = occupy(pool)
    ran: list[int] = []
    dropped = pool.submit(ran.append, 1)
    kept = pool.submit(ran.append, 2)
    assert dropped.cancel()
    release.set()
    kept.result(timeout=5)
    assert ran == [2]


def test_shutting_down_cancels_what_waits_and_refuses_more() -> None:
    pool = MeteredThreadPool(1)
    release = occupy(pool)
    waiting = pool.submit(sum, [1])
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit_urgent(sum, [1])
    assert pool.waiting == 0


def test_urgent_work_is_timed_ordinary_work_is_not(pool: MeteredThreadPool) -> None:
    for f in [pool.submit_urgent(sum, [1]), pool.submit(sum, [2]), pool.submit_urgent(sum, [3])]:
        f.result(timeout=5)
    buckets, count, total = pool.urgent_latency()
    assert count == 2 and total > 0
    cumulative = [n for _, n in buckets]
    assert cumulative == sorted(cumulative) and cumulative[-1] <= count
