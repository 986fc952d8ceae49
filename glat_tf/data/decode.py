"""One audio file -> the clip ingest stores: decode (soundfile), check, mix to mono, resample
(soxr), pad or trim; in bounded memory whatever the header claims. Raises ClipError."""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr

from glat_tf.data import storage


class ClipError(Exception):
    """A clip that cannot be ingested; `reason` is one of the rejects.csv reason codes."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _wav_truncated(f) -> bool:
    """A RIFF header promising more data than the file `f` holds (libsndfile reads what is there)."""
    file_size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            return False
        size = int.from_bytes(chunk[4:], "little")
        if chunk[:4] == b"data":
            return size not in (0, 0xFFFFFFFF) and f.tell() + size > file_size
        f.seek(size + (size & 1), os.SEEK_CUR)


# Real recordings top out at 768 kHz; a header claiming more (or 0) is garbage.
MAX_SAMPLE_RATE = 768_000
_BLOCK_VALUES = 1 << 20  # samples of all channels decoded at a time: 4 MiB of float32


def _read_mono(path, frames: int) -> tuple[np.ndarray, bool]:
    """Up to `frames` frames mixed to mono, decoded in blocks (a 1024-channel header cannot
    make one big allocation), and whether every sample of every channel was finite."""
    parts, finite = [], True
    with sf.SoundFile(path) as f:
        block = max(1024, _BLOCK_VALUES // max(1, f.channels))
        while frames > 0:
            audio = f.read(min(block, frames), dtype="float32", always_2d=True)
            if not len(audio):
                break
            finite = finite and bool(np.isfinite(audio).all())
            parts.append(audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0])
            frames -= len(audio)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), finite


def decode_clip(path: str, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Decode, mix to mono, resample (soxr) and pad/trim to clip_samples; int16. Raises ClipError.

    Only the frames the clip needs are decoded (plus a second for the resampler's filter), so
    neither a long file nor a header claiming 1 Hz (32000 output samples per frame) can make
    it allocate more than about (clip_seconds + 1) * MAX_SAMPLE_RATE samples.
    """
    if not storage.exists(path):
        raise ClipError("missing_file", path)
    if storage.size(path) == 0:
        raise ClipError("empty_file", "0 bytes")
    # An object-store clip (a few MB) is read whole: libsndfile needs a seekable file.
    url = storage.is_url(path)
    blob = storage.read_bytes(path) if url else None
    source = (lambda: io.BytesIO(blob)) if url else (lambda: storage.local(path))
    try:
        info = sf.info(source())
        rate = info.samplerate
        if not 0 < rate <= MAX_SAMPLE_RATE:
            raise ClipError("unreadable", f"sample rate {rate} Hz is outside 1..{MAX_SAMPLE_RATE}")
        wanted = -(-clip_samples * rate // sample_rate) + rate
        mono, finite = _read_mono(source(), wanted)
    except ClipError:
        raise
    except Exception as exc:  # libsndfile raises several types for unreadable input
        raise ClipError("unreadable", str(exc).strip().replace("\n", " ")) from None
    if mono.shape[0] == 0:
        raise ClipError("empty_file", "no audio frames")
    with source() if url else open(source(), "rb") as f:
        cut = _wav_truncated(f)
    # MP3 frame counts without a Xing header are estimates: allow 1 % slack there.
    expected = min(info.frames, wanted)
    if mono.shape[0] < expected - max(2048, info.frames // 100) or cut:
        raise ClipError("truncated", f"header says {info.frames} frames, read {mono.shape[0]}")
    if not finite:
        raise ClipError("non_finite", "NaN or inf samples")
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    out = np.pad(mono[:clip_samples], (0, max(0, clip_samples - mono.shape[0])))
    return np.round(np.clip(out, -1.0, 32767 / 32768) * 32768).astype(np.int16)
