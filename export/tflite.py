"""A GlatModel -> the LiteRT global/local pair (f32, f16, dyn, int8) with metadata.json beside it.

The global model takes a waveform of any length >= one crop (its input is resized per
call); `window_samples` is the window the runtime streams, calibrates and reports with."""

from __future__ import annotations

import pathlib
import time

import tensorflow as tf

from glat_core import console
from edge_runtime.contract import ExportMetadata, Label, StreamingPlan
from export import calibration as calibration_lib
from export import litert_convert
from export import streaming as streaming_lib
from export.plan import ExportPlan, global_outputs

VARIANTS = ("f32", "f16", "dyn", "int8")
# Kept float32 in every variant: the log-mel (int8 log-mel was 0.5-3.6 nats off on quiet
# audio, RFFT2D is float only) and the selection's frame arithmetic; in int8 also the
# classifier (fc_audioset, the head's last Dense) and the sigmoids. The selection ranks the
# logits: an int8 logit tensor has one scale for every class and frame (0.135 on the demo
# model, up to 0.034 in probability), so near-equal classes tie or swap and other windows
# are picked; int8 logits cost the demo model 0.025 fused mAP here, 0.052 on a Xeon, the
# float classifier -0.010 (README "Export", bench/int8_sensitivity.py). Its input stays
# int8 (fc1's ReLU output), so only one Dense runs in float: under 1% of the MACs.
FLOAT_SCOPES = ("frontend", "select_clips")
INT8_FLOAT_SCOPES = FLOAT_SCOPES + ("fc_audioset",)
INT8_FLOAT_OPS = ("LOGISTIC",)


def global_function(model):
    """waveform (1, window) -> GlatModel.global_stage's scores and windows (not its crops);
    for a Baseline its global_stage's scores and frame activations."""
    return litert_convert.stage_outputs(model.global_stage, global_outputs(model))


def local_function(model):
    """crops (N, crop_samples) -> GlatModel.local_stage's per-crop scores (N, L)."""
    return litert_convert.stage_outputs(model.local_stage, streaming_lib.LOCAL_OUTPUTS)


def stream_signature(model, stream: str, window_samples: int) -> list[tf.TensorSpec]:
    # The global model takes any number of samples (resized per call), so every input
    # length is tagged as the Keras model tags it; the batch stays 1 and the local model's
    # N crops stay static (a dynamic batch brings about 20 shape ops into the graph).
    if stream == "global":
        return [tf.TensorSpec([1, None], tf.float32, name="waveform")]
    return [tf.TensorSpec([model.n_clips, model.crop_samples], tf.float32, name="crops")]


def convert_variants(model, stream: str, variants, window_samples: int,
                     calibration=None) -> dict[str, bytes]:
    """One stream ("global" or "local") as LiteRT flatbuffers, {variant: bytes}.

    f32 as trained; f16 stores weights in half precision; dyn stores int8 weights and
    computes in float; int8 also runs activations in int8, calibrated on `calibration`
    (clips, window_samples). The frontend and the selection keep float32 constants and
    arithmetic in every variant, and in int8 so do the sigmoids (quantized probabilities
    tie in argmax).
    """
    check_variants(variants)
    if "int8" in variants and (calibration is None or len(calibration) == 0):
        raise ValueError("the int8 variant needs calibration clips (real audio)")
    fn = global_function(model) if stream == "global" else local_function(model)
    backbone = model.global_backbone if stream == "global" else model.local_backbone
    inputs = (calibration_lib.stream_inputs(model, stream, calibration) if "int8" in variants
              else None)
    return convert_callable(fn, stream_signature(model, stream, window_samples), backbone,
                            variants, inputs, label=stream)


def convert_callable(fn, signature, track, variants, calibration_inputs=None, *,
                     label: str = "model") -> dict[str, bytes]:
    """`fn` at `signature` as LiteRT flatbuffers, {variant: bytes}; int8 is calibrated on
    `calibration_inputs` (a list of input arrays). The SavedModel is written once and
    converted per variant; each conversion prints `export: <label> <variant> (12.3 s)`."""
    default = [tf.lite.Optimize.DEFAULT]
    out = {}
    with litert_convert.saved_model(fn, signature, [track]) as path:
        with console.step(f"export: {label} f32"):
            f32 = litert_convert.convert_saved_model(path)
        for variant in variants:
            started = time.perf_counter()
            if variant == "f32":
                out[variant] = f32
            elif variant == "f16":
                out[variant] = litert_convert.convert_saved_model(
                    path, optimizations=default, supported_types=[tf.float16],
                    float_scopes=FLOAT_SCOPES, reference=f32)
            elif variant == "dyn":
                out[variant] = litert_convert.convert_saved_model(
                    path, optimizations=default, float_scopes=FLOAT_SCOPES, reference=f32)
            else:
                out[variant] = litert_convert.convert_saved_model(
                    path, optimizations=default, int8_ops=True,
                    representative_dataset=lambda: ([x] for x in calibration_inputs),
                    float_scopes=INT8_FLOAT_SCOPES, float_ops=INT8_FLOAT_OPS, reference=f32)
            if variant != "f32":
                console.step_done(f"export: {label} {variant}", started)
    return out


