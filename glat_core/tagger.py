"""Tags for a recording in one line: `Tagger.load(path).tag(file_or_waveform)`.

`path` is a `.keras` model, a SavedModel folder (TF Serving's `<base>/<version>/` or the
base, highest version taken) or a LiteRT export folder (run by the edge runtime, no
TensorFlow needed). Audio of any rate, channel count and length goes through the one
conditioning step (glat_core.audio: mono, non-finite samples repaired, soxr), then is cut
in windows of `window_seconds` (default: a LiteRT export's window, else 10) every
`hop_seconds`; each window is tagged at its own
length, as the Keras model tags that audio: a file shorter than the window is one window
of the whole file, and only audio shorter than the model's crop is padded (with zeros at
its end, to one crop).
"""

from __future__ import annotations

import pathlib

import numpy as np

from glat_core import audio as audio_lib
from glat_core.backends import open_backend
from glat_core.tags import Tags

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def spans(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """[start, end) sample spans of the windows of a recording of `length` samples: every
    `hop` from 0, the last one ending at the recording's end; one span if it is shorter."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] != length - window:
        starts.append(length - window)  # the end of the file is always tagged
    return [(s, s + window) for s in starts]


class Tagger:
    """A loaded model and its labels, tagging whole recordings window by window.

    Example:
        tagger = Tagger.load("runs/demo/glat/best.keras")
        tags = tagger.tag("street.flac")
        tags.names[tags.fused[0].argmax()], tags.clip_starts[0]  # label, int samples
    """

    def __init__(self, backend, *, window_seconds: float | None = None, hop_seconds: float = 5.0,
                 batch: int = 8):
        if window_seconds is None:  # a LiteRT export's own window, else 10 s
            window_seconds = getattr(backend, "window_samples", 0) / backend.sample_rate or 10.0
        if not window_seconds > 0 or not hop_seconds > 0:
            raise ValueError(f"window and hop must be > 0 seconds, got {window_seconds!r} and "
                             f"{hop_seconds!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self.backend = backend
        self.labels = backend.labels
        self.sample_rate = backend.sample_rate
        self.window = int(round(window_seconds * self.sample_rate))
        self.hop = int(round(hop_seconds * self.sample_rate))
        if self.window < backend.min_samples:
            raise ValueError(f"a window of {window_seconds} s is shorter than the model's "
                             f"crop of {backend.min_samples / self.sample_rate} s")
        self.batch = batch

    @classmethod
    def load(cls, path, *, variant: str = "f32", threads: int = 1, mode: str = "auto",
             crop_budget: int | None = None, **options) -> "Tagger":
        """The Tagger of a `.keras` file, SavedModel folder or LiteRT export folder
        (`variant` picks the LiteRT files, `mode` the edge runtime's mode: "auto" is its
        default, streaming when the export has its models)."""
        return cls(open_backend(path, variant, threads, mode, crop_budget), **options)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.labels]

    def read(self, audio, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
        """(mono float32 waveform at the model's rate, repaired samples) of a file path or
        an array (samples,) / (samples, channels) at `sample_rate` (default the model's)."""
        if isinstance(audio, (str, pathlib.Path)):
            return audio_lib.read_audio(audio, self.sample_rate)
        blocks = [np.asarray(audio, np.float32)]
        return audio_lib.condition(blocks, sample_rate or self.sample_rate, self.sample_rate)

    def tag(self, audio, sample_rate: int | None = None) -> Tags:
        """Tags of every window of a file path or a waveform (see `read`)."""
        waveform, repaired = self.read(audio, sample_rate)
        if not len(waveform):
            raise ValueError("no audio to tag")
        if getattr(self.backend, "streaming", False):
            windows, result = self.backend.stream(waveform, self.window, self.hop)
            out = [{k: v[i] for k, v in result.items()} for i in range(len(windows))]
            return self._tags(windows, out, repaired)
        windows = spans(len(waveform), self.window, self.hop)
        out = [None] * len(windows)
        by_length: dict[int, list[int]] = {}
        for i, (start, end) in enumerate(windows):
            by_length.setdefault(end - start, []).append(i)
        for indices in by_length.values():  # windows of one length run as a batch
            for at in range(0, len(indices), self.batch):
                part = indices[at:at + self.batch]
                batch = np.stack([audio_lib.pad_to(waveform[windows[i][0]:windows[i][1]],
                                                   self.backend.min_samples) for i in part])
                result = self.backend(batch)
                for row, i in enumerate(part):
                    out[i] = {k: v[row] for k, v in result.items()}
        return self._tags(windows, out, repaired)

    def _tags(self, windows, out, repaired) -> Tags:
        starts = np.array([s for s, _ in windows], np.int64)
        glob = np.stack([o["global"] for o in out])
        n = len(out[0]["clip_starts"]) if "clip_starts" in out[0] else 0
        clip_starts = (np.stack([o["clip_starts"] for o in out]).astype(np.int64) + starts[:, None]
                       if n else np.zeros([len(out), 0], np.int64))
        classes = (np.stack([o["selected_classes"] for o in out]).astype(np.int64) if n
                   else np.zeros([len(out), 0], np.int64))
        return Tags(self.labels, self.sample_rate, self.backend.crop_samples, starts,
                    np.array([e for _, e in windows], np.int64),
                    np.stack([o.get("fused", o["global"]) for o in out]), glob,
                    np.stack([o.get("local", o["global"]) for o in out]), clip_starts, classes,
                    [o["framewise"] for o in out], int(repaired), self.backend.has_local)
