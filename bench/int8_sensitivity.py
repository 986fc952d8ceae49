"""Which layers cost int8 its accuracy: fused mAP of the demo model's int8 pair with one more
part kept float at a time, each stream alone in int8, and the quantizer's per-layer error.

    python bench/int8_sensitivity.py --model runs/demo/glat/best.keras \\
        --calibration "demo_data/*/shards/train-*.tfrecord" \\
        --eval "demo_data/*/shards/eval-*.tfrecord" --out results/int8_sensitivity.json

Each option keeps the frontend and the selection (export/tflite.py's FLOAT_SCOPES), the
sigmoids and its own name scopes (conv_block1..4, head, fc1, fc_audioset) float, converts
both streams, and scores the eval clips through the edge runtime's exact mode, as
`glat-export report` does. Rows: fused mAP drop vs Keras, picks equal to Keras', bytes of
the pair; for "before" also each stream alone in int8 (the other float32); and the largest
|diff| to Keras on audio that is mostly digital zeros (the consistency matrix's 0.3 s file
and 10 s of digital silence), which whole-clip calibration leaves out of int8's range.
`--padded K` zero-pads every K-th calibration window in front (1/8..7/8 of it), the
trade measured in README "One answer on every path".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np

from glat_core import console  # noqa: F401  quiet TensorFlow start-up

# name -> (float scopes beyond the frontend and selection, extra float LiteRT ops).
OPTIONS = {
    "before": ((), ()),  # the export until issue 19: everything but those two in int8
    "conv_block1": (("conv_block1",), ()),
    "conv_block4": (("conv_block4",), ()),
    "head": (("head",), ()),  # max+mean pooling, fc1, fc_audioset
    "fc_audioset": (("fc_audioset",), ()),  # the classifier: export/tflite.py's choice
    "conv_block1 + head": (("conv_block1", "head"), ()),
    "fc_audioset + conv_block1": (("fc_audioset", "conv_block1"), ()),
}


def convert_pair(model, scopes, ops, calibration, window):
    from export import tflite
    saved = tflite.INT8_FLOAT_SCOPES, tflite.INT8_FLOAT_OPS
    tflite.INT8_FLOAT_SCOPES = tflite.FLOAT_SCOPES + tuple(scopes)
    tflite.INT8_FLOAT_OPS = tflite.INT8_FLOAT_OPS + tuple(ops)
    try:
        return {stream: tflite.convert_variants(model, stream, ["int8"], window, calibration)["int8"]
                for stream in ("global", "local")}
    finally:
        tflite.INT8_FLOAT_SCOPES, tflite.INT8_FLOAT_OPS = saved


def fused_map(folder, pair, waveforms, labels, reference):
    """Fused mAP of `pair` ({stream: flatbuffer}) run as the export's int8 variant."""
    from edge_runtime import Pipeline
    from export import acceptance
    from glat_tf.metrics import tagging_scores
    for stream, flatbuffer in pair.items():
        (folder / f"{stream}_int8.tflite").write_bytes(flatbuffer)
    got = acceptance.litert_outputs(Pipeline.from_export(folder, "int8", "exact"), waveforms,
                                    reference)
    diff = {k: float(np.abs(got[k] - reference[k]).mean()) for k in acceptance.SCORES}
    same = float(np.mean((got["clip_starts"] == reference["clip_starts"])
                         & (got["selected_classes"] == reference["selected_classes"])))
    return tagging_scores(labels, got["fused"]).summary()["mAP"], diff, same


def quiet_cells(folder, model) -> dict:
    """Max |diff| to Keras (fused, global, local) of the int8 pair in `folder` on the
    consistency matrix's mostly-zero inputs."""
    from export import consistency
    files = consistency.write_audio_set(folder / "audio", int(model.sample_rate))
    cases = {c: files[c] for c in ("0.3 s", "digital silence 10 s")}
    rows = consistency.matrix(model, cases, {"int8": consistency.litert_exact_path(folder, "int8")})
    return {case: max(stats[f"max_abs_{k}"] for k in consistency.SCORES)
            for case, stats in rows["int8"].items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibration", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--out", required=True, help="JSON of the rows")
    parser.add_argument("--options", help="comma-separated OPTIONS names (default: all)")
    parser.add_argument("--calibration-clips", type=int, default=200)
    parser.add_argument("--variety", action="store_true",
                        help="calibrate as before issue 19: streaming_variety's zero-padded "
                             "and quieter windows among the clips")
    parser.add_argument("--padded", type=int, metavar="K",
                        help="zero-pad every K-th calibration window in front")
    args = parser.parse_args(argv)
    from machine import Machine
    here = Machine()
    from export import acceptance
    from export.calibration import padded, read_calibration, streaming_variety
    from glat_tf.loading import load_model
    from export.report import read_eval
    from export.tflite import export_tflite
    from glat_tf import class_names
    from glat_tf.metrics import tagging_scores
    model = load_model(args.model)
    window = int(round(10.0 * model.sample_rate))
    calibration = read_calibration(args.calibration, model.num_classes, window,
                                   args.calibration_clips)
    if args.variety:
        calibration = streaming_variety(calibration)
    if args.padded:
        calibration = padded(calibration, args.padded)
    waveforms, labels = read_eval(args.eval, model.num_classes, window)
    reference = acceptance.keras_outputs(model, waveforms)
    keras_map = tagging_scores(labels, reference["fused"]).summary()["mAP"]
    names = args.options.split(",") if args.options else list(OPTIONS)
    rows = {"keras_fused_mAP": keras_map, "options": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        labels_map, _ = class_names.resolve(model.num_classes, model=model, model_path=args.model)
        export_tflite(model, folder, labels_map, variants=("f32",), window_samples=window)
        meta = json.loads((folder / "metadata.json").read_text())
        meta["variants"]["int8"] = {s: f"{s}_int8.tflite" for s in ("global", "local")}
        (folder / "metadata.json").write_text(json.dumps(meta))
        f32 = {s: (folder / f"{s}_f32.tflite").read_bytes() for s in ("global", "local")}
        for name in names:
            scopes, ops = OPTIONS[name]
            pair = convert_pair(model, scopes, ops, calibration, window)
            row = {"bytes": {s: len(b) for s, b in pair.items()}}
            for label, mix in (("both int8", pair), ("global int8 only", {**pair, "local": f32["local"]}),
                               ("local int8 only", {**pair, "global": f32["global"]})):
                mAP, diff, same = fused_map(folder, mix, waveforms, labels, reference)
                row[label] = {"fused_mAP": mAP, "drop": keras_map - mAP, "mean_abs": diff,
                              "same_picks": same}
                if label == "both int8":
                    row["mostly_zeros_max_abs"] = quiet_cells(folder, model)
                if name != "before":
                    break  # the split by stream is measured once, on the default lists
            rows["options"][name] = row
            print(f"{name:20s} drop {row['both int8']['drop']:+.4f}  same picks "
                  f"{row['both int8']['same_picks']:.0%}  "
                  f"bytes {sum(row['bytes'].values())}  " + "  ".join(
                      f"{k}: {v['drop']:+.4f}" for k, v in row.items()
                      if k not in ("bytes", "both int8", "mostly_zeros_max_abs"))
                  + f"  mostly zeros {row['mostly_zeros_max_abs']}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows["machine"] = here.record()  # oneDNN's kernels differ by CPU, and so do the drops
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
