"""A GlatModel -> TF Serving's SavedModel layout `<out>/<version>/` with the label CSV as an asset."""

from __future__ import annotations

import pathlib
import shutil

import keras
import tensorflow as tf

from export.plan import ExportPlan

SIGNATURE = "serving_default"


def serving_function(model):
    """waveform (batch, samples) float32 -> fused/global/local (batch, L), per_clip (batch, N,
    L), framewise (batch, frames', L) the global frame activations, clip_starts (batch, N)
    int32 samples from the input's start (the unit of every export), selected_classes
    (batch, N) int32; a baseline (Baseline) gives `global` and `framewise` only: the
    model's `output_keys`. Input of another rank, shorter than `min_samples` (tau, one
    second for a baseline) or not finite fails with InvalidArgumentError."""
    window = model.min_samples
    shortest = f"tau={model.tau} s" if model.n_clips else "1 s"

    def serve(waveform):
        # Checked inside the graph: a served model has no Python left to raise errors.
        # A loaded signature lets a (1, 1, S) tensor through its [None, None] spec, and
        # any op on the shape's own shape folds to the declared rank 2: count dimensions
        # with an op whose output size is only known at run time.
        rank = tf.shape(tf.where(tf.shape(waveform) >= 0), out_type=tf.int32)[0]
        rank_ok = tf.debugging.assert_equal(
            rank, 2, message="waveform must have rank 2 (batch, samples)")
        with tf.control_dependencies([rank_ok]):
            # Ordered after the rank check: shape[1] of a rank-1 tensor would fail first.
            checks = [tf.debugging.assert_greater_equal(
                          tf.shape(waveform)[-1], window,
                          message=f"waveform needs at least {window} samples ({shortest} "
                                  f"at {model.sample_rate} Hz)"),
                      tf.debugging.assert_all_finite(waveform, "waveform holds NaN or Inf samples")]
        with tf.control_dependencies(checks):
            # The model reads the input only after every check passed.
            waveform = tf.identity(waveform)
        out = model(waveform, training=False)
        return {k: out[k] for k in model.output_keys}
    return serve


def export_saved_model(model, out_dir, labels, *, version: int = 1,
                       overwrite: bool = False) -> pathlib.Path:
    """Writes `<out_dir>/<version>/` (saved_model.pb, variables/, assets/labels.csv and
    assets/model.json, the SavedModelFacts a client cuts audio by).

    `model` is a GlatModel or a Baseline; `labels` a LabelMap of its classes. TF
    Serving serves the highest version under `out_dir`; an existing version is refused
    unless `overwrite`.
    """
    plan = ExportPlan.of(model, labels)
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's layout), got {version!r}")
    target = pathlib.Path(out_dir) / str(version)
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} already exists: pick another --version")
        shutil.rmtree(target)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serving_function(model), input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="waveform")])
    # Written beside the target, then renamed: TF Serving polls the folder and must never
    # see half a version.
    partial = target.parent / f".{target.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    archive.write_out(str(partial), verbose=False)
    # ExportArchive keeps only lookup-table assets; the label CSV is a file for clients
    # to map output columns to names, so it is placed in assets/ directly.
    (partial / "assets").mkdir(exist_ok=True)
    labels.to_csv(partial / "assets" / "labels.csv")
    plan.saved_model_facts().write(partial / "assets")  # what glat-tag needs to cut audio
    partial.rename(target)
    return target
