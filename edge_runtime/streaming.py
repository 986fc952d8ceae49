"""Streaming mode: backbone features kept on the stream's grid, so a hop runs the backbones
on a short chunk of new audio instead of the whole window and N crops.

Exported by `glat-export tflite --streaming` (export/streaming.py explains the grid).
Per hop: each backbone's chunk model brings its feature buffer up to the newest grid
step; the window is the last `window_features` grid steps, and its first `clean_left`
global features come from the small `global_edge` model on the window's own start, so
the global head sees what the exact model computes on that window's audio
(StreamFeatures, the Pipeline's feature source). The picks are SelectClips' on that
window, in samples. A pick is scored exactly on its tau-second crop, once per crop (the
Pipeline's CropCache), new crops costing at most `crop_budget` per hop (a crop through
`local_edge` costs 1, a whole crop what its audio costs in those units: `whole_cost`);
until its turn, by the
local head on the local features nearest its crop. An exact crop score costs little: the
local stream's grid is shifted to where SelectClips' unclamped windows start
(`crop_phase`), so such a crop's features equal the local stream's except its first
`clean_left` and last `clean_right`, which the small `local_edge` model recomputes from
the crop's two ends (EdgeCrops); a window clamped to the window's start or end runs the
whole crop model.
"""

from __future__ import annotations

import numpy as np

from edge_runtime import glue
from edge_runtime.contract import (EDGE_PART, GLOBAL_EDGE_PART, STREAMING_PARTS, ExportMetadata,
                                   StreamingPlan)
from edge_runtime.features import CropCache, GlobalView
from edge_runtime.lite import LiteModel


