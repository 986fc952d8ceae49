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

The export measures, on the model itself, how many features at each end of a chunk its
edges change (`clean_left`, `clean_right`); a backbone whose every feature depends on the
whole input (a GRU, attention over time) is refused. So that a streamed window's
features are the exact model's on that window's audio (a whole number of grid steps),
the small `global_edge` model recomputes its first `clean_left` from its own first
audio, as the exact model sees its input's start (the newest already see the stream's
end as the window's end); `local_edge` does the same for a crop's two ends.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from export.litert_convert import stage_outputs

# Chunk features written per run beyond the margins: one run covers a 1 s hop of CNN10.
DEFAULT_ADVANCE_SECONDS = 1.0
PROBE_FEATURES = 24  # features per probe chunk when measuring the margins
# Exported outputs of the heads and the crop model (the stages' own names).
GLOBAL_HEAD_OUTPUTS = ("global", "framewise")
LOCAL_OUTPUTS = ("per_clip",)


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
    crop_features = _features(l, np.zeros(model.crop_samples, np.float32)).shape[0]
    if crop_features > window_features:
        raise NotStreamable(f"a crop of {crop_features} features does not fit the window's "
                            f"{window_features}")
    facts = {"stride_samples": stride, "chunk_features": left + advance + right,
             "clean_left": left, "clean_right": right, "window_features": window_features,
             "crop_features": crop_features,
             "channels": int(_features(g, np.zeros(stride * 4, np.float32)).shape[-1])}
    return {**facts, **edges(l, model.crop_samples, facts), **global_edge(g, facts)}


def global_edge(backbone, facts: dict, seed: int = 2) -> dict:
    """The global_edge entry of the plan: the fewest whole grid steps of a window's start
    whose features' first clean_left equal the whole window's (within 1e-4 of scale),
    measured on random audio; {} when no edge reaches in (clean_left 0)."""
    stride, left = facts["stride_samples"], facts["clean_left"]
    if not left:
        return {}
    size = facts["window_features"]
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(size * stride)).astype(np.float32)
    whole = _features(backbone, audio)[:left]
    scale = float(np.abs(whole).max()) or 1.0
    for steps in range(left + 1, size + 1):
        first = _features(backbone, audio[:steps * stride])[:left]
        if first.shape == whole.shape and np.abs(first - whole).max() <= 1e-4 * scale:
            return {"global_edge_samples": int(steps * stride)}
    raise NotStreamable(f"{backbone.name}: the window's first {left} features depend on "
                        "more than the window's start")


def edges(backbone, crop_samples: int, facts: dict, seed: int = 1) -> dict:
    """The local_edge entry of the plan, or {} when the backbone does not allow it.

    A crop's features equal the stream's except its first clean_left and last
    clean_right, which see the crop's edges. The edge model is the backbone on the
    crop's first `edge_samples` and on its samples from `edge_offset` (a whole number of
    grid steps, so the pooling lines up) to its end; both give `edge_features`. Checked
    here on random audio: stitched features equal the crop's own within 1e-4 of scale.
    """
    stride, left, right = facts["stride_samples"], facts["clean_left"], facts["clean_right"]
    size = facts["crop_features"]
    skip = size - left - right
    if skip < 0:
        return {}
    offset = skip * stride
    length = crop_samples - offset
    rng = np.random.default_rng(seed)
    before = (left + right + 2) * stride  # a crop inside longer audio, on the grid
    audio = (0.1 * rng.standard_normal(before + crop_samples + before)).astype(np.float32)
    crop = audio[before:before + crop_samples]
    own = _features(backbone, crop)
    whole = _features(backbone, audio)[before // stride:before // stride + size]
    first, last = _features(backbone, crop[:length]), _features(backbone, crop[offset:])
    if first.shape != last.shape or first.shape[0] < left + right:
        return {}
    stitched = np.concatenate([first[:left], whole[left:size - right],
                               last[last.shape[0] - right:]])
    scale = float(np.abs(own).max()) or 1.0
    if own.shape != stitched.shape or np.abs(own - stitched).max() > 1e-4 * scale:
        return {}
    return {"edge_samples": int(length), "edge_features": int(first.shape[0]),
            "edge_offset": int(offset)}


def parts(model, facts: dict) -> dict:
    """{name: (function, input signature, backbone)} of the streaming models, each a GlatModel
    stage: the chunk (branch_features) and head of each stream, the local stage on one
    tau-second crop, and (when the plan has an edge entry) the local features of a crop's
    two ends."""
    stride, channels = facts["stride_samples"], facts["channels"]
    chunk = [tf.TensorSpec([1, facts["chunk_features"] * stride], tf.float32, name="waveform")]
    g, l = model.global_backbone, model.local_backbone
    return {
        "global_chunk": (lambda w: {"features": model.branch_features("global", w)}, chunk, g),
        "local_chunk": (lambda w: {"features": model.branch_features("local", w)}, chunk, l),
        "global_head": (stage_outputs(model.global_head, GLOBAL_HEAD_OUTPUTS), [tf.TensorSpec(
            [1, facts["window_features"], channels], tf.float32, name="features")], g),
        "local_head": (stage_outputs(model.local_head, LOCAL_OUTPUTS), [tf.TensorSpec(
            [model.n_clips, facts["crop_features"], channels], tf.float32, name="features")], l),
        "local_crop": (stage_outputs(model.local_stage, LOCAL_OUTPUTS), [tf.TensorSpec(
            [1, model.crop_samples], tf.float32, name="crops")], l),
        **({"global_edge": (lambda w: {"features": model.branch_features("global", w)},
                            [tf.TensorSpec([1, facts["global_edge_samples"]], tf.float32,
                                           name="waveform")], g)}
           if facts.get("global_edge_samples") else {}),
        **({"local_edge": (lambda w: {"features": model.branch_features("local", w)},
                           [tf.TensorSpec(
            [2, facts["edge_samples"]], tf.float32, name="waveform")], l)}
           if facts.get("edge_samples") else {}),
    }
