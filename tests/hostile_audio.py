"""Small audio files in every format ingest reads, and WAV headers that lie, for the fuzz suite."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from tests.conftest import DATA


def encoded(fmt: str, subtype: str | None = None, rate=16000, channels=1, seconds=0.05) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] * np.ones(channels)
    out = io.BytesIO()
    sf.write(out, wave.astype(np.float32), rate, format=fmt, subtype=subtype)
    return out.getvalue()


def wav_header(rate: int, channels: int, data: bytes, claimed_bytes: int | None = None,
               bits: int = 16) -> bytes:
    """A PCM WAV whose fmt chunk and data size say whatever they are told."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    size = len(data) if claimed_bytes is None else claimed_bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size)
    return b"RIFF" + struct.pack("<I", 4 + len(body) + len(data)) + body + data


def seeds() -> list[bytes]:
    files = [encoded("WAV", "PCM_16"), encoded("WAV", "FLOAT", channels=2),
             encoded("FLAC", rate=48000), encoded("OGG", rate=22050), encoded("MP3", rate=32000),
             (DATA / "R9_ZSCveAHg_7s.mp3").read_bytes()[:6000]]
    return files + list(HOSTILE.values())


# Headers a hostile (or broken) file may carry; each must end in a ClipError or a clip, in
# bounded memory: 1 Hz resampled to 32 kHz whole would be 32000 samples per frame read.
HOSTILE = {
    "rate_1_hz": wav_header(1, 1, b"\x01\x00" * 50_000),
    "rate_2e31": wav_header(2**31 - 1, 1, b"\x01\x00" * 100),
    "channels_1024": wav_header(32000, 1024, b"\x01\x00" * 1024 * 40),
    "data_claims_4_gib": wav_header(32000, 2, b"\x01\x00" * 200, claimed_bytes=2**32 - 2),
    "zero_channels": wav_header(32000, 0, b"\x01\x00" * 100),
}