def crop_phase(stride: int, crop: int) -> int:
    """Where (mod stride) SelectClips starts an unclamped window of `crop` samples in an
    input of whole grid steps: glue.window_starts' own arithmetic on a long enough input."""
    frames = 2 * (crop // stride + 2)
    return int(glue.window_starts(frames, frames * stride, crop)[frames // 2]) % stride


class FeatureStream:
    """One backbone's features of the last `window_features` grid steps of the stream.

    Grid step g covers the stream's samples [g * stride + phase, (g + 1) * stride + phase).
    `advance`
    runs the chunk model on chunks ending at grid steps so that every feature is
    rewritten once its chunk reaches `clean_right` steps beyond it: what stays in the
    buffer is what the backbone computes inside a long stretch of audio, except the
    newest `clean_right` steps, which see the stream's end as the exact model sees
    its window's end.
    """

    def __init__(self, chunk_model, plan: StreamingPlan, phase: int = 0):
        self.model, self.phase = chunk_model, phase
        self.stride = plan.stride_samples
        self.chunk = plan.chunk_features
        self.left, self.right = plan.clean_left, plan.clean_right
        self.size = plan.window_features
        self.features = np.zeros((self.size, plan.channels), np.float32)
        self.end = None  # grid step one past the newest feature held

    @property
    def history_samples(self) -> int:
        """Audio `advance` may read before the stream's end (see the bound in advance)."""
        return (self.size + self.chunk + 1) * self.stride + self.phase

    def reset(self) -> None:
        self.end = None

    def advance(self, history: np.ndarray, history_end: int) -> int:
        """Brings the buffer up to grid step floor((history_end - phase) / stride); returns
        that step.

        `history` holds the stream's samples [history_end - len(history), history_end),
        zeros before the stream began; it must hold `history_samples`.
        """
        end = (history_end - self.phase) // self.stride
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
            offset = (chunk_end - self.chunk) * self.stride + self.phase - history_start
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
    """Streaming mode's source: both feature streams advanced to the history's end; the
    window is the global stream's last `window_features` grid steps, its first
    `clean_left` features from `edge` (global_edge) on the window's start; the global head
    on them. The view is in samples, as SelectClips sees a window of whole grid steps."""

    def __init__(self, streams: dict, global_head: LiteModel, plan: StreamingPlan,
                 crop_samples: int, edge: LiteModel | None):
        self.streams, self.head, self.plan, self.edge = streams, global_head, plan, edge
        self.crop = crop_samples
        self.history_samples = max(s.history_samples for s in streams.values())
        self._window = np.zeros((1, plan.window_features, plan.channels), np.float32)

    def reset(self) -> None:
        for stream in self.streams.values():
            stream.reset()

    def __call__(self, history: np.ndarray, stream_end: int) -> GlobalView:
        ends = {name: s.advance(history, stream_end) for name, s in self.streams.items()}
        plan = self.plan
        origin = (ends["global"] - plan.window_features) * plan.stride_samples
        window = self._window[0]
        window[:] = self.streams["global"].features
        if self.edge is not None:
            at = origin - (stream_end - len(history))
            first = self.edge(history[None, at:at + plan.global_edge_samples])["features"][0]
            window[:plan.clean_left] = first[:plan.clean_left]
        g = self.head(self._window)
        return GlobalView(g["global"][0].astype(np.float32), g["framewise"][0],
                          plan.window_features * plan.stride_samples, self.crop, 1, origin)


class LocalHead:
    """The local head on (N, crop_features, C) features; `window(begins)` on the local
    stream's features nearest each crop starting at stream sample `begins` (the stand-in
    while a crop waits)."""

    def __init__(self, model: LiteModel, stream: FeatureStream, plan: StreamingPlan):
        self.model, self.stream, self.plan = model, stream, plan
        self.rows = np.arange(plan.crop_features)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.model(features)["per_clip"]

    def first_rows(self, begins, clean: bool = False) -> np.ndarray:
        """The local buffer's row of the grid step where each crop starts; `clean`: moved
        back, if need be, off the newest clean_right rows, which see the stream's end (so a
        stand-in does not change with where a hop ends on the grid)."""
        stream = self.stream
        steps = np.rint((np.asarray(begins) - stream.phase) / stream.stride).astype(np.int64)
        last = stream.size - len(self.rows) - (self.plan.clean_right if clean else 0)
        return np.clip(steps - (stream.end - stream.size), 0, max(0, last))

    def window(self, begins) -> np.ndarray:
        return self(self.stream.features[self.first_rows(begins, clean=True)[:, None]
                                         + self.rows])


class OneCrop:
    """The local model on one whole crop at a time."""

    def __init__(self, model: LiteModel, crop_samples: int):
        self.model, self.crop = model, crop_samples

    def __call__(self, history, history_start, begins):
        return np.concatenate([self.model(history[None, b - history_start:
                                                  b - history_start + self.crop])["per_clip"]
                               for b in begins])


class EdgeCrops:
    """Exact local scores of crops. A crop that starts on the local stream's grid: its
    first `clean_left` and last `clean_right` features from the local_edge model on its two
    ends, the rest the stream's own (equal inside a crop), then the local head. Any other
    crop (a window clamped to the window's start or end): the whole crop model."""

    def __init__(self, edge: LiteModel, head: LocalHead, n_clips: int, whole: OneCrop):
        self.edge, self.head, self.whole = edge, head, whole
        self.plan = head.plan
        self.whole_cost = whole_cost(self.plan, whole.crop)
        self._ends = np.zeros((2, self.plan.edge_samples), np.float32)
        self._features = np.zeros((n_clips, self.plan.crop_features, self.plan.channels),
                                  np.float32)

    def on_grid(self, begin: int) -> bool:
        return (begin - self.head.stream.phase) % self.plan.stride_samples == 0

    def cost(self, begin: int) -> int:
        """Budget units of a new crop: 1 through the edges, more for a whole crop."""
        return 1 if self.on_grid(begin) else self.whole_cost

    def __call__(self, history, history_start, begins):
        plan, stream = self.plan, self.head.stream
        left, right, size = plan.clean_left, plan.clean_right, plan.crop_features
        begins = list(begins)
        on_grid = [self.on_grid(b) for b in begins]
        rows = self.head.first_rows([b for b, on in zip(begins, on_grid) if on])
        for i, (begin, at) in enumerate(zip([b for b, on in zip(begins, on_grid) if on], rows)):
            offset = begin - history_start
            self._ends[0] = history[offset:offset + plan.edge_samples]
            self._ends[1] = history[offset + plan.edge_offset:
                                    offset + plan.edge_offset + plan.edge_samples]
            ends = self.edge(self._ends)["features"]  # (2, edge_features, C)
            row = self._features[i]
            row[:left] = ends[0, :left]
            row[left:size - right] = stream.features[at + left:at + size - right]
            row[size - right:] = ends[1, ends.shape[1] - right:]
        scores = {}
        if any(on_grid):
            edged = self.head(self._features)
            scores.update((j, edged[k]) for k, j in enumerate(np.flatnonzero(on_grid)))
        off = [j for j, on in enumerate(on_grid) if not on]
        if off:
            whole = self.whole(history, history_start, [begins[j] for j in off])
            scores.update(zip(off, whole))
        return np.stack([scores[j] for j in range(len(begins))])


def whole_cost(plan: StreamingPlan, crop_samples: int) -> int:
    """Budget units of a whole crop: its audio over the two edge runs' (at least 1)."""
    if not plan.edge_samples:
        return 1
    return max(1, round(crop_samples / (2 * plan.edge_samples)))


def full_budget(meta: ExportMetadata) -> int:
    """A crop budget that scores every pick, every hop."""
    return meta.n_clips * (whole_cost(meta.streaming, meta.crop_samples)
                           if meta.streaming is not None else 1)


def streaming_parts(folder, meta: ExportMetadata, variant: str, threads: int,
                    crop_budget: int) -> tuple[StreamFeatures, CropCache | None]:
    """The feature source and the local scorer of one variant's streaming models."""
    if meta.streaming is None:
        raise ValueError(f"{folder}: no streaming models (export with glat-export tflite "
                         "--streaming)")
    if not meta.streaming.exact_edges:
        raise ValueError(f"{folder}: streaming models from an older export (no global_edge): "
                         "re-export with glat-export tflite --streaming, or run --exact")
    if not isinstance(crop_budget, int) or crop_budget < 0:
        raise ValueError(f"crop_budget must be an integer >= 0, got {crop_budget!r}")
    plan = meta.streaming
    edges = bool(plan.edge_samples) and EDGE_PART in meta.variants.get(variant, {})
    parts = STREAMING_PARTS if meta.n_clips else ("global_chunk", "global_head")
    parts += (GLOBAL_EDGE_PART,) if plan.global_edge_samples else ()
    files = meta.files(variant, parts + ((EDGE_PART,) if edges else ()))

    def load(part, shape, outputs):
        return LiteModel(folder / files[part], threads, shape, outputs, part.replace("_", " "))
    chunk = (1, plan.chunk_features * plan.stride_samples)
    features = (plan.window_features, plan.channels)
    streams = {"global": FeatureStream(load("global_chunk", chunk, ("features",)), plan)}
    if meta.n_clips:
        # On the grid where SelectClips' unclamped windows start: their crops line up with it.
        streams["local"] = FeatureStream(load("local_chunk", chunk, ("features",)), plan,
                                         crop_phase(plan.stride_samples, meta.crop_samples))
    edge = (load(GLOBAL_EDGE_PART, (1, plan.global_edge_samples), ("features",))
            if plan.global_edge_samples else None)
    source = StreamFeatures(streams, load("global_head", (1, *features), ("global", "framewise")),
                            plan, meta.crop_samples, edge)
    if not meta.n_clips:
        return source, None
    head = LocalHead(load("local_head", (meta.n_clips, plan.crop_features, plan.channels),
                          ("per_clip",)), streams["local"], plan)
    whole = OneCrop(load("local_crop", (1, meta.crop_samples), ("per_clip",)), meta.crop_samples)
    scorer = (EdgeCrops(load(EDGE_PART, (2, plan.edge_samples), ("features",)), head,
                        meta.n_clips, whole) if edges else whole)
    return source, CropCache(scorer, crop_budget, head.window)
