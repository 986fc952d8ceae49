"""glat_core.audio: the audio sources (raw PCM, files, the microphone) and the one
conditioning step (mono mix, streaming soxr resampling, the NaN/Inf policy)."""

import io
import sys
import time

import numpy as np
import pytest
import soundfile
import soxr

from glat_core.audio import Conditioner, FileSource, PcmSource

RATE = 32000


@pytest.mark.parametrize("fmt,subtype", [("u8", "PCM_U8"), ("s8", "PCM_S8"), ("s16le", "PCM_16"),
                                         ("s24le", "PCM_24"), ("s32le", "PCM_32"),
                                         ("f32le", "FLOAT")])
def test_pcm_decoding_matches_libsndfile(fmt, subtype):
    """Raw bytes written by libsndfile decode to what libsndfile reads back, in odd pieces."""
    rng = np.random.default_rng(1)
    audio = np.clip(rng.standard_normal((4001, 2)) * 0.4, -1, 0.99).astype(np.float32)
    raw = io.BytesIO()
    soundfile.write(raw, audio, 16000, format="RAW", subtype=subtype)
    data = raw.getvalue() + b"\x01"  # a trailing partial frame: the stream ended mid-sample
    reference = soundfile.read(io.BytesIO(raw.getvalue()), dtype="float32", format="RAW",
                               subtype=subtype, samplerate=16000, channels=2)[0]

    class Trickle(io.BytesIO):  # a pipe that hands over 7 bytes at a time
        def read1(self, n=-1):
            return super().read(min(n, 7))

    source = PcmSource(Trickle(data), 16000, fmt, channels=2, block_seconds=0.01)
    decoded = np.concatenate(list(source))
    np.testing.assert_allclose(decoded, reference, atol=1e-7)
    assert source.dropped_bytes == 1


def test_conditioner_streams_like_one_shot_resampling():
    rng = np.random.default_rng(2)
    stereo = rng.standard_normal((48000, 2)).astype(np.float32) * 0.1
    cond = Conditioner(16000, RATE)
    sizes = rng.integers(1, 5000, 40)
    pieces, at = [], 0
    for size in sizes:
        pieces.append(cond(stereo[at:at + size]))
        at += size
    pieces.append(cond(stereo[at:]))
    pieces.append(cond.flush())
    expected = soxr.resample(stereo.mean(axis=1), 16000, RATE)
    np.testing.assert_allclose(np.concatenate(pieces), expected, atol=1e-6)
    assert cond.repaired == 0


def test_conditioner_repairs_non_finite_and_clips_garbage():
    cond = Conditioner(RATE, RATE)
    block = np.array([0.5, np.nan, np.inf, -np.inf, 1e9, -0.25], np.float32)
    out = cond(block)
    np.testing.assert_array_equal(out, [0.5, 0, 0, 0, 100.0, -0.25])
    assert cond.repaired == 3


def test_paced_file_takes_real_time_and_offline_does_not(tmp_path):
    path = tmp_path / "half.wav"
    soundfile.write(path, np.zeros(8000, np.float32), 16000)
    start = time.monotonic()
    frames = sum(len(b) for b in FileSource(path, paced=True))
    assert frames == 8000 and time.monotonic() - start >= 0.45
    assert sum(len(b) for b in FileSource(path, paced=False)) == 8000


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    with pytest.raises(ValueError, match="cannot read audio file"):
        FileSource(bad)


class FakeSoundDevice:
    """The slice of sounddevice that MicSource uses; a thread plays `blocks` into the callback,
    the first at once and the rest when `go` is set."""

    def __init__(self, blocks):
        import threading
        self.blocks, self.go = blocks, threading.Event()

    def query_devices(self, device, kind):
        return {"default_samplerate": 48000.0}

    def InputStream(self, samplerate, channels, dtype, blocksize, device, callback):
        import contextlib
        import threading

        @contextlib.contextmanager
        def stream():
            def play():
                callback(self.blocks[0], len(self.blocks[0]), None, None)
                self.go.wait()
                for block in self.blocks[1:]:
                    callback(block, len(block), None, None)
            thread = threading.Thread(target=play, daemon=True)
            thread.start()
            yield
        return stream()


def test_microphone_queue_drops_oldest_and_times_out(monkeypatch):
    from glat_core.audio import MicSource
    blocks = [np.full((480, 1), k, np.float32) for k in range(30)]
    device = FakeSoundDevice(blocks)
    monkeypatch.setitem(sys.modules, "sounddevice", device)
    mic = MicSource(block_seconds=0.01, max_queue_seconds=0.05, timeout=0.5)
    assert mic.sample_rate == 48000 and mic.max_blocks == 5
    stream = iter(mic)
    assert next(stream)[0, 0] == 0
    device.go.set()
    time.sleep(0.3)  # the consumer lags: 29 more blocks arrive, only the newest 5 fit
    got = [next(stream)[0, 0] for _ in range(5)]
    assert got == [25, 26, 27, 28, 29] and mic.dropped_frames == 24 * 480
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="no audio for 0.5 s"):
        next(stream)
    assert time.monotonic() - start < 5


def test_microphone_without_sounddevice_is_a_clear_error(monkeypatch):
    from glat_core.audio import MicSource
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    with pytest.raises(RuntimeError, match="pip install sounddevice"):
        MicSource()
