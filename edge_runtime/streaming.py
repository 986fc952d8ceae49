"""Streaming mode: backbone features kept on the stream's grid, so a hop runs the backbones
on a short chunk of new audio instead of the whole window and N crops.

Exported by `glat-export tflite --streaming` (export/streaming.py explains the grid).
Per hop: each backbone's chunk model brings its feature buffer up to the newest grid
step and the global head scores the window's features (StreamFeatures, the Tagger's
feature source). A pick is scored exactly on its tau-second crop, once per crop (the
Tagger's CropCache), at most `crop_budget` new crops per hop; until its turn, by the local
head on the local features of its window. An exact crop score costs little: a crop's
features equal the local stream's except its first `clean_left` and last `clean_right`,
which the small `local_edge` model recomputes from the crop's two ends (EdgeCrops); the
local head on those features is the local model on the crop.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.contract import EDGE_PART, STREAMING_PARTS, ExportMetadata, StreamingPlan
from edge_runtime.lite import LiteModel
from edge_runtime.features import CropCache, GlobalView

class FeatureStream:
    """One backbone's features of the last `window_features` grid steps of the stream.

    Grid step g covers the stream's samples [g * stride, (g + 1) * stride). `advance`
    runs the chunk model on chunks ending at grid steps so that every feature is
    rewritten once its chunk reaches `clean_right` steps beyond it: what stays in the
    buffer is what the backbone computes inside a long stretch of audio, except the
    newest `clean_right` steps, which see the stream's end as the exact model sees
    its window's end.
    """

    def __init__(self, chunk_model, plan: StreamingPlan):
        self.model = chunk_model
        self.stride = plan.stride_samples
        self.chunk = plan.chunk_features
        self.left, self.right = plan.clean_left, plan.clean_right
        self.size = plan.window_features
        self.features = np.zeros((self.size, plan.channels), np.float32)
        self.end = None  # grid step one past the newest feature held

    @property
    def history_samples(self) -> int:
        """Audio `advance` may read before the stream's end (see the bound in advance)."""
        return (self.size + self.chunk + 1) * self.stride

    def reset(self) -> None:
        self.end = None

    def advance(self, history: np.ndarray, history_end: int) -> int:
        """Brings the buffer up to grid step floor(history_end / stride); returns that step.

        `history` holds the stream's samples [history_end - len(history), history_end),
        zeros before the stream began; it must hold `history_samples`.
        """
        end = history_end // self.stride
        if end == self.end:
            return end  # no new grid step: the features only read audio before end * stride
        first = end - self.size if self.end is None else max(self.end - self.right,
                                                             end - self.size)
        if self.end is not None:
            keep = self.size - (end - self.end)
            if keep > 0:
                self.features[:keep] = self.features[end - self.end:].copy()
        # Features [first, end) need writing. Chunks end `step` apart from the newest back,
        # so each one's clean part meets the next one's, until a clean part reaches `first`;
        # the oldest then starts at most (size + chunk) steps back: within history_samples.
        step = self.chunk - self.left - self.right
        ends = [end]
        while ends[-1] - self.chunk + self.left > first:
            ends.append(ends[-1] - step)
        history_start = history_end - len(history)
        window_start = end - self.size
        for chunk_end in reversed(ends):
            offset = (chunk_end - self.chunk) * self.stride - history_start
            if offset < 0:
                raise ValueError(f"history of {len(history)} samples is too short for the "
                                 f"chunk at grid step {chunk_end}")
            chunk = history[offset:offset + self.chunk * self.stride]
            features = self.model(chunk[None])["features"][0]  # (chunk, C)
            low = max(chunk_end - self.chunk + self.left, window_start)
            self.features[low - window_start:chunk_end - window_start] = \
                features[low - (chunk_end - self.chunk):]
        self.end = end
        return end


class StreamFeatures:
    """Streaming mode's source: both feature streams advanced to the history's end, the
    global head on the window's features; the view is on the grid (unit = stride)."""

    def __init__(self, streams: dict, global_head: LiteModel, plan: StreamingPlan):
        self.streams, self.head, self.plan = streams, global_head, plan
        self.history_samples = max(s.history_samples for s in streams.values())

    def reset(self) -> None:
        for stream in self.streams.values():
            stream.reset()

    def __call__(self, history: np.ndarray, stream_end: int) -> GlobalView:
        ends = {name: s.advance(history, stream_end) for name, s in self.streams.items()}
        g = self.head(self.streams["global"].features[None])
        origin = (ends["global"] - self.plan.window_features) * self.plan.stride_samples
        return GlobalView(g["global"][0].astype(np.float32), g["framewise"][0],
                          self.plan.window_features, self.plan.crop_features,
                          self.plan.stride_samples, origin)


