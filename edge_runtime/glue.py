"""GL-AT's NumPy glue, written once: PANNs pooling and fusion, SelectClips' window starts
and picks, crop cutting. The edge runtime runs it; export/ uses it for acceptance and the
report; tests check it against glat_tf's SelectClips and GlatModel.

Units: a pick's window is `crop` units long in an input of `length` units with `frames`
activation frames; units are samples for the exact model (SelectClips) and grid steps
for the streaming models (where length == frames).
"""

from __future__ import annotations

import numpy as np

SUPPRESS_OVERLAP = (True, False)


def max_mean(scores: np.ndarray, axis: int) -> np.ndarray:
    """PANNs' pooling P, as in glat_tf: (max + mean) / 2 along `axis`."""
    scores = np.asarray(scores, np.float32)
    return (scores.max(axis=axis) + scores.mean(axis=axis, dtype=np.float32)) / np.float32(2)


def fuse(global_scores: np.ndarray, per_clip: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(fused (L,), local (L,)) from global (L,) and the local scores of the picks (N, L):
    local = P over picks, fused = P over (global, local). No picks (a backbone-only
    export): fused is the global score and there is no local one."""
    global_scores = np.asarray(global_scores, np.float32)
    if len(per_clip) == 0:
        return global_scores, None
    local = max_mean(per_clip, axis=0)
    return max_mean(np.stack([global_scores, local]), axis=0), local


def window_starts(frames: int, length: int, crop: int) -> np.ndarray:
    """(frames,) start of the window centred on each frame, clamped into the input, in
    SelectClips' float32 arithmetic: floor((f + 0.5) * length / frames - crop / 2)."""
    per_frame = np.float32(length) / np.float32(frames)
    centres = (np.arange(frames, dtype=np.float32) + np.float32(0.5)) * per_frame
    starts = np.floor(centres - np.float32(crop / 2)).astype(np.int64)
    return np.clip(starts, 0, length - crop)


def top_classes(clipwise: np.ndarray, n_clips: int) -> np.ndarray:
    """The N classes of highest clip score, ties to the lower index (as tf.math.top_k)."""
    return np.argsort(-np.asarray(clipwise, np.float32), kind="stable")[:n_clips].astype(np.int64)


def select(clipwise: np.ndarray, framewise: np.ndarray, n_clips: int, crop: int, length: int,
           suppress_overlap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """SelectClips on one input: (classes (N,), starts (N,)) in the units of `crop`/`length`.

    For each of the top-N classes the frame of its highest activation (the first of equal
    ones); the window of `crop` centred there, clamped. With `suppress_overlap` the frames
    within o = (crop * frames // length) // 4 of each peak are zeroed for later picks.
    """
    if suppress_overlap not in SUPPRESS_OVERLAP:
        raise NotImplementedError(f"the edge runtime selects with suppress_overlap in "
                                  f"{SUPPRESS_OVERLAP}, not {suppress_overlap!r}")
    activations = np.array(framewise, np.float32)  # a copy: suppression writes into it
    frames = len(activations)
    if not 0 < crop <= length:
        raise ValueError(f"a window of {crop} does not fit an input of {length}")
    classes = top_classes(clipwise, n_clips)
    grid = window_starts(frames, length, crop)
    reach = (crop * frames // length) // 4
    peaks = []
    for k, cls in enumerate(classes):
        peak = int(np.argmax(activations[:, cls]))
        peaks.append(peak)
        if suppress_overlap and k + 1 < n_clips:
            activations[max(0, peak - reach):peak + reach] = 0.0
    return classes, grid[np.asarray(peaks, np.int64)] if peaks else np.zeros(0, np.int64)


def cut_crops(audio: np.ndarray, starts, crop: int, out: np.ndarray | None = None) -> np.ndarray:
    """(N, crop) float32: audio[s:s + crop] for each start (into `out` if given)."""
    audio = np.asarray(audio, np.float32)
    starts = np.asarray(starts, np.int64).reshape(-1)
    if out is None:
        out = np.empty((len(starts), crop), np.float32)
    if len(starts) and (starts.min() < 0 or starts.max() + crop > len(audio)):
        raise ValueError(f"crops at {starts.tolist()} of {crop} fall outside {len(audio)} samples")
    for i, start in enumerate(starts.tolist()):
        out[i] = audio[start:start + crop]
    return out
