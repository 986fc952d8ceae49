"""The one GL-AT pipeline of the edge runtime: features -> global head -> select -> local
scores (crop cache) -> fuse, over a feature source that is either the whole window (exact
mode) or the stream's feature grid (streaming mode, edge_runtime/streaming.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from edge_runtime import glue
from edge_runtime.contract import ExportMetadata
from edge_runtime.features import BatchCrops, CropCache, WindowFeatures
from edge_runtime.lite import LiteModel
from edge_runtime.streaming import streaming_parts

MODES = ("exact", "streaming")
# The mode a Tagger runs when none is asked for (an export with streaming models): its
# window equals the exact model's on the same audio, and its fused mAP on the demo eval clips
# is within 0.005 of the exact mode's at the default crop budget (glat-export report; README).
DEFAULT_MODE = "streaming"
# New local crops per hop at most in streaming mode: bounds a hop's time (bench/edge_latency.py).
CROP_BUDGET = 2


@dataclasses.dataclass
class HopResult:
    """Scores of one window: `global_`, `local`, `fused` (L,), `framewise` (T', L),
    `starts` (N,) samples from the window's start, `classes` (N,), `crop_exact` (N,):
    which picks the local model scored on their crop (the rest, in streaming mode, from
    the local features of the window while waiting for their turn). A backbone-only
    export has no picks and `local` None."""

    global_: np.ndarray
    local: np.ndarray | None
    fused: np.ndarray
    framewise: np.ndarray
    starts: np.ndarray
    classes: np.ndarray
    crop_exact: np.ndarray | None = None


class Tagger:
    """GL-AT on an exported LiteRT folder, one window per call (no TensorFlow needed).

    `tagger(history, stream_end)` takes the stream's last `history_samples` samples
    (zeros before it began) ending at stream sample `stream_end` and returns a HopResult.
    `record(...)` / `json_line(...)` turn a result into the JSON line's dict / text.

    Example:
        tagger = Tagger.from_export("lite/", variant="int8", mode="streaming")
        result = tagger(np.zeros(tagger.history_samples, np.float32), stream_end=320000)
        result.fused.shape  # (num_classes,)
    """

    def __init__(self, meta: ExportMetadata, features, local: CropCache | None, mode: str,
                 final=None):
        self.meta, self.features, self.local, self.mode = meta, features, local, mode
        self.sample_rate = meta.sample_rate
        self.window_samples = meta.window_samples
        self.crop_samples = meta.crop_samples
        self.n_clips = meta.n_clips
        self.num_classes = meta.num_classes
        self.labels = meta.label_names
        self.history_samples = max(meta.window_samples, features.history_samples)
        self._final = final  # builds the exact Tagger that answers for a whole short input

    @classmethod
    def from_export(cls, folder, variant: str = "int8", mode: str = "auto", threads: int = 1,
                    crop_budget: int = CROP_BUDGET) -> "Tagger":
        """The Tagger of `variant` in `mode` ("exact", "streaming", or "auto": the default
        mode if the export has its models, else exact), files as metadata.json lists them."""
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        folder = pathlib.Path(os.fspath(folder))
        meta = ExportMetadata.read(folder)
        if mode == "auto":
            has = (meta.streaming is not None and meta.streaming.exact_edges
                   and "global_chunk" in meta.variants.get(variant, {}))
            mode = DEFAULT_MODE if has else "exact"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or 'auto', got {mode!r}")

        def final():
            return cls.from_export(folder, variant, "exact", threads)
        if mode == "exact":
            files = meta.files(variant, ("global", "local") if meta.n_clips else ("global",))
            model = LiteModel(folder / files["global"], threads, (1, meta.window_samples),
                              ("global", "framewise"), "global")
            local = None
            if meta.n_clips:
                local = CropCache(BatchCrops(LiteModel(
                    folder / files["local"], threads, (meta.n_clips, meta.crop_samples),
                    ("per_clip",), "local"), meta.n_clips, meta.crop_samples))
            return cls(meta, WindowFeatures(model, meta), local, mode, final)
        features, local = streaming_parts(folder, meta, variant, threads, crop_budget)
        return cls(meta, features, local, mode, final)

    def reset(self) -> None:
        """Forget the stream (feature buffers, crop cache)."""
        self.features.reset()
        if self.local is not None:
            self.local.reset()

    def __call__(self, history: np.ndarray, stream_end: int | None = None) -> HopResult:
        history = np.asarray(history, dtype=np.float32)
        if history.shape != (self.history_samples,):
            raise ValueError(f"history must have shape ({self.history_samples},), got "
                             f"{history.shape}")
        if stream_end is None:
            if self.mode != "exact":
                raise ValueError("streaming needs stream_end: the stream's sample count at the "
                                 "history's end")
            self.reset()  # an independent window: nothing cached belongs to it
            stream_end = self.window_samples
        view = self.features(history, stream_end)
        if view.global_.shape != (self.num_classes,):
            raise ValueError(f"the global model gives {view.global_.shape[-1]} classes, "
                             f"metadata.json says {self.num_classes}")
        if not self.n_clips:
            fused, _ = glue.fuse(view.global_, np.zeros((0, self.num_classes), np.float32))
            empty = np.zeros(0, np.int64)
            return HopResult(view.global_, None, fused, view.framewise, empty, empty,
                             np.zeros(0, bool))
        classes, starts = glue.select(view.global_, view.framewise, self.n_clips, view.crop,
                                      view.length, self.meta.suppress_overlap)
        # A crop is audio already heard: at the stream's end (streaming) it starts earlier.
        latest = (stream_end - self.crop_samples) // view.unit * view.unit
        begins = np.minimum(view.origin + starts * view.unit, latest)
        per_clip, exact = self.local(history, stream_end, begins, view.origin)
        fused, local = glue.fuse(view.global_, per_clip)
        offsets = begins - (stream_end - self.window_samples)
        return HopResult(view.global_, local, fused, view.framewise, offsets, classes, exact)

    def final(self, audio: np.ndarray) -> HopResult:
        """The exact pipeline on a whole input shorter than the window, end-padded with
        zeros as the SavedModel sees it after padding: starts count from the input's start."""
        audio = np.asarray(audio, np.float32)
        if len(audio) > self.window_samples:
            raise ValueError(f"final() takes at most one window ({self.window_samples} "
                             f"samples), got {len(audio)}")
        exact = self if self.mode == "exact" else self._final()
        window = np.zeros(self.window_samples, np.float32)
        window[:len(audio)] = audio
        exact.reset()
        return exact(window, stream_end=self.window_samples)

    def record(self, result: HopResult, time: float, partial: bool, top_k: int = 5,
               nan_samples: int = 0, window_start: float | None = None,
               final: bool = False) -> dict:
        """The JSON line of a window ending at stream `time` seconds.

        Windows are in stream seconds (the model window's first sample at `window_start`,
        default `time` minus the window), cut to the audio heard, [0, time]; a window with
        none of it (all in a partial window's zero padding) is left out, never zero-length.
        `nan_samples` (non-finite input frames replaced by 0 since the last line) is written
        only when non-zero; `final` marks the answer for the whole input at its end.
        """
        order = np.argsort(-result.fused, kind="stable")[:max(0, top_k)]
        top = []
        for i in order:
            entry = {"label": self.labels[i][0], "mid": self.labels[i][1],
                     "fused": round(float(result.fused[i]), 5),
                     "global": round(float(result.global_[i]), 5)}
            if result.local is not None:
                entry["local"] = round(float(result.local[i]), 5)
            top.append(entry)
        if window_start is None:
            window_start = time - self.window_samples / self.sample_rate
        windows = []
        for start, cls in zip(result.starts, result.classes):
            begin = window_start + start / self.sample_rate
            end = min(begin + self.crop_samples / self.sample_rate, time)
            begin = max(begin, 0.0)
            if round(end, 3) > round(begin, 3):
                windows.append({"label": self.labels[int(cls)][0], "start": round(begin, 3),
                                "end": round(end, 3)})
        line = {"time": round(time, 3), "partial": bool(partial), "top": top, "windows": windows}
        if final:
            line["final"] = True
        if nan_samples:
            line["nan_samples"] = int(nan_samples)
        return line

    def json_line(self, *args, **kwargs) -> str:
        return json.dumps(self.record(*args, **kwargs), ensure_ascii=False)