class LocalHead:
    """The local head on (N, crop_features, C) features; `window(starts)` on the local
    stream's features of each pick's window (the stand-in while a crop waits)."""

    def __init__(self, model: LiteModel, stream: FeatureStream, plan: StreamingPlan):
        self.model, self.stream, self.plan = model, stream, plan
        self.rows = np.arange(plan.crop_features)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.model(features)["per_clip"]

    def window(self, starts: np.ndarray) -> np.ndarray:
        return self(self.stream.features[starts[:, None] + self.rows])


class EdgeCrops:
    """Exact local scores of crops from the local stream's features: each crop's first
    `clean_left` and last `clean_right` features from the local_edge model on its two ends,
    the rest the stream's own (equal inside a crop), then the local head."""

    def __init__(self, edge: LiteModel, head: LocalHead, n_clips: int, crop_samples: int):
        self.edge, self.head, plan = edge, head, head.plan
        self.plan, self.crop = plan, crop_samples
        self._ends = np.zeros((2, plan.edge_samples), np.float32)
        self._features = np.zeros((n_clips, plan.crop_features, plan.channels), np.float32)

    def __call__(self, history, history_start, begins):
        plan, stream = self.plan, self.head.stream
        left, right, size = plan.clean_left, plan.clean_right, plan.crop_features
        window_start = stream.end - plan.window_features
        for i, begin in enumerate(begins):
            offset = begin - history_start
            self._ends[0] = history[offset:offset + plan.edge_samples]
            self._ends[1] = history[offset + plan.edge_offset:
                                    offset + plan.edge_offset + plan.edge_samples]
            ends = self.edge(self._ends)["features"]  # (2, edge_features, C)
            at = begin // plan.stride_samples - window_start
            row = self._features[i]
            row[:left] = ends[0, :left]
            row[left:size - right] = stream.features[at + left:at + size - right]
            row[size - right:] = ends[1, ends.shape[1] - right:]
        return self.head(self._features)[:len(begins)]


class OneCrop:
    """The local model on one whole crop at a time (exports without an edge model)."""

    def __init__(self, model: LiteModel, crop_samples: int):
        self.model, self.crop = model, crop_samples

    def __call__(self, history, history_start, begins):
        return np.concatenate([self.model(history[None, b - history_start:
                                                  b - history_start + self.crop])["per_clip"]
                               for b in begins])


def streaming_parts(folder, meta: ExportMetadata, variant: str, threads: int,
                    crop_budget: int) -> tuple[StreamFeatures, CropCache | None]:
    """The feature source and the local scorer of one variant's streaming models."""
    if meta.streaming is None:
        raise ValueError(f"{folder}: no streaming models (export with glat-export tflite "
                         "--streaming)")
    if not isinstance(crop_budget, int) or crop_budget < 0:
        raise ValueError(f"crop_budget must be an integer >= 0, got {crop_budget!r}")
    plan = meta.streaming
    edges = bool(plan.edge_samples) and EDGE_PART in meta.variants.get(variant, {})
    parts = STREAMING_PARTS if meta.n_clips else ("global_chunk", "global_head")
    files = meta.files(variant, parts + ((EDGE_PART,) if edges else ()))

    def load(part, shape, outputs):
        return LiteModel(folder / files[part], threads, shape, outputs, part.replace("_", " "))
    chunk = (1, plan.chunk_features * plan.stride_samples)
    features = (plan.window_features, plan.channels)
    streams = {"global": FeatureStream(load("global_chunk", chunk, ("features",)), plan)}
    if meta.n_clips:
        streams["local"] = FeatureStream(load("local_chunk", chunk, ("features",)), plan)
    source = StreamFeatures(streams, load("global_head", (1, *features),
                                          ("global", "framewise")), plan)
    if not meta.n_clips:
        return source, None
    head = LocalHead(load("local_head", (meta.n_clips, plan.crop_features, plan.channels),
                          ("per_clip",)), streams["local"], plan)
    if edges:
        scorer = EdgeCrops(load(EDGE_PART, (2, plan.edge_samples), ("features",)), head,
                           meta.n_clips, meta.crop_samples)
    else:
        scorer = OneCrop(load("local_crop", (1, meta.crop_samples), ("per_clip",)),
                         meta.crop_samples)
    return source, CropCache(scorer, crop_budget, head.window)
