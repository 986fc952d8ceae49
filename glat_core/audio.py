"""Audio in: sources (file, raw PCM on stdin, microphone, any iterable), their conversion to
the model's rate (Conditioner: mono, non-finite samples repaired, soxr), and `read_audio` /
`condition` / `pad_to`, the one conditioning step of every tagging path."""

from __future__ import annotations

import queue
import sys
import time
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import soundfile
import soxr

# Raw PCM layouts accepted on stdin: numpy dtype of one sample, and the scale to [-1, 1).
PCM_FORMATS = {
    "u8": ("u1", 128.0), "s8": ("i1", 128.0), "s16le": ("<i2", 32768.0),
    "s24le": (None, 8388608.0), "s32le": ("<i4", 2147483648.0), "f32le": ("<f4", 1.0),
}
# Real audio lives in [-1, 1]; far beyond it is garbage whose power would overflow float32.
CLIP_LIMIT = 100.0
# Real recordings top out at 768 kHz; beyond that a rate (flag or file header) is garbage,
# and its 0.1 s blocks would be huge.
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 1024  # libsndfile's own limit
MAX_READ_BYTES = 1 << 20  # one read of a PCM stream, at most


class SourceError(ValueError):
    """An audio source that cannot be read as asked: bad rate, channels, format or stream."""


def _check_rate(sample_rate) -> int:
    if (not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool)
            or not 0 < sample_rate <= MAX_SAMPLE_RATE):
        raise SourceError(f"sample rate must be an integer in 1..{MAX_SAMPLE_RATE} Hz, got "
                          f"{sample_rate!r}")
    return int(sample_rate)


def _frames(block) -> np.ndarray:
    """Any block as float32 (frames, channels)."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim == 1:
        return block[:, None]
    if block.ndim != 2:
        raise SourceError(f"audio blocks must be (frames,) or (frames, channels), got "
                          f"{block.shape}")
    return block


class _Paced:
    """Sleeps so that blocks come out no faster than real time (as from a live device)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.start = None
        self.delivered = 0

    def wait(self, frames: int) -> None:
        if self.start is None:
            self.start = time.monotonic()
        self.delivered += frames
        # A block exists only once its last sample has "happened".
        delay = self.start + self.delivered / self.sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class ArraySource:
    """Any iterable of (frames,) or (frames, channels) blocks at `sample_rate` Hz.

    Example:
        src = ArraySource((np.zeros(16000, np.float32) for _ in range(3600)), 16000)
        for block in src: ...  # float32 (16000, 1) each: one hour, never all in memory
    """

    def __init__(self, blocks: Iterable, sample_rate: int, paced: bool = False):
        self.blocks = blocks
        self.sample_rate = _check_rate(sample_rate)
        self.paced = paced

    def __iter__(self) -> Iterator[np.ndarray]:
        pace = _Paced(self.sample_rate) if self.paced else None
        for block in self.blocks:
            block = _frames(block)
            if pace:
                pace.wait(len(block))
            yield block


class FileSource:
    """A WAV/FLAC/OGG file (any rate, channels, 8/16/24/32-bit or float) read in blocks.

    `paced=True` delivers it in real time, as a live stream; otherwise as fast as read.
    Blocks are float32 (frames, channels) at the file's own rate.

    Example:
        src = FileSource("clip.flac", paced=False)
        src.sample_rate, src.channels  # 44100, 2
    """

    def __init__(self, path, paced: bool = False, block_seconds: float = 0.1):
        try:
            info = soundfile.info(str(path))
        except Exception as err:  # libsndfile raises several types for unreadable files
            raise SourceError(f"cannot read audio file {path}: {err}") from err
        self.path = str(path)
        self.sample_rate = _check_rate(info.samplerate)
        self.channels = info.channels
        self.paced = paced
        self.block = max(1, int(round(block_seconds * self.sample_rate)))

    def __iter__(self) -> Iterator[np.ndarray]:
        pace = _Paced(self.sample_rate) if self.paced else None
        with soundfile.SoundFile(self.path) as f:
            while True:
                block = f.read(self.block, dtype="float32", always_2d=True)
                if not len(block):
                    return
                if pace:
                    pace.wait(len(block))
                yield block


