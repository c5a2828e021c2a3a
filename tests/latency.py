"""Latency checks shared by the tests of blocking calls (container_factory, sandbox run)."""

import time

import requests


def best_latency(url: str, expected: str = "quick", calls: int = 5) -> float:
    """The fastest of a few GETs of ``url``: on a busy machine one call may wait for a core."""
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        assert requests.get(url, timeout=10).text == expected
        latencies.append(time.perf_counter() - started)
    return min(latencies)
