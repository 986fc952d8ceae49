"""Streaming mode: backbone features kept on the stream's grid, so a hop runs the backbones
on a short chunk of new audio instead of the whole window and N crops.

Exported by `glat-export tflite --streaming` (export/streaming.py explains the grid and
what differs from the exact pair). Per hop: each backbone's chunk model brings its
feature buffer up to the newest grid step, the global head scores the window's
features, the N windows are picked on the grid as SelectClips picks them, and the
local model scores each pick on its crop of the stream, once per crop (cached), at
most `crop_budget` new crops per hop; until its turn a pick is scored by the local
head on the local features of its window.
"""

from __future__ import annotations

import math

import numpy as np

from edge_runtime.tagger import HopResult, LiteModel, Tagger, max_mean

STREAMING_KEYS = ("stride_samples", "chunk_features", "clean_left", "clean_right",
                  "window_features", "crop_features", "channels")
PARTS = ("global_chunk", "local_chunk", "global_head", "local_head", "local_crop")
# New local crops per hop at most: two 3 s CNN10 crops and the chunks fit half a 1 s hop.
CROP_BUDGET = 2


def check_streaming(meta: dict, path="metadata") -> dict:
    """The metadata's "streaming" entry, validated; a clear error if the export lacks it."""
    facts = meta.get("streaming")
    if not isinstance(facts, dict):
        raise ValueError(f"{path}: no streaming models (export with glat-export tflite --streaming)")
    missing = [k for k in STREAMING_KEYS if k not in facts]
    if missing:
        raise ValueError(f"{path}: streaming entry lacks {missing}")
    if facts["clean_left"] + facts["clean_right"] >= facts["chunk_features"]:
        raise ValueError(f"{path}: a chunk of {facts['chunk_features']} features has no clean "
                         f"ones between margins {facts['clean_left']} and {facts['clean_right']}")
    if not 0 < facts["crop_features"] <= facts["window_features"]:
        raise ValueError(f"{path}: need 0 < crop_features <= window_features")
    return facts


