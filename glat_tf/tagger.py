"""Tags for a recording in one line: `glat_tf.Tagger.load(path).tag(waveform_or_path)`.

`path` is a `.keras` model, a SavedModel folder (TF Serving's `<base>/<version>/` or the
base, highest version taken) or a LiteRT export folder (metadata.json, run by
edge_runtime). Audio of any rate, channel count and length: mixed to mono, resampled with
soxr, cut in windows of `window_seconds` every `hop_seconds` (a shorter file is one window,
zero-padded where the model needs a fixed size).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclasses.dataclass
class Tags:
    """One recording's windows: `starts`, `ends` (W,) seconds; `fused`, `global_`, `local`
    (W, L) probabilities; `clip_starts` (W, N) seconds from the file's start and
    `selected_classes` (W, N) of the windows GL-AT chose; `labels` the L class names."""

    labels: list
    starts: np.ndarray
    ends: np.ndarray
    fused: np.ndarray
    global_: np.ndarray
    local: np.ndarray
    clip_starts: np.ndarray
    selected_classes: np.ndarray
    crop_seconds: float

    def top(self, window: int, k: int = 5) -> list[dict]:
        order = np.argsort(-self.fused[window])[:k]
        return [{"label": self.labels[c], "fused": float(self.fused[window, c]),
                 "global": float(self.global_[window, c]), "local": float(self.local[window, c])}
                for c in order]

    def chosen(self, window: int) -> list[dict]:
        return [{"start": float(s), "end": float(s + self.crop_seconds),
                 "class": self.labels[int(c)]}
                for s, c in zip(self.clip_starts[window], self.selected_classes[window])]


def read_audio(path, sample_rate: int) -> np.ndarray:
    """(samples,) float32 mono at `sample_rate` from any file soundfile reads."""
    import soundfile
    import soxr
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if data.size == 0:
        raise ValueError("no audio in the file")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    if not np.isfinite(mono).all():
        raise ValueError("the audio holds NaN or Inf samples")
    return mono


class Tagger:
    """A loaded model plus its labels, tagging whole recordings window by window.

    Example:
        tagger = Tagger.load("runs/demo/glat/best.keras")
        tags = tagger.tag("street.flac")
        tags.labels[tags.fused[0].argmax()]
    """

    def __init__(self, run, labels, sample_rate: int, crop_samples: int, *,
                 fixed_window: int | None = None, window_seconds: float = 10.0,
                 hop_seconds: float = 5.0, batch: int = 8):
        self.run = run  # (windows, samples) float32 -> dict of arrays, clip_starts in samples
        self.labels = list(labels)
        self.sample_rate = int(sample_rate)
        self.crop_samples = int(crop_samples)
        self.fixed_window = fixed_window
        self.window = int(fixed_window or round(window_seconds * sample_rate))
        self.hop = int(round(hop_seconds * sample_rate))
        if self.hop <= 0:
            raise ValueError(f"hop_seconds must be positive, got {hop_seconds}")
        self.batch = batch

    @classmethod
    def load(cls, path, *, variant: str = "f32", **options) -> "Tagger":
        path = pathlib.Path(path)
        if path.is_file() and path.suffix == ".keras":
            return cls._keras(path, **options)
        if path.is_dir() and (path / "metadata.json").is_file():
            return cls._litert(path, variant, **options)
        if path.is_dir():
            versions = sorted((p for p in path.iterdir() if p.name.isdigit()
                               and (p / "saved_model.pb").is_file()), key=lambda p: int(p.name))
            folder = path if (path / "saved_model.pb").is_file() else (
                versions[-1] if versions else None)
            if folder is not None:
                return cls._saved_model(folder, **options)
        raise ValueError(f"{path} is not a .keras file, a SavedModel folder or a LiteRT export "
                         "folder (metadata.json)")

    @classmethod
    def _keras(cls, path, **options):
        from export.labels import load_model
        from glat_tf import class_names
        model = load_model(path)
        labels, _ = class_names.resolve(model.num_classes, model=model, model_path=path)

        def run(windows):
            return {k: np.asarray(v) for k, v in model(windows, training=False).items()}
        return cls(run, labels.names, model.sample_rate, getattr(model, "window", 0), **options)

    @classmethod
    def _saved_model(cls, folder, **options):
        import tensorflow as tf
        from glat_tf.data.labels import LabelMap
        serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
        labels = LabelMap.from_csv(folder / "assets" / "labels.csv")

        def run(windows):
            return {k: v.numpy() for k, v in serve(waveform=tf.constant(windows)).items()}
        facts = json.loads((folder / "assets" / "model.json").read_text())
        return cls(run, labels.names, facts["sample_rate"], facts["crop_samples"], **options)

    @classmethod
    def _litert(cls, folder, variant, **options):
        from edge_runtime import ExportMetadata
        from edge_runtime import Tagger as LiteTagger
        meta = ExportMetadata.read(folder)
        # Each window tagged on its own (no stream_end): the exact mode, as Keras does.
        lite = LiteTagger.from_export(folder, variant, mode="exact")

        def run(windows):
            hops = [lite(w) for w in windows]
            local = [h.local if h.local is not None else h.global_ for h in hops]
            return {"fused": np.stack([h.fused for h in hops]),
                    "global": np.stack([h.global_ for h in hops]), "local": np.stack(local),
                    "clip_starts": np.stack([h.starts for h in hops]),
                    "selected_classes": np.stack([h.classes for h in hops])}
        options.pop("window_seconds", None)
        return cls(run, [label.display_name for label in meta.labels], meta.sample_rate,
                   meta.crop_samples, fixed_window=meta.window_samples, **options)

    def windows(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, window) float32 windows of `waveform` and their start samples."""
        length = len(waveform)
        last = max(length - self.window, 0)
        starts = list(range(0, last + 1, self.hop))
        if starts[-1] != last:
            starts.append(last)  # the end of the file is always tagged
        size = self.window if (self.fixed_window or length >= self.window) else max(
            length, self.crop_samples)
        out = np.zeros([len(starts), size], np.float32)
        for i, s in enumerate(starts):
            piece = waveform[s:s + size]
            out[i, :len(piece)] = piece
        return out, np.asarray(starts)

    def tag(self, audio, sample_rate: int | None = None) -> Tags:
        """Tags of a file path or a waveform (samples,) / (samples, channels) at
        `sample_rate` (the model's if not given)."""
        if isinstance(audio, (str, pathlib.Path)):
            waveform = read_audio(audio, self.sample_rate)
        else:
            waveform = np.asarray(audio, np.float32)
            waveform = waveform.mean(axis=1) if waveform.ndim == 2 else waveform
            if sample_rate and sample_rate != self.sample_rate:
                import soxr
                waveform = soxr.resample(waveform, sample_rate, self.sample_rate).astype(np.float32)
        windows, starts = self.windows(waveform)
        parts = [self.run(windows[i:i + self.batch]) for i in range(0, len(windows), self.batch)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        rate = float(self.sample_rate)
        ends = np.minimum(starts + windows.shape[1], max(len(waveform), 1))
        n = out.get("clip_starts", np.zeros([len(windows), 0])).shape[1]
        clip_starts = (out["clip_starts"] + starts[:, None]) / rate if n else np.zeros([len(windows), 0])
        return Tags(self.labels, starts / rate, ends / rate, out.get("fused", out["global"]),
                    out["global"], out.get("local", out["global"]), clip_starts,
                    out.get("selected_classes", np.zeros([len(windows), 0], np.int64)),
                    self.crop_samples / rate)