def check_variants(variants) -> None:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")


def check_exportable(model, streaming: bool = False) -> None:
    """What the LiteRT exports add to ExportPlan's checks (the edge runtime's limits)."""
    if not model.n_clips:  # the baseline: one global model
        if streaming:
            raise ValueError("--streaming exports GL-AT's two streams; a backbone-only model "
                             "exports as one global model (drop --streaming)")
        return
    if model.suppress_overlap not in (True, False):
        # The edge runtime picks windows itself (edge_runtime/glue.py) with the default rule.
        raise ValueError(f"suppress_overlap={model.suppress_overlap!r}: the edge runtime "
                         "implements suppress_overlap True or False only (the SavedModel "
                         "export takes any)")


def export_tflite(model, out_dir, labels, *, variants=("f32",), window_samples=None,
                  calibration=None, streaming=False) -> dict:
    """Writes `global_<v>.tflite`, `local_<v>.tflite` per variant and metadata.json (a
    Baseline, the baseline, writes `global_<v>.tflite` only: n_clips 0).

    `labels` is a LabelMap; `calibration` an array (clips, samples) of real audio,
    needed by int8. `streaming` also writes the feature-streaming models per variant
    (`{global,local}_{chunk,head}_<v>.tflite`, `local_crop_<v>.tflite`, see
    export/streaming.py) and their grid under metadata "streaming"; a backbone without
    local features is refused before anything is written. Returns the metadata written.
    """
    check_exportable(model, streaming)
    check_variants(variants)
    plan = ExportPlan.of(model, labels, window_samples)
    window_samples = plan.window_samples
    if streaming:
        grid = streaming_lib.plan(model, window_samples)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {variant: {} for variant in variants}
    for stream in plan.streams:
        converted = convert_variants(model, stream, variants, window_samples, calibration)
        for variant, flatbuffer in converted.items():
            name = f"{stream}_{variant}.tflite"
            (out / name).write_bytes(flatbuffer)
            files[variant][stream] = name
    if streaming:
        export_streaming(model, out, variants, grid, window_samples, calibration, files)
    meta = ExportMetadata(**plan.facts(), selection=model.selection,
                          labels=tuple(Label(**row) for row in plan.label_rows()), variants=files,
                          streaming=StreamingPlan(**grid) if streaming else None)
    # Written through the contract's reader, so what export writes is what the runtime reads.
    meta = ExportMetadata.from_json(meta.to_json(), str(out / "metadata.json"))
    meta.write(out)
    return meta.to_dict()


# The heads are about 1% of a hop's arithmetic: in int8 they stay float32, as the pair's
# classifier does (INT8_FLOAT_SCOPES). `dyn` heads (int8 weights, activations quantized per
# call) put int8 streaming 0.0065 fused mAP below the int8 pair on the demo model, f32 heads
# 0.0048 (target 0.005; README "Streaming mode").
HEAD_VARIANT = {"f32": "f32", "f16": "f16", "dyn": "dyn", "int8": "f32"}


def export_streaming(model, out: pathlib.Path, variants, facts: dict, window_samples: int,
                     calibration, files: dict) -> None:
    """Writes the streaming models per variant into `out` and their names into
    `files[variant]` (chunks, heads, local_crop, global_edge and, when the plan has one,
    local_edge); `facts` is export/streaming.py's plan of the grid."""
    windows = (None if calibration is None
               else calibration_lib.fit_length(calibration, window_samples))
    for part, (fn, signature, backbone) in streaming_lib.parts(model, facts).items():
        head = part.endswith("_head")
        wanted = sorted({HEAD_VARIANT[v] for v in variants}) if head else list(variants)
        inputs = None
        if "int8" in wanted:
            inputs = calibration_lib.streaming_inputs(part, model, windows, facts)
        converted = convert_callable(fn, signature, backbone, wanted, inputs, label=part)
        for variant in variants:
            kind = HEAD_VARIANT[variant] if head else variant
            name = f"{part}_{kind}.tflite"
            (out / name).write_bytes(converted[kind])
            files[variant][part] = name


