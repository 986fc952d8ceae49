"""A GlatModel -> the LiteRT global/local pair (f32, f16, dyn, int8) with metadata.json beside it."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tensorflow as tf

from export import calibration as calibration_lib
from export import litert_convert
from export import streaming as streaming_lib
from export.labels import label_rows, model_facts

FORMAT = "glat-tf-litert/1"
VARIANTS = ("f32", "f16", "dyn", "int8")
DEFAULT_WINDOW_SECONDS = 10.0
# Kept float32 in every variant: the log-mel (int8 log-mel was 0.5-3.6 nats off on quiet
# audio, RFFT2D is float only) and the selection's frame arithmetic; in int8 also the
# sigmoids whose outputs the selection ranks.
FLOAT_SCOPES = ("frontend", "select_clips")
INT8_FLOAT_OPS = ("LOGISTIC",)


# The exported stages' outputs, by LiteRT signature output name: {signature name: stage output}.
GLOBAL_OUTPUTS = {"clipwise": "global", "framewise": "framewise", "clip_starts": "clip_starts",
                  "selected_classes": "selected_classes"}


def global_function(model):
    """waveform (1, window) -> GlatModel.global_stage's scores and windows (not its crops)."""
    return litert_convert.named_outputs(model.global_stage, GLOBAL_OUTPUTS)


def local_function(model):
    """crops (N, crop_samples) -> GlatModel.local_stage's per-crop scores (N, L)."""
    return litert_convert.named_outputs(model.local_stage, streaming_lib.LOCAL_OUTPUTS)


def stream_signature(model, stream: str, window_samples: int) -> list[tf.TensorSpec]:
    # Static shapes: a dynamic batch brings about 20 shape ops into the graph.
    if stream == "global":
        return [tf.TensorSpec([1, window_samples], tf.float32, name="waveform")]
    return [tf.TensorSpec([model.n_clips, model.window], tf.float32, name="crops")]


def convert_stream(model, stream: str, variant: str, window_samples: int,
                   calibration=None) -> bytes:
    """One stream of the pair as a LiteRT flatbuffer of one variant (see convert_variants)."""
    return convert_variants(model, stream, [variant], window_samples, calibration)[variant]


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
                            variants, inputs)


def convert_callable(fn, signature, track, variants, calibration_inputs=None) -> dict[str, bytes]:
    """`fn` at `signature` as LiteRT flatbuffers, {variant: bytes}; int8 is calibrated on
    `calibration_inputs` (a list of input arrays). The SavedModel is written once and
    converted per variant."""
    default = [tf.lite.Optimize.DEFAULT]
    out = {}
    with litert_convert.saved_model(fn, signature, [track]) as path:
        f32 = litert_convert.convert_saved_model(path)
        for variant in variants:
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
                    float_scopes=FLOAT_SCOPES, float_ops=INT8_FLOAT_OPS, reference=f32)
    return out


def check_variants(variants) -> None:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")


def check_exportable(model) -> None:
    if model.selection != "attention":
        raise ValueError(f"selection={model.selection!r} is the random control experiment; "
                         "only selection='attention' models are exported")


def export_tflite(model, out_dir, labels, *, variants=("f32",), window_samples=None,
                  calibration=None, streaming=False) -> dict:
    """Writes `global_<v>.tflite`, `local_<v>.tflite` per variant and metadata.json.

    `labels` is a LabelMap; `calibration` an array (clips, samples) of real audio,
    needed by int8. `streaming` also writes the feature-streaming models per variant
    (`{global,local}_{chunk,head}_<v>.tflite`, `local_crop_<v>.tflite`, see
    export/streaming.py) and their grid under metadata "streaming"; a backbone without
    local features is refused before anything is written. Returns the metadata written.
    """
    check_exportable(model)
    check_variants(variants)
    if len(labels) != model.num_classes:
        raise ValueError(f"{len(labels)} labels for a model of {model.num_classes} classes")
    window_samples = window_samples or int(round(DEFAULT_WINDOW_SECONDS * model.sample_rate))
    if streaming:
        grid = streaming_lib.plan(model, window_samples)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **model_facts(model, window_samples),
            "labels": label_rows(labels), "variants": {}, "fusion": "max_mean"}
    for stream in ("global", "local"):
        converted = convert_variants(model, stream, variants, window_samples, calibration)
        for variant, flatbuffer in converted.items():
            name = f"{stream}_{variant}.tflite"
            (out / name).write_bytes(flatbuffer)
            meta["variants"].setdefault(variant, {})[stream] = name
    if streaming:
        export_streaming(model, out, variants, grid, window_samples, calibration,
                         meta["variants"])
        meta["streaming"] = grid
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    return meta