class PcmSource:
    """Headerless little-endian PCM from a binary stream (stdin), interleaved channels.

    `fmt` is one of u8, s8, s16le, s24le, s32le, f32le. Reads whatever has arrived
    (read1, at most MAX_READ_BYTES at a time), so a live pipe is tagged as it flows;
    a trailing partial frame at the end of the stream is dropped and counted in
    `dropped_bytes`. Any bytes are audio: garbage decodes to garbage samples, which
    the Conditioner cleans; a stream that gives text instead raises SourceError.

    Example:
        src = PcmSource(sys.stdin.buffer, sample_rate=16000, fmt="s16le", channels=2)
        for block in src: ...  # float32 (frames, 2)
    """

    def __init__(self, stream: BinaryIO, sample_rate: int, fmt: str = "s16le", channels: int = 1,
                 block_seconds: float = 0.1):
        if fmt not in PCM_FORMATS:
            raise SourceError(f"unknown PCM format {fmt!r}; use one of {', '.join(PCM_FORMATS)}")
        if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise SourceError(f"channels must be an integer in 1..{MAX_CHANNELS}, got "
                              f"{channels!r}")
        self.stream = stream
        self.sample_rate = _check_rate(sample_rate)
        self.fmt = fmt
        self.channels = channels
        self.width = 3 if fmt == "s24le" else np.dtype(PCM_FORMATS[fmt][0]).itemsize
        self.frame_bytes = self.width * channels
        frames = max(1, int(round(block_seconds * self.sample_rate)))
        self.read_bytes = max(1, min(frames, MAX_READ_BYTES // self.frame_bytes)) * self.frame_bytes
        self.dropped_bytes = 0

    def decode(self, data: bytes) -> np.ndarray:
        """Whole frames of raw bytes -> float32 (frames, channels)."""
        dtype, scale = PCM_FORMATS[self.fmt]
        if self.fmt == "s24le":
            b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            # Assemble in the top 24 bits of an int32, then shift back down to sign-extend.
            ints = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)) >> 8
        else:
            ints = np.frombuffer(data, dtype)
        values = ints.astype(np.float32)
        if self.fmt == "u8":
            values -= 128.0
        return (values / scale).reshape(-1, self.channels)

    def __iter__(self) -> Iterator[np.ndarray]:
        read = getattr(self.stream, "read1", self.stream.read)
        pending = b""
        while True:
            data = read(self.read_bytes)
            if not data:
                break
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise SourceError(f"the PCM stream gives {type(data).__name__}, not bytes "
                                  "(read sys.stdin.buffer, not sys.stdin)")
            pending += data
            whole = len(pending) - len(pending) % self.frame_bytes
            if whole:
                yield self.decode(pending[:whole])
                pending = pending[whole:]
        self.dropped_bytes = len(pending)


class MicSource:
    """The default (or named) input device through sounddevice, if it is installed.

    Blocks queue up to `max_queue_seconds`; if tagging falls behind, the oldest audio
    is dropped (counted in `dropped_frames`) rather than growing memory. No audio for
    `timeout` seconds raises instead of hanging.

    Example:
        src = MicSource(sample_rate=32000)
        for block in src: ...  # float32 (frames, 1) as the device records
    """

    def __init__(self, sample_rate: int | None = None, channels: int = 1, device=None,
                 block_seconds: float = 0.1, max_queue_seconds: float = 10.0,
                 timeout: float = 5.0):
        try:
            import sounddevice
        except (ImportError, OSError) as err:  # OSError: installed, but no PortAudio library
            raise RuntimeError(f"microphone input needs the sounddevice package and PortAudio "
                               f"({err}): pip install sounddevice") from err
        self._sd = sounddevice
        if sample_rate is None:
            sample_rate = int(sounddevice.query_devices(device, "input")["default_samplerate"])
        self.sample_rate = _check_rate(sample_rate)
        self.channels = channels
        self.device = device
        self.block = max(1, int(round(block_seconds * self.sample_rate)))
        self.max_blocks = max(2, int(max_queue_seconds / block_seconds))
        self.timeout = timeout
        self.dropped_frames = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        blocks: queue.Queue = queue.Queue(self.max_blocks)

        def callback(indata, frames, _time, _status):
            while True:
                try:
                    blocks.put_nowait(indata.copy())
                    return
                except queue.Full:
                    try:
                        self.dropped_frames += len(blocks.get_nowait())
                    except queue.Empty:
                        pass

        with self._sd.InputStream(samplerate=self.sample_rate, channels=self.channels,
                                  dtype="float32", blocksize=self.block, device=self.device,
                                  callback=callback):
            while True:
                try:
                    yield blocks.get(timeout=self.timeout)
                except queue.Empty:
                    raise RuntimeError(f"the microphone delivered no audio for {self.timeout} s")


