"""The pieces the Pipeline runs per hop: what a feature source gives (GlobalView),
the exact mode's source (the whole window), and the local scores of the picks (a crop cache
over a crop scorer). The streaming source is in edge_runtime/streaming.py."""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_runtime import glue
from edge_runtime.contract import ExportMetadata
from edge_runtime.lite import LiteModel


@dataclasses.dataclass
class GlobalView:
    """What a feature source gives per hop: global scores (L,), frame activations
    (frames, L) over a window of `length` units (`unit` samples each, the first at stream
    sample `origin`) in which a crop is `crop` units."""

    global_: np.ndarray
    framewise: np.ndarray
    length: int
    crop: int
    unit: int
    origin: int


class WindowFeatures:
    """Exact mode's source: the global model on the whole input, at its own length (the
    global model takes any number of samples >= the crop, resized per call)."""

    def __init__(self, global_model: LiteModel, meta: ExportMetadata):
        self.model, self.meta = global_model, meta
        self.history_samples = meta.window_samples

    def reset(self) -> None:
        """Nothing to forget: every window is tagged on its own."""

    def __call__(self, history: np.ndarray, stream_end: int) -> GlobalView:
        g = self.model(history[None])
        return GlobalView(g["global"][0].astype(np.float32), g["framewise"][0],
                          len(history), self.meta.crop_samples, 1, stream_end - len(history))


class CropCache:
    """Local scores of the picks, cached by the crop's first stream sample (a crop is fixed
    audio, so a window picked again costs nothing). `scorer(history, history_start,
    begins)` gives (len(begins), L); new crops per call cost at most `budget` (None: all),
    each `scorer.cost(begin)` (1 if the scorer has no cost), taken in pick order while they
    fit; the rest come from `fallback(begins)` (N, L) and are marked not exact."""

    def __init__(self, scorer, budget: int | None = None, fallback=None):
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ValueError(f"crop_budget must be an integer >= 0, got {budget!r}")
        if budget is not None and fallback is None:
            raise ValueError("a crop budget needs a fallback for the picks beyond it")
        self.scorer, self.budget, self.fallback = scorer, budget, fallback
        self.cache: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.cache = {}

    def __call__(self, history, stream_end, begins, window_origin):
        # Windows only move forward: a crop that starts before this window never returns.
        self.cache = {k: v for k, v in self.cache.items() if k >= window_origin}
        todo = list(dict.fromkeys(b for b in begins.tolist() if b not in self.cache))
        if self.budget is not None:
            cost, spent, fits = getattr(self.scorer, "cost", lambda begin: 1), 0, []
            for begin in todo:
                if spent + cost(begin) <= self.budget:
                    spent += cost(begin)
                    fits.append(begin)
            todo = fits
        if todo:
            scores = self.scorer(history, stream_end - len(history), todo)
            self.cache.update(zip(todo, scores.astype(np.float32)))
        exact = np.array([b in self.cache for b in begins.tolist()], bool)
        estimate = None if exact.all() else self.fallback(begins)  # (N, L)
        per_clip = np.stack([self.cache[b] if ok else estimate[i].astype(np.float32)
                             for i, (b, ok) in enumerate(zip(begins.tolist(), exact))])
        return per_clip, exact


class BatchCrops:
    """The local model on N crops at once (its fixed batch): exact mode's scorer."""

    def __init__(self, local_model: LiteModel, n_clips: int, crop_samples: int):
        self.model, self.crop = local_model, crop_samples
        self._crops = np.zeros((n_clips, crop_samples), np.float32)

    def __call__(self, history, history_start, begins):
        glue.cut_crops(history, np.asarray(begins) - history_start, self.crop,
                       out=self._crops[:len(begins)])
        return self.model(self._crops)["per_clip"][:len(begins)]
