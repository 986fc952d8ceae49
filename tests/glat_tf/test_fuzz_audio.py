"""Fuzzing ingest's decoder of one file: random and mutated audio bytes give a clip or a ClipError,
in bounded memory; hostile headers (1 Hz, 1024 channels, 4 GiB claims) among the seeds."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from tests.fuzzing import fuzz, mutated, raises_only
from glat_tf.data.decode import ClipError, decode_clip
from tests.hostile_audio import HOSTILE, seeds
from tests.limits import run_limited

SEEDS = seeds()


def _decode(data: bytes, rate=16000, samples=1600):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip"
        path.write_bytes(data)
        raises_only(ClipError, lambda: _checked(decode_clip(str(path), rate, samples), samples))


def _checked(clip, samples):
    assert clip.dtype == np.int16 and clip.shape == (samples,)


def test_random_bytes():
    fuzz(lambda data: _decode(data), st.binary(max_size=2048))


def test_mutated_audio_files():
    fuzz(lambda data: _decode(data), mutated(SEEDS))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_headers_at_full_clip_size(name):
    """10 s at 32 kHz: the 1 Hz header alone used to resample to 1.6e9 samples (6 GB, a minute)."""
    run_limited(lambda: _decode(HOSTILE[name], 32000, 320000), extra_bytes=256 << 20, seconds=20)


def test_the_clip_reads_the_same_as_decoding_the_whole_file(tmp_path):
    """Decoding only what the clip needs (plus 1 s) changes no sample of a longer file."""
    import soundfile as sf
    import soxr
    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal((44100 * 5, 2))).astype(np.float32)
    sf.write(tmp_path / "long.flac", wave, 44100)
    whole = soxr.resample(sf.read(tmp_path / "long.flac", dtype="float32")[0].mean(axis=1),
                          44100, 32000, quality="HQ")[:64000]
    expected = np.round(np.clip(whole, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    np.testing.assert_array_equal(decode_clip(str(tmp_path / "long.flac"), 32000, 64000),
                                  expected)