# The heads are about 1% of a hop's arithmetic: int8 activations there would only add error.
HEAD_VARIANT = {"f32": "f32", "f16": "f16", "dyn": "dyn", "int8": "dyn"}


def export_streaming(model, out: pathlib.Path, variants, facts: dict, window_samples: int,
                     calibration, files: dict) -> None:
    """Writes the five streaming models per variant into `out` and their names into
    `files[variant]`; `facts` is export/streaming.py's plan of the grid."""
    windows = (None if calibration is None
               else calibration_lib.fit_length(calibration, window_samples))
    for part, (fn, signature, backbone) in streaming_lib.parts(model, facts).items():
        head = part.endswith("_head")
        wanted = sorted({HEAD_VARIANT[v] for v in variants}) if head else list(variants)
        inputs = None
        if "int8" in wanted:
            inputs = (calibration_lib.chunk_inputs(windows, facts) if part.endswith("_chunk")
                      else calibration_lib.crop_inputs(model, windows))
        converted = convert_callable(fn, signature, backbone, wanted, inputs)
        for variant in variants:
            kind = HEAD_VARIANT[variant] if head else variant
            name = f"{part}_{kind}.tflite"
            (out / name).write_bytes(converted[kind])
            files[variant][part] = name


def fuse(global_scores: np.ndarray, local_clipwise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's fusion in NumPy: local = max_mean over crops, fused = max_mean(global, local)."""
    local = (local_clipwise.max(axis=0) + local_clipwise.mean(axis=0)) / 2
    pair = np.stack([global_scores, local], axis=0)
    return (pair.max(axis=0) + pair.mean(axis=0)) / 2, local


class LitePair:
    """The exported pair run as the device would: global window -> N crops -> local -> fusion.

    Input: one window (window_samples,) float32, or (clips, window_samples) via `run_many`.
    Output dict: fused/global/local (L,), clip_starts (N,) samples, selected_classes (N,),
    per_crop (N, L) local probabilities.

    Example:
        pair = LitePair.from_dir("export_out", "int8", threads=1)
        out = pair(waveform)  # waveform: (metadata["window_samples"],) float32
        out["fused"].shape  # (L,)
    """

    def __init__(self, global_flatbuffer: bytes, local_flatbuffer: bytes, crop_samples: int,
                 threads: int = 1):
        self.global_runner = litert_convert.signature_runner(global_flatbuffer, threads)
        self.local_runner = litert_convert.signature_runner(local_flatbuffer, threads)
        self.crop_samples = crop_samples

    @classmethod
    def from_dir(cls, out_dir, variant: str, threads: int = 1) -> "LitePair":
        out = pathlib.Path(out_dir)
        meta = json.loads((out / "metadata.json").read_text())
        if variant not in meta["variants"]:
            raise ValueError(f"{out} has variants {sorted(meta['variants'])}, not {variant!r}")
        files = meta["variants"][variant]
        return cls((out / files["global"]).read_bytes(), (out / files["local"]).read_bytes(),
                   meta["crop_samples"], threads)

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        waveform = np.asarray(waveform, np.float32)
        g = self.global_runner(waveform=waveform[None])
        starts = g["clip_starts"][0]
        crops = np.stack([waveform[s:s + self.crop_samples] for s in starts])  # (N, crop)
        per_crop = self.local_runner(crops=crops)["clipwise"]  # (N, L)
        fused, local = fuse(g["clipwise"][0], per_crop)
        return {"fused": fused, "global": g["clipwise"][0], "local": local,
                "clip_starts": starts, "selected_classes": g["selected_classes"][0],
                "per_crop": per_crop}

    def run_many(self, waveforms: np.ndarray) -> dict[str, np.ndarray]:
        outs = [self(w) for w in waveforms]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}
