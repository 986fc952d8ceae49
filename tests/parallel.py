"""Independent subprocess jobs two at a time: a CLI run is mostly one busy core (Python
imports, tracing), so the 2-core CI box finishes two side by side in little more than one's
time. Each job keeps its own timeout; results come back in the jobs' order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

WORKERS = 2  # CI's cores


def in_pairs(jobs: list, workers: int = WORKERS) -> list:
    """[job() for job in jobs], at most `workers` at once (threads: each waits on its
    process)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: job(), jobs))
