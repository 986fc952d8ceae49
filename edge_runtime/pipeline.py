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
from glat_core.audio import pad_to, shortest_input
from glat_core.tags import window_record

MODES = ("exact", "streaming")
# The mode a Pipeline runs when none is asked for (an export with streaming models): its
# window equals the exact model's on the same audio, and its fused mAP on the demo eval clips
# is within 0.005 of the exact mode's at the default crop budget (glat-export report; README).
DEFAULT_MODE = "streaming"
# New local crops per hop at most in streaming mode: bounds a hop's time (bench/edge_latency.py).
CROP_BUDGET = 2


@dataclasses.dataclass
class HopResult:
    """Scores of one stretch of audio, the stream's samples [start, end): `global_`,
    `local`, `fused` (L,), `framewise` (T', L), `clip_starts` (N,) samples from `start`
    (as the model's own output), `selected_classes` (N,), `crop_exact` (N,): which picks the
    local model scored on their crop (the rest, in streaming mode, from the local features
    of the window while waiting for their turn). A backbone-only export has no picks and
    `local` None."""

    global_: np.ndarray
    local: np.ndarray | None
    fused: np.ndarray
    framewise: np.ndarray
    clip_starts: np.ndarray
    selected_classes: np.ndarray
    crop_exact: np.ndarray | None = None
    start: int = 0
    end: int = 0


