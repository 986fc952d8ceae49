"""Representative inputs for int8 calibration: real clips from shards, shaped as each
exported model sees them (whole windows, the crops the model picks, streaming chunks)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edge_runtime import glue


def stream_inputs(model, stream: str, clips: np.ndarray) -> list[np.ndarray]:
    """Representative inputs of one stream: whole windows, or the crops the model picks in them."""
    clips = np.asarray(clips, np.float32)
    if stream == "global":
        return [clip[None] for clip in clips]
    inputs = []
    for start in range(0, len(clips), 16):
        batch = clips[start:start + 16]
        starts = model.global_stage(tf.constant(batch))["clip_starts"].numpy()  # (batch, N)
        for clip, row in zip(batch, starts):
            inputs.append(glue.cut_crops(clip, row, model.crop_samples))
    return inputs


def crop_inputs(model, windows: np.ndarray) -> list[np.ndarray]:
    """One-crop inputs: the crops the model picks in the calibration windows."""
    return [crop[None] for crops in stream_inputs(model, "local", windows) for crop in crops]


def streaming_inputs(part: str, model, windows: np.ndarray, facts: dict) -> list[np.ndarray]:
    """int8 calibration inputs of one streaming part (export/streaming.py's parts)."""
    if part.endswith("_chunk"):
        return chunk_inputs(windows, facts)
    if part == "global_edge":  # a window's start
        return [w[None, :facts["global_edge_samples"]] for w in np.asarray(windows, np.float32)]
    if part == "local_edge":  # a crop's two ends, as the runtime cuts them
        length, offset = facts["edge_samples"], facts["edge_offset"]
        return [np.stack([c[0, :length], c[0, offset:offset + length]])
                for c in crop_inputs(model, windows)]
    return crop_inputs(model, windows)


def chunk_inputs(windows: np.ndarray, facts: dict, per_window: int = 2) -> list[np.ndarray]:
    """Chunk-length inputs cut from calibration windows: the start and the end of each."""
    length = facts["chunk_features"] * facts["stride_samples"]
    starts = np.linspace(0, windows.shape[1] - length, per_window).astype(int)
    return [w[None, s:s + length] for w in np.asarray(windows, np.float32) for s in starts]


def fit_length(clips: np.ndarray, samples: int) -> np.ndarray:
    """(clips, S) -> (clips, samples): the first `samples`, zero-padded at the end if shorter."""
    clips = np.asarray(clips, np.float32)[:, :samples]
    return np.pad(clips, [(0, 0), (0, samples - clips.shape[1])])


def read_calibration(pattern: str, num_classes: int, window_samples: int, clips: int = 200,
                     min_clips: int = 100) -> np.ndarray:
    """(clips, window_samples) float32 waveforms read from TFRecord shards matching `pattern`."""
    from glat_tf.data.pipeline import eval_dataset
    if clips < min_clips:
        raise ValueError(f"int8 calibration needs at least {min_clips} clips, asked for {clips}")
    if not tf.io.gfile.glob(pattern):
        raise FileNotFoundError(f"no TFRecord shards match --calibration {pattern!r}")
    batches = []
    for waveform, _ in eval_dataset(pattern, 32, num_classes).take((clips + 31) // 32):
        batches.append(waveform.numpy())
    found = np.concatenate(batches)[:clips] if batches else np.zeros([0, window_samples])
    if len(found) < min_clips:
        raise ValueError(f"{pattern!r} holds {len(found)} clips; int8 calibration needs at "
                         f"least {min_clips} real clips")
    # Whole clips at their own level, not streaming_variety's: its quiet (-10..-40 dB) and
    # zero-padded windows push bn0's output far below real audio, every activation range
    # widens and the int8 steps coarsen: the demo model's global scores were 0.017 off
    # Keras on average with them, 0.0045 without (README "Export", int8 paragraph).
    return fit_length(found, window_samples)


def padded(windows: np.ndarray, every: int) -> np.ndarray:
    """Every `every`-th window starts after 1/8..7/8 of zeros, as a file shorter than a crop
    or a stream's first windows are padded: int8 then covers the log-mel of digital zeros,
    which whole clips leave below its range (README "One answer on every path": the 0.3 s
    file 0.73 -> 0.07 off Keras on the demo model, fused mAP 0.016 lower)."""
    windows = windows.copy()
    length = windows.shape[1]
    for i in range(0, len(windows), every):
        pad = length * (1 + (i // every) % 7) // 8
        windows[i] = np.concatenate([np.zeros(pad, windows.dtype), windows[i, :length - pad]])
    return windows


def streaming_variety(windows: np.ndarray) -> np.ndarray:
    """Calibration windows as a stream shows them: every 4th front-zero-padded, every 4th quieter
    (for a model that must match Keras on a stream's first windows and on quiet rooms more
    than on full-level clips: read_calibration no longer applies it, see there).

    A stream's first windows are zero-padded in front (`partial`), and devices hear quiet
    rooms: calibrated on full-level whole clips only, the int8 pair was 0.13 off Keras on
    partial windows (0.005 with them) and drifted at -40 dB.
    """
    windows = padded(windows, 4)  # partial: the clip's start after 1/8 .. 7/8 of zeros
    for i in range(2, len(windows), 4):  # -10 .. -40 dB
        windows[i] *= 10 ** (-10 * (1 + (i // 4) % 4) / 20)
    return windows


