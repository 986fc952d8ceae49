"""Fuzzing the edge runtime's stdin PCM source and the conditioner behind it: any bytes, in any
pieces, in any format, become finite mono samples within CLIP_LIMIT, or a SourceError."""

import io

import numpy as np
import pytest
from hypothesis import strategies as st

from glat_core.audio import (CLIP_LIMIT, MAX_READ_BYTES, PCM_FORMATS, Conditioner,
                                  PcmSource, SourceError)
from tests.fuzzing import fuzz, raises_only

RATES = (1, 8000, 16000, 32000, 44100, 768000)


class Pieces:
    """A pipe that hands over the given pieces of bytes, one per read1 (never more than asked)."""

    def __init__(self, pieces):
        self.pieces, self.asked = [bytes(p) for p in pieces if p], []

    def read1(self, n):
        self.asked.append(n)
        if not self.pieces:
            return b""
        head = self.pieces[0]
        self.pieces[0] = head[n:]
        if not self.pieces[0]:
            self.pieces.pop(0)
        return head[:n]

    read = read1


def _stream(pieces, fmt, channels, rate):
    source = PcmSource(Pieces(pieces), rate, fmt, channels, block_seconds=0.01)
    conditioner, frames = Conditioner(rate, 32000), 0
    for block in source:
        assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == channels
        frames += len(block)
        for out in (conditioner(block),):
            assert np.isfinite(out).all() and np.abs(out).max(initial=0) <= CLIP_LIMIT * 1.01
    tail = conditioner.flush()
    assert np.isfinite(tail).all()
    total = sum(len(p) for p in pieces)
    assert frames * source.frame_bytes + source.dropped_bytes == total
    assert source.dropped_bytes < source.frame_bytes
    assert max(source.stream.asked, default=0) <= MAX_READ_BYTES


def test_random_pieces_in_every_format():
    fuzz(lambda pieces, fmt, channels, rate: raises_only(
        SourceError, lambda: _stream(pieces, fmt, channels, rate)),
        st.lists(st.binary(max_size=400), max_size=12), st.sampled_from(sorted(PCM_FORMATS)),
        st.integers(1, 6), st.sampled_from(RATES))


def test_float_garbage_is_repaired_not_propagated():
    """f32le bytes of NaN, inf and 3e38 (whose two-channel mean overflows) come out finite."""
    values = np.array([[np.nan, 1], [np.inf, -np.inf], [3e38, 3e38], [0.5, 0.25]], "<f4")
    source = PcmSource(io.BytesIO(values.tobytes()), 16000, "f32le", channels=2)
    conditioner = Conditioner(16000, 16000)
    out = np.concatenate([conditioner(block) for block in source])
    np.testing.assert_array_equal(out, [0, 0, 0, 0.375])
    assert conditioner.repaired == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=0), "channels must be an integer in 1..1024"),
    (dict(channels=10**9), "channels must be an integer in 1..1024"),
    (dict(sample_rate=0), "sample rate must be an integer in 1..768000"),
    (dict(sample_rate=10**12), "sample rate must be an integer in 1..768000"),
    (dict(fmt="s16be"), "unknown PCM format 's16be'"),
])
def test_bad_settings_are_source_errors(kwargs, message):
    with pytest.raises(SourceError, match=message):
        PcmSource(io.BytesIO(), **{"sample_rate": 16000, **kwargs})


def test_a_text_stream_is_a_source_error():
    with pytest.raises(SourceError, match="gives str, not bytes"):
        list(PcmSource(io.StringIO("text"), 16000))


def test_reads_stay_bounded_whatever_the_rate_and_channels():
    stream = Pieces([b"\0" * (3 * MAX_READ_BYTES)])
    source = PcmSource(stream, 768000, "s24le", channels=1024, block_seconds=10.0)
    frames = sum(len(block) for block in source)
    assert max(stream.asked) <= MAX_READ_BYTES and frames == 3 * MAX_READ_BYTES // (3 * 1024)