class Pipeline:
    """GL-AT on an exported LiteRT folder, one window per call (no TensorFlow needed).

    `pipeline(history, stream_end)` takes the stream's last `history_samples` samples
    (zeros before it began) ending at stream sample `stream_end` and returns a HopResult.
    `record(...)` / `json_line(...)` turn a result into the JSON line's dict / text.

    Example:
        pipeline = Pipeline.from_export("lite/", variant="int8", mode="streaming")
        result = pipeline(np.zeros(pipeline.history_samples, np.float32), stream_end=320000)
        result.fused.shape  # (num_classes,)
    """

    def __init__(self, meta: ExportMetadata, features, local: CropCache | None, mode: str,
                 exact=None):
        self.meta, self.features, self.local, self.mode = meta, features, local, mode
        self.sample_rate = meta.sample_rate
        self.window_samples = meta.window_samples
        self.crop_samples = meta.crop_samples
        self.n_clips = meta.n_clips
        self.num_classes = meta.num_classes
        self.labels = meta.label_names
        self.history_samples = max(meta.window_samples, features.history_samples)
        # The shortest input a model answers (every path pads shorter ones at their end to
        # it): one crop, or for a backbone-only export one second, as the SavedModel.
        self.min_samples = shortest_input(meta.crop_samples if meta.n_clips else 0,
                                          meta.sample_rate)
        self._exact_tagger, self._make_exact = None, exact  # the exact mode, for `exact()`

    @classmethod
    def from_export(cls, folder, variant: str = "int8", mode: str = "auto", threads: int = 1,
                    crop_budget: int = CROP_BUDGET) -> "Pipeline":
        """The Pipeline of `variant` in `mode` ("exact", "streaming", or "auto": the default
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

        def exact():
            return cls.from_export(folder, variant, "exact", threads)
        if mode == "exact":
            files = meta.files(variant, ("global", "local") if meta.n_clips else ("global",))
            model = LiteModel(folder / files["global"], threads, (1, -1),
                              ("global", "framewise"), "global")
            local = None
            if meta.n_clips:
                local = CropCache(BatchCrops(LiteModel(
                    folder / files["local"], threads, (meta.n_clips, meta.crop_samples),
                    ("per_clip",), "local"), meta.n_clips, meta.crop_samples))
            return cls(meta, WindowFeatures(model, meta), local, mode, exact)
        features, local = streaming_parts(folder, meta, variant, threads, crop_budget)
        return cls(meta, features, local, mode, exact)

    def reset(self) -> None:
        """Forget the stream (feature buffers, crop cache)."""
        self.features.reset()
        if self.local is not None:
            self.local.reset()

    def __call__(self, history: np.ndarray, stream_end: int | None = None) -> HopResult:
        """The window of the stream ending at sample `stream_end`, from `history` (its last
        `history_samples` samples, zeros before the stream began). Exact mode answers a
        window the stream has not yet filled (stream_end < window_samples) as `exact` does
        the audio heard so far."""
        history = np.asarray(history, dtype=np.float32)
        if history.shape != (self.history_samples,):
            raise ValueError(f"history must have shape ({self.history_samples},), got "
                             f"{history.shape}")
        if stream_end is None:
            if self.mode != "exact":
                raise ValueError("streaming needs stream_end: the stream's sample count at the "
                                 "history's end")
            return self.exact(history[-self.window_samples:])
        if self.mode == "exact":
            heard = history[max(0, len(history) - stream_end):]
            return self.exact(heard[-self.window_samples:], start=stream_end - min(
                stream_end, self.window_samples))
        return self._run(history, stream_end)

    def exact(self, audio: np.ndarray, start: int = 0) -> HopResult:
        """The exact pipeline on `audio` at its own length, as the Keras model tags it
        (end-padded with zeros to `min_samples` if shorter: every path's rule); clip_starts count
        from the audio's first sample, which is stream sample `start`."""
        audio = pad_to(np.asarray(audio, np.float32), self.min_samples)
        if not len(audio):
            raise ValueError("no audio to tag")
        tagger = self if self.mode == "exact" else self._exact()
        tagger.reset()  # an independent input: nothing cached belongs to it
        result = tagger._run(audio, len(audio))
        return dataclasses.replace(result, start=start, end=start + len(audio))

    def global_outputs(self, audio: np.ndarray):
        """The global model alone on `audio` at its own length (exact mode's models):
        a GlobalView with its `global_` scores and `framewise` activations. What export's
        report times and checks, without reaching into the pipeline."""
        tagger = self if self.mode == "exact" else self._exact()
        audio = pad_to(np.asarray(audio, np.float32), self.min_samples)
        return tagger.features(audio, len(audio))

    def crop_scores(self, audio: np.ndarray, starts) -> np.ndarray:
        """The local model's scores (len(starts), L) of the crops of `audio` at `starts`
        (samples), each run afresh (no cache, no budget): what acceptance compares with
        the Keras local stream on the same crops."""
        if not self.n_clips:
            raise ValueError("a backbone-only export has no local model")
        tagger = self if self.mode == "exact" else self._exact()
        return tagger.local.scorer(np.asarray(audio, np.float32), 0, [int(s) for s in starts])

    def _run(self, history: np.ndarray, stream_end: int) -> HopResult:
        view = self.features(history, stream_end)
        if view.global_.shape != (self.num_classes,):
            raise ValueError(f"the global model gives {view.global_.shape[-1]} classes, "
                             f"metadata.json says {self.num_classes}")
        # The audio the answer covers: the whole input (exact), or the streamed window's
        # whole grid steps, which may end a little before the stream does (streaming).
        window_start = view.origin
        window_end = view.origin + view.length * view.unit
        if not self.n_clips:
            fused, _ = glue.fuse(view.global_, np.zeros((0, self.num_classes), np.float32))
            empty = np.zeros(0, np.int64)
            return HopResult(view.global_, None, fused, view.framewise, empty, empty,
                             np.zeros(0, bool), window_start, window_end)
        classes, starts = glue.select(view.global_, view.framewise, self.n_clips, view.crop,
                                      view.length, self.meta.suppress_overlap)
        # A crop is audio already heard: at the stream's end (streaming) it starts earlier.
        latest = (stream_end - self.crop_samples) // view.unit * view.unit
        begins = np.minimum(view.origin + starts * view.unit, latest)
        per_clip, exact = self.local(history, stream_end, begins, view.origin)
        fused, local = glue.fuse(view.global_, per_clip)
        return HopResult(view.global_, local, fused, view.framewise, begins - window_start,
                         classes, exact, window_start, window_end)

    def record(self, result: HopResult, top_k: int = 5, file: str | None = None,
               partial: bool = False, final: bool = False, nan_samples: int = 0) -> dict:
        """The tag record (glat_core.tags) of a result: the stream's samples it covers,
        clips in stream seconds cut to that audio."""
        start = max(result.start, 0)
        return window_record(self.labels, result.fused, result.global_, result.local,
                             result.start + np.asarray(result.clip_starts), result.selected_classes,
                             start=start, end=result.end, sample_rate=self.sample_rate,
                             crop_samples=self.crop_samples, top_k=top_k, file=file,
                             partial=partial, final=final, nan_samples=nan_samples)

    def json_line(self, *args, **kwargs) -> str:
        return json.dumps(self.record(*args, **kwargs), ensure_ascii=False)

    def _exact(self) -> "Pipeline":
        if self._exact_tagger is None:
            self._exact_tagger = self._make_exact()
        return self._exact_tagger