def select_windows(clipwise: np.ndarray, framewise: np.ndarray, n_clips: int, crop: int,
                   suppress_overlap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """SelectClips on the grid: (classes (N,), start features (N,)).

    The top-N classes by clip score (ties to the lower index, as tf.math.top_k); for
    each, the window of `crop` features centred on its peak, floored to the grid and
    clamped into the window; with `suppress_overlap`, frames within crop // 4 of each
    peak are zeroed for the picks after it.
    """
    classes = np.argsort(-clipwise, kind="stable")[:n_clips]
    activations = np.array(framewise, np.float32)
    frames = len(activations)
    reach = crop // 4
    starts = []
    for k, cls in enumerate(classes):
        peak = int(np.argmax(activations[:, cls]))
        starts.append(min(max(math.floor(peak + 0.5 - crop / 2), 0), frames - crop))
        if suppress_overlap and k + 1 < n_clips:
            activations[max(0, peak - reach):peak + reach] = 0.0
    return classes.astype(np.int64), np.asarray(starts, np.int64)


class FeatureStream:
    """One backbone's features of the last `window_features` grid steps of the stream.

    Grid step g covers the stream's samples [g * stride, (g + 1) * stride). `advance`
    runs the chunk model on chunks ending at grid steps so that every feature is
    rewritten once its chunk reaches `clean_right` steps beyond it: what stays in the
    buffer is what the backbone computes inside a long stretch of audio, except the
    newest `clean_right` steps, which see the stream's end as the exact model sees
    its window's end.
    """

    def __init__(self, chunk_model, facts: dict):
        self.model = chunk_model
        self.stride = int(facts["stride_samples"])
        self.chunk = int(facts["chunk_features"])
        self.left, self.right = int(facts["clean_left"]), int(facts["clean_right"])
        self.size = int(facts["window_features"])
        self.features = np.zeros((self.size, int(facts["channels"])), np.float32)
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


class StreamingTagger(Tagger):
    """GL-AT on the stream's feature grid with the five streaming models of one variant.

    Per hop: both feature buffers advance by a chunk; the global head scores the
    window's features; the N windows are picked on the grid. The local stream scores
    each pick on its tau-second crop of the stream (the local model as trained), one
    crop per call, and caches the result by the crop's grid step: a crop is fixed
    audio, so a window picked again on a later hop costs nothing. At most
    `crop_budget` new crops run per hop, which bounds a hop's time; a pick beyond the
    budget is scored this hop by the local head on the local features of its window
    (`HopResult.crop_exact` says which) and gets its crop on a later hop.

    Called with the stream's recent audio (`history_samples`, ending at sample
    `stream_end`), returns a HopResult like Tagger's: window starts in samples from
    the exact window's start (stream_end - window_samples).

    Example:
        meta = read_metadata("lite/")
        files = meta["variants"]["int8"]
        tagger = StreamingTagger({p: f"lite/{files[p]}" for p in PARTS}, meta, crop_budget=2)
    """

    def __init__(self, models: dict, metadata: dict, threads: int = 1,
                 crop_budget: int = CROP_BUDGET):
        self._setup(metadata, threads)
        facts = check_streaming(self.metadata)
        missing = [p for p in PARTS if p not in models]
        if missing:
            raise ValueError(f"streaming needs the models {list(PARTS)}; missing {missing}")
        if not isinstance(crop_budget, int) or crop_budget < 0:
            raise ValueError(f"crop_budget must be an integer >= 0, got {crop_budget!r}")
        self.facts = facts
        self.crop_budget = crop_budget
        stride, chunk = int(facts["stride_samples"]), int(facts["chunk_features"])
        window, crop = int(facts["window_features"]), int(facts["crop_features"])
        channels = int(facts["channels"])
        self.stride = stride
        self.crop_features = crop
        self.suppress_overlap = bool(self.metadata.get("suppress_overlap", True))
        self.streams = {}
        for name in ("global", "local"):
            model = LiteModel(models[f"{name}_chunk"], threads, (1, chunk * stride),
                              ("features",), f"{name} chunk")
            self.streams[name] = FeatureStream(model, facts)
        self.global_head = LiteModel(models["global_head"], threads, (1, window, channels),
                                     ("clipwise", "framewise"), "global head")
        self.local_head = LiteModel(models["local_head"], threads, (self.n_clips, crop, channels),
                                    ("clipwise",), "local head")
        self.local_crop = LiteModel(models["local_crop"], threads, (1, self.crop_samples),
                                    ("clipwise",), "local crop")
        self.history_samples = max(self.window_samples,
                                   self.streams["global"].history_samples)
        self._crops: dict[int, np.ndarray] = {}  # crop's grid step -> its local scores (L,)

    def reset(self) -> None:
        for stream in self.streams.values():
            stream.reset()
        self._crops = {}

    def __call__(self, history: np.ndarray, stream_end: int | None = None) -> HopResult:
        history = np.asarray(history, dtype=np.float32)
        if history.shape != (self.history_samples,):
            raise ValueError(f"history must have shape ({self.history_samples},), got "
                             f"{history.shape}")
        if stream_end is None:
            raise ValueError("streaming needs stream_end: the stream's sample count at the "
                             "history's end")
        end = self.streams["global"].advance(history, stream_end)
        self.streams["local"].advance(history, stream_end)
        g = self.global_head(self.streams["global"].features[None])
        global_scores = g["clipwise"][0].astype(np.float32)
        framewise = g["framewise"][0]
        classes, starts = select_windows(global_scores, framewise, self.n_clips,
                                         self.crop_features, self.suppress_overlap)
        window_start = end - self.facts["window_features"]
        # A crop must be audio already heard: at the stream's end it starts earlier.
        steps = np.minimum(window_start + starts, (stream_end - self.crop_samples) // self.stride)
        per_clip, exact = self._local(history, stream_end, steps, starts, window_start)
        local_scores = max_mean(per_clip, axis=0)
        fused = max_mean(np.stack([global_scores, local_scores]), axis=0)
        offsets = steps * self.stride - (stream_end - self.window_samples)
        return HopResult(global_scores, local_scores, fused, framewise, offsets, classes, exact)

    def _local(self, history, stream_end, steps, starts, window_start):
        """(N, L) local scores of the picks, and (N,) which came from their crop (the rest
        from the local features of their window)."""
        # Windows only move forward: a crop that starts before this one is never picked again.
        self._crops = {k: v for k, v in self._crops.items() if k >= window_start}
        history_start = stream_end - len(history)
        per_clip = np.zeros((self.n_clips, self.num_classes), np.float32)
        exact = np.zeros(self.n_clips, bool)
        budget = self.crop_budget
        for i, step in enumerate(steps.tolist()):
            if step not in self._crops and budget > 0:
                offset = step * self.stride - history_start
                crop = history[offset:offset + self.crop_samples]
                self._crops[step] = self.local_crop(crop[None])["clipwise"][0].astype(np.float32)
                budget -= 1
            if step in self._crops:
                per_clip[i], exact[i] = self._crops[step], True
        if not exact.all():
            rows = starts[:, None] + np.arange(self.crop_features)  # (N, crop)
            estimate = self.local_head(self.streams["local"].features[rows])["clipwise"]
            per_clip[~exact] = estimate[~exact]
        return per_clip, exact
