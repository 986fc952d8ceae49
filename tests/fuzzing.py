"""What the fuzz suite shares: bounded, reproducible hypothesis settings, byte mutations, and the
rule every target must keep (succeed, or raise its area's own error type with a message)."""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.limits import run_limited

# Derandomized and without an example database: CI runs the same examples every time.
FUZZ = settings(max_examples=150, deadline=datetime.timedelta(seconds=3), derandomize=True,
                database=None, suppress_health_check=list(HealthCheck))
MEMORY = 512 << 20  # what one fuzzed input may make a target allocate, at most
SECONDS = 50.0  # a whole fuzz test; one example is bounded by FUZZ's deadline


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """One of `seeds` with a few bytes flipped, overwritten, cut, inserted or repeated."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("flip", "set", "cut", "insert", "repeat", "truncate")))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF)))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def raises_only(error_type, call):
    """call() succeeds, or raises `error_type` with a non-empty message; anything else fails."""
    try:
        call()
    except error_type as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"


def fuzz(test, *strategies):
    """Runs hypothesis over `test(*examples)` in a forked child limited to MEMORY more bytes."""
    run_limited(FUZZ(given(*strategies)(test)), MEMORY, SECONDS)
