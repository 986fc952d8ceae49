"""Feature streaming: the backbones cut into chunk and head models, for the edge runtime.

The exact runtime runs the global backbone on the whole 10 s window and the local
backbone on N tau-second crops every hop: 2.5 windows of CNN10 per 1 s hop, which
one AVX2 core cannot do in half a hop (int8 is barely faster than float there).
A convolutional backbone's features have a finite receptive field, so on a grid
of `stride` samples (16 STFT frames for CNN10) a feature depends only on nearby
audio. The streaming runtime keeps each backbone's features of the last window
on the stream's grid and, per hop, runs the backbone only on a short chunk around
the newest audio (the *chunk* models). The global *head* runs on the window's
features and the selection picks grid-aligned windows. The local stream scores a
pick on its tau-second crop (`local_crop`, the local model as trained), cached by
grid step because a crop is fixed audio; the local head on the local features of
the window stands in for a crop that has not had its turn yet.

What differs from the exact model: the global features carry real context where the
exact model sees zero padding at the window's left edge, and windows start on the
grid. The export measures, on the model itself, how many features at each end of a
chunk its edges change (`clean_left`, `clean_right`); a backbone whose every
feature depends on the whole input (a GRU, attention over time) is refused.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from export.litert_convert import named_outputs

# Chunk features written per run beyond the margins: one run covers a 1 s hop of CNN10.
DEFAULT_ADVANCE_SECONDS = 1.0
PROBE_FEATURES = 24  # features per probe chunk when measuring the margins
# Exported output names of the heads and the crop model: {signature name: stage output}.
GLOBAL_HEAD_OUTPUTS = {"clipwise": "global", "framewise": "framewise"}
LOCAL_OUTPUTS = {"clipwise": "per_clip"}


class NotStreamable(ValueError):
    """The backbone's features are not local in time: no chunked streaming is exact for it."""


def _features(backbone, waveform: np.ndarray) -> np.ndarray:
    return np.asarray(backbone(tf.constant(waveform[None], tf.float32),
                               training=False)["features"][0])


def feature_stride(backbone, sample_rate: int) -> int:
    """Samples per feature step: the backbone's time downsampling times the STFT hop."""
    hop = backbone.hop_length
    lengths = [_features(backbone, np.zeros(n * hop, np.float32)).shape[0]
               for n in (512, 1536)]
    steps = lengths[1] - lengths[0]
    if steps <= 0 or 1024 % steps:
        raise NotStreamable(f"{backbone.name}: {steps} features per 1024 frames is not a regular "
                            "grid")
    return 1024 // steps * hop


def clean_margins(backbone, stride: int, seed: int = 0) -> tuple[int, int]:
    """(left, right): features at each end of a chunk that differ from the same features
    computed inside a longer stretch of audio (the chunk's edges reach them)."""
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(3 * PROBE_FEATURES * stride)).astype(np.float32)
    whole = _features(backbone, audio)
    start = PROBE_FEATURES
    chunk = _features(backbone, audio[start * stride:(start + PROBE_FEATURES) * stride])
    if chunk.shape[0] != PROBE_FEATURES:
        raise NotStreamable(f"{backbone.name}: a chunk of {PROBE_FEATURES} grid steps gives "
                            f"{chunk.shape[0]} features")
    scale = float(np.abs(whole).max()) or 1.0
    same = np.abs(chunk - whole[start:start + PROBE_FEATURES]).max(axis=1) <= 1e-4 * scale
    if not same.any():
        raise NotStreamable(f"{backbone.name}: every feature of a {PROBE_FEATURES}-step chunk "
                            "depends on audio outside it (recurrent or global over time)")
    first, last = int(np.argmax(same)), PROBE_FEATURES - 1 - int(np.argmax(same[::-1]))
    if not same[first:last + 1].all():
        raise NotStreamable(f"{backbone.name}: chunk features are not local in time")
    return first, PROBE_FEATURES - 1 - last


def plan(model, window_samples: int, advance_seconds: float = DEFAULT_ADVANCE_SECONDS) -> dict:
    """The grid and chunk sizes of both streams (the metadata's "streaming" entry).

    Both backbones share the frontend's hop and architecture, so one grid serves both;
    the margins are the larger of the two streams'.
    """
    g, l = model.global_backbone, model.local_backbone
    stride = feature_stride(g, model.sample_rate)
    if feature_stride(l, model.sample_rate) != stride:
        raise NotStreamable("the global and local backbones have different feature grids")
    margins = [clean_margins(b, stride) for b in (g, l)]
    left, right = max(m[0] for m in margins), max(m[1] for m in margins)
    advance = max(1, math.ceil(advance_seconds * model.sample_rate / stride))
    window_features = _features(g, np.zeros(window_samples, np.float32)).shape[0]
    crop_features = _features(l, np.zeros(model.window, np.float32)).shape[0]
    if crop_features > window_features:
        raise NotStreamable(f"a crop of {crop_features} features does not fit the window's "
                            f"{window_features}")
    return {"stride_samples": stride, "chunk_features": left + advance + right,
            "clean_left": left, "clean_right": right, "window_features": window_features,
            "crop_features": crop_features,
            "channels": int(_features(g, np.zeros(stride * 4, np.float32)).shape[-1])}


def parts(model, facts: dict) -> dict:
    """{name: (function, input signature, backbone)} of the five streaming models, each a
    GlatModel stage: the chunk (stream_features) and head of each stream, and the local
    stage on one tau-second crop."""
    stride, channels = facts["stride_samples"], facts["channels"]
    chunk = [tf.TensorSpec([1, facts["chunk_features"] * stride], tf.float32, name="waveform")]
    g, l = model.global_backbone, model.local_backbone
    return {
        "global_chunk": (lambda w: {"features": model.stream_features("global", w)}, chunk, g),
        "local_chunk": (lambda w: {"features": model.stream_features("local", w)}, chunk, l),
        "global_head": (named_outputs(model.global_head, GLOBAL_HEAD_OUTPUTS), [tf.TensorSpec(
            [1, facts["window_features"], channels], tf.float32, name="features")], g),
        "local_head": (named_outputs(model.local_head, LOCAL_OUTPUTS), [tf.TensorSpec(
            [model.n_clips, facts["crop_features"], channels], tf.float32, name="features")], l),
        "local_crop": (named_outputs(model.local_stage, LOCAL_OUTPUTS), [tf.TensorSpec(
            [1, model.window], tf.float32, name="crops")], l),
    }
