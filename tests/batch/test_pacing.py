"""``Pacer``: requests and tokens per minute over a sliding window (a fake clock; no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from structgen.errors import InvalidArgument
from structgen.hosted.pacing import Pacer, estimate_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rpm_waits_for_the_oldest_request_to_leave_the_window() -> None:
    clock = Clock()
    pacer = Pacer(rpm=3, clock=clock)
    for _ in range(3):
        assert pacer.wait_for(1) == 0
        asyncio.run(pacer.acquire(1))
    assert pacer.wait_for(1) == pytest.approx(60.0)
    clock.now += 45
    assert pacer.wait_for(1) == pytest.approx(15.0)
    clock.now += 15
    assert pacer.wait_for(1) == 0


def test_tpm_counts_tokens_and_frees_them_as_the_window_slides() -> None:
    clock = Clock()
    pacer = Pacer(tpm=1000, clock=clock)
    asyncio.run(pacer.acquire(600))
    clock.now += 10
    asyncio.run(pacer.acquire(300))
    assert pacer.wait_for(200) == pytest.approx(50.0)   # the first 600 must leave
    assert pacer.wait_for(100) == 0
    assert pacer.wait_for(5000) == pytest.approx(60.0)  # larger than the budget: waits for an empty window (the 300 leave at +60)


def test_estimates_and_arguments() -> None:
    assert estimate_tokens(400, 50) == 151
    with pytest.raises(InvalidArgument):
        Pacer(rpm=0)