def open_source(spec: str, *, paced: bool, pcm_rate: int, pcm_format: str = "s16le",
                pcm_channels: int = 1, device=None):
    """`-` (raw PCM on stdin), `mic`, or a file path -> a source."""
    if spec == "-":
        return PcmSource(sys.stdin.buffer, pcm_rate, pcm_format, pcm_channels)
    if spec == "mic":
        # sounddevice takes a device index or a (part of a) name.
        return MicSource(None, device=int(device) if device and device.isdigit() else device)
    return FileSource(spec, paced=paced)


class Conditioner:
    """Source blocks (frames, channels) at `in_rate` -> mono float32 at `out_rate`, cleaned.

    Mixes channels down by their mean, replaces non-finite frames by 0 (counted in
    `repaired`; `last_repaired` holds where the last block's land in the output, in
    output samples), clips to +-CLIP_LIMIT, and resamples with soxr's streaming
    resampler (its output equals a one-shot soxr.resample of the whole stream).
    Call `flush()` once at the end of the stream for the resampler's tail.

    Example:
        cond = Conditioner(44100, 32000)
        y = cond(np.zeros((4410, 2), np.float32))  # about 3200 mono samples, some held back
        tail = cond.flush()
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ"):
        self.in_rate = _check_rate(in_rate)
        self.out_rate = _check_rate(out_rate)
        self.repaired = 0
        self.consumed = 0
        self.last_repaired = np.zeros(0, np.int64)
        self._resampler = (None if self.in_rate == self.out_rate else
                           soxr.ResampleStream(self.in_rate, self.out_rate, 1,
                                               dtype="float32", quality=quality))

    def __call__(self, block) -> np.ndarray:
        block = _frames(block)
        with np.errstate(over="ignore", invalid="ignore"):  # garbage in, repaired just below
            mono = (block[:, 0].copy() if block.shape[1] == 1
                    else block.mean(axis=1, dtype=np.float32))
        bad = ~np.isfinite(mono)
        if bad.any():
            self.repaired += int(bad.sum())
            mono[bad] = 0.0
            # soxr compensates its own delay: input frame i is output sample i * out/in.
            where = (self.consumed + np.flatnonzero(bad)) * (self.out_rate / self.in_rate)
            self.last_repaired = where.astype(np.int64)
        else:
            self.last_repaired = np.zeros(0, np.int64)
        self.consumed += len(mono)
        np.clip(mono, -CLIP_LIMIT, CLIP_LIMIT, out=mono)
        if self._resampler is None:
            return mono
        return self._resampler.resample_chunk(mono, last=False)

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def condition(blocks, in_rate: int, out_rate: int) -> tuple[np.ndarray, int]:
    """The one conditioning step every tagging path runs on audio it did not record itself:
    blocks (frames[, channels]) at `in_rate` -> (mono float32 at `out_rate`, count of
    non-finite samples replaced by 0). Mixdown, repair and soxr resampling as the stream's
    Conditioner does them, so a file tags the same whether it is read whole or streamed."""
    conditioner = Conditioner(in_rate, out_rate)
    pieces = [conditioner(block) for block in blocks]
    pieces.append(conditioner.flush())
    return np.concatenate(pieces).astype(np.float32, copy=False), conditioner.repaired


def read_audio(path, sample_rate: int) -> tuple[np.ndarray, int]:
    """A WAV/FLAC/OGG/MP3 file as (mono float32 at `sample_rate`, repaired sample count)."""
    source = FileSource(path, block_seconds=10.0)
    waveform, repaired = condition(source, source.sample_rate, sample_rate)
    if not len(waveform):
        raise SourceError(f"{path}: no audio in the file")
    return waveform, repaired


def shortest_input(crop_samples: int, sample_rate: int) -> int:
    """The shortest input a model answers: one crop, or one second for a model without a
    local branch (crop 0), as the SavedModel's own check. Shorter audio is padded to it."""
    return crop_samples or sample_rate


def pad_to(waveform: np.ndarray, samples: int) -> np.ndarray:
    """`waveform` zero-padded at its end to at least `samples`: the one rule for inputs
    shorter than a model's crop (tau), on every path."""
    waveform = np.asarray(waveform, np.float32)
    if len(waveform) >= samples:
        return waveform
    return np.concatenate([waveform, np.zeros(samples - len(waveform), np.float32)])
