"""The one parity check every export stage passes: Keras -> SavedModel -> LiteRT f32/f16/dyn/int8."""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_runtime import glue

SCORES = ("fused", "global", "local")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a stage may drift from Keras.

    `global_max_abs` bounds |global score - Keras'| over every clip and class;
    `local_max_abs` the local model's per-crop scores on Keras' own crops (so that a
    different pick does not count as the local model's error; the SavedModel, which
    has no separate local model, on its local scores); `mean_abs` the mean over the
    fused, global and local scores as served. `selection` is the least fraction of
    picks as good as Keras' by Keras' own scores: the same pick, or a class and
    window whose Keras score and frame activation are within `tie` of Keras' choice
    (a quantized stream may take the neighbour of two nearly equal frames).
    """

    global_max_abs: float
    local_max_abs: float
    mean_abs: float
    selection: float
    tie: float


# Bounds set above what was measured (tests' tiny model; cnn10_small trained on the demo
# set, 120 eval clips: see the export report), so they flag a regression, not noise.
TOLERANCES = {
    "saved_model": Tolerance(global_max_abs=1e-5, local_max_abs=1e-5, mean_abs=1e-6,
                             selection=1.0, tie=0.0),
    "f32": Tolerance(global_max_abs=1e-4, local_max_abs=1e-4, mean_abs=1e-5,
                     selection=1.0, tie=1e-5),
    "f16": Tolerance(global_max_abs=0.01, local_max_abs=0.01, mean_abs=1e-3,
                     selection=1.0, tie=0.005),
    "dyn": Tolerance(global_max_abs=0.05, local_max_abs=0.08, mean_abs=0.01,
                     selection=0.95, tie=0.03),
    "int8": Tolerance(global_max_abs=0.15, local_max_abs=0.3, mean_abs=0.03,
                      selection=0.95, tie=0.05),
}


def keras_outputs(model, waveforms: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """The reference: GlatModel outputs on (clips, samples), clip_starts in samples."""
    import tensorflow as tf
    parts = []
    for start in range(0, len(waveforms), batch):
        clips = np.asarray(waveforms[start:start + batch], np.float32)
        out = {k: np.asarray(v) for k, v in model(clips, training=False).items()}
        crops = np.stack([glue.cut_crops(w, row, model.crop_samples)
                          for w, row in zip(clips, out["clip_starts"])])  # (batch, N, crop)
        logits = model.local_backbone(crops.reshape(-1, model.crop_samples), training=False)
        out["per_crop"] = tf.sigmoid(logits["clipwise_logits"]).numpy().reshape(
            len(clips), model.n_clips, -1)  # (batch, N, L)
        parts.append({k: out[k] for k in (*SCORES, "clip_starts", "selected_classes",
                                          "per_crop", "framewise")})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def equivalent_picks(reference: dict, got: dict, samples: int, crop_samples: int,
                     tie: float) -> np.ndarray:
    """(clips, N) bool: each of `got`'s picks is as good as Keras' by Keras' own scores."""
    framewise = reference["framewise"]  # (clips, frames, L) Keras activations
    starts = glue.window_starts(framewise.shape[1], samples, crop_samples)
    ok = np.zeros(got["clip_starts"].shape, bool)
    for b, k in np.ndindex(*ok.shape):
        ref_class, ref_start = reference["selected_classes"][b, k], reference["clip_starts"][b, k]
        cls, start = got["selected_classes"][b, k], got["clip_starts"][b, k]
        if (cls, start) == (ref_class, ref_start):
            ok[b, k] = True
            continue
        activation = framewise[b, :, cls]
        # Keras' window for this class if it picked the class, else the class's peak.
        picked = np.flatnonzero(reference["selected_classes"][b] == cls)
        best = (activation[starts == reference["clip_starts"][b, picked[0]]].max()
                if picked.size else activation.max())
        mine = activation[starts == start]
        class_ok = reference["global"][b, cls] >= reference["global"][b, ref_class] - tie
        ok[b, k] = class_ok and mine.size > 0 and mine.max() >= best - tie
    return ok


def saved_model_outputs(path, waveforms: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """The SavedModel's serving signature on (clips, samples)."""
    import tensorflow as tf
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = {k: v.numpy() for k, v in serve(waveform=tf.constant(waveforms, tf.float32)).items()}
    return out


def litert_outputs(tagger, waveforms: np.ndarray, reference: dict) -> dict[str, np.ndarray]:
    """The edge runtime's exact-mode Pipeline on (clips, window), each clip on its own, plus
    `same_crops`: its local model on the crops Keras chose, (clips, N, L)."""
    rows, same = [], []
    for waveform, starts in zip(np.asarray(waveforms, np.float32), reference["clip_starts"]):
        result = tagger(waveform)  # no stream_end: an independent window
        rows.append({"fused": result.fused, "global": result.global_, "local": result.local,
                     "clip_starts": result.clip_starts, "selected_classes": result.selected_classes})
        same.append(tagger.crop_scores(waveform, starts))
    got = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    got["same_crops"] = np.stack(same)
    return got


def compare(reference: dict, got: dict, samples: int, crop_samples: int, tie: float) -> dict:
    """Distance of one stage's outputs from the reference's (keras_outputs) on clips of
    `samples`; `tie` as in Tolerance."""
    diffs = np.concatenate([np.abs(got[k] - reference[k]).ravel() for k in SCORES])
    same = ((got["clip_starts"] == reference["clip_starts"])
            & (got["selected_classes"] == reference["selected_classes"]))
    stats = {"max_abs": float(diffs.max()), "mean_abs": float(diffs.mean()),
             "same_picks": float(same.mean()),
             "selection": float(equivalent_picks(reference, got, samples, crop_samples,
                                                 tie).mean()),
             **{f"max_abs_{k}": float(np.abs(got[k] - reference[k]).max()) for k in SCORES}}
    stats["local_same_crops"] = (float(np.abs(got["same_crops"] - reference["per_crop"]).max())
                                 if "same_crops" in got else stats["max_abs_local"])
    return stats


def measure(stage: str, reference: dict, got: dict, samples: int, crop_samples: int,
            tolerances=None) -> dict:
    """compare() at the stage's own tie tolerance."""
    tie = (tolerances or TOLERANCES)[stage].tie
    return compare(reference, got, samples, crop_samples, tie)


def check(stage: str, stats: dict, tolerances=None) -> list[str]:
    """Violations of `stage`'s tolerance (empty when the stage passes)."""
    tolerance = (tolerances or TOLERANCES)[stage]
    problems = []
    for measured, bound in (("max_abs_global", "global_max_abs"),
                            ("local_same_crops", "local_max_abs"), ("mean_abs", "mean_abs")):
        if not stats[measured] <= getattr(tolerance, bound):  # NaN fails too
            problems.append(f"{stage}: {measured} {stats[measured]:.3g} > "
                            f"{bound} {getattr(tolerance, bound):g}")
    if stats["selection"] < tolerance.selection:
        problems.append(f"{stage}: only {stats['selection']:.0%} of picks are as good as "
                        f"Keras' within {tolerance.tie} (need {tolerance.selection:.0%})")
    return problems


def assert_accepted(stage: str, stats: dict, tolerances=None) -> None:
    problems = check(stage, stats, tolerances)
    if problems:
        raise AssertionError("; ".join(problems) + f" (measured {stats})")
