"""Per-variant report of an exported LiteRT pair: size, ops, parity and mAP vs Keras, latency."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

from glat_core import console

console.quiet_startup()  # before anything imports TensorFlow
import numpy as np  # noqa: E402

from edge_runtime.streaming import full_budget
from edge_runtime.pipeline import CROP_BUDGET, DEFAULT_MODE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from glat_core.cli_errors import add_debug_flag, one_line_errors  # noqa: E402

# The targets for the int8 pair, both relative to float32.
MAP_DROP_TARGET = 0.01
SIZE_RATIO_TARGET = 1 / 3
# Streaming is the runtime's default only while its fused mAP (default crop budget) stays
# within this of the exact mode's on the same clips (issue 11).
STREAMING_MAP_DROP_TARGET = 0.005


def read_eval(pattern: str, num_classes: int, window_samples: int, clips: int | None = None):
    """(waveforms (clips, window), labels (clips, L)) of eval shards, every clip once."""
    from glat_tf.data.pipeline import eval_dataset
    from export.calibration import fit_length
    waves, labels = [], []
    for wave, label in eval_dataset(pattern, 32, num_classes):
        waves.append(wave.numpy())
        labels.append(label.numpy())
        if clips is not None and sum(len(w) for w in waves) >= clips:
            break
    waves, labels = np.concatenate(waves)[:clips], np.concatenate(labels)[:clips]
    return fit_length(waves, window_samples), labels


def latency_ms(tagger, waveform: np.ndarray, runs: int) -> dict:
    """Median milliseconds per call of the global model, the local model and the whole
    exact-mode pipeline (an independent window each time)."""
    tagger(waveform)  # warms up
    starts = [int(s) for s in tagger(waveform).clip_starts]
    timings = {"global": [], "local": [], "pair": []}
    for _ in range(runs):
        for name, call in (("global", lambda: tagger.global_outputs(waveform)),
                           ("local", lambda: tagger.crop_scores(waveform, starts)),
                           ("pair", lambda: tagger(waveform))):
            start = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - start) * 1e3)
    return {name: round(statistics.median(values), 2) for name, values in timings.items()}


def build_report(model, exported_dir, waveforms: np.ndarray, labels: np.ndarray,
                 latency_runs: int = 10, progress: bool = True) -> dict:
    """Everything the README table shows, per variant, as one JSON-ready dict: the exported
    files run by the edge runtime as the device runs them, in both modes."""
    from glat_core.console import Progress as tqdm

    from edge_runtime import ExportMetadata, Pipeline
    from export import acceptance, litert_convert
    from glat_tf.metrics import tagging_scores

    exported_dir = pathlib.Path(exported_dir)
    meta = ExportMetadata.read(exported_dir)
    with console.step(f"report: Keras on {len(waveforms)} clips"):
        reference = acceptance.keras_outputs(model, waveforms)
    report = {"model": {k: getattr(meta, k) for k in ("backbone", "sample_rate", "window_samples",
                                                      "crop_samples", "n_clips", "tau",
                                                      "num_classes")},
              "clips": int(len(waveforms)),
              "keras": {k: tagging_scores(labels, reference[k]).summary()
                        for k in acceptance.SCORES},
              "default_mode": DEFAULT_MODE, "default_crop_budget": CROP_BUDGET,
              "variants": {}}
    window_fused = None  # Keras on each clip's last streamed window (streaming rows)
    for variant, files in tqdm(meta.variants.items(), desc="variants", disable=not progress):
        flatbuffers = {s: (exported_dir / files[s]).read_bytes() for s in ("global", "local")
                       if s in files}
        tagger = Pipeline.from_export(exported_dir, variant, "exact")
        got = acceptance.litert_outputs(tagger, waveforms, reference)
        stats = acceptance.measure(variant, reference, got, meta.window_samples,
                                   meta.crop_samples)
        report["variants"][variant] = {
            "bytes": {s: len(b) for s, b in flatbuffers.items()},
            "kept_float_bytes": {s: kept_float_bytes(b) for s, b in flatbuffers.items()},
            "ops": {s: litert_convert.op_names(b) for s, b in flatbuffers.items()},
            "parity": stats,
            "accepted": acceptance.check(variant, stats) == [],
            "fused": tagging_scores(labels, got["fused"]).summary(),
            "latency_ms": {f"{threads}_threads": latency_ms(
                Pipeline.from_export(exported_dir, variant, "exact", threads), waveforms[0],
                latency_runs) for threads in (1, 2)},
        }
        if meta.streaming is not None:
            if window_fused is None:
                window_fused = acceptance.keras_outputs(
                    model, last_window(meta.streaming, waveforms))["fused"]
            report["variants"][variant]["streaming"] = streaming_rows(
                meta, exported_dir, variant, waveforms, labels, got["fused"], window_fused)
    report["targets"] = _targets(report)
    return report


def kept_float_bytes(flatbuffer: bytes) -> int:
    """Bytes of the constants of the frontend and the selection (export/tflite.py's
    FLOAT_SCOPES): float32 in every variant by design (the mel matrix alone is 128 KiB), so
    the size target compares the rest, what quantization can shrink."""
    from tensorflow.lite.python import schema_py_generated as schema

    from export.litert_convert import _in_scopes
    from export.tflite import FLOAT_SCOPES
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffers = {t.buffer for g in model.subgraphs for t in g.tensors
               if _in_scopes(t.name.decode(), FLOAT_SCOPES)}
    return sum(len(model.buffers[b].data) for b in buffers if model.buffers[b].data is not None)


def streaming_rows(meta, exported_dir: pathlib.Path, variant: str, waveforms: np.ndarray,
                   labels: np.ndarray, exact_fused: np.ndarray, window_fused: np.ndarray) -> dict:
    """Per crop budget (the runtime's default and one that scores every pick): the
    streaming mode's mAP, how far its
    fused scores are from the same variant's exact mode on the same clips, and from Keras
    on the streamed window itself (the clip's last whole grid steps)."""
    from glat_tf.metrics import tagging_scores
    rows = {}
    for budget in sorted({CROP_BUDGET, full_budget(meta)}):
        fused = streaming_fused(exported_dir, variant, waveforms, budget)
        diff = np.abs(fused - exact_fused)
        rows[f"crop_budget_{budget}"] = {
            "fused": tagging_scores(labels, fused).summary(),
            "max_abs_vs_exact": float(diff.max()), "mean_abs_vs_exact": float(diff.mean()),
            "max_abs_vs_keras_window": float(np.abs(fused - window_fused).max())}
    return rows


def last_window(plan, waveforms: np.ndarray) -> np.ndarray:
    """(clips, window_features * stride): the audio of each clip's last streamed window,
    the last whole grid steps before its end."""
    end = waveforms.shape[1] // plan.stride_samples * plan.stride_samples
    start = end - plan.window_features * plan.stride_samples
    if start < 0:  # a clip shorter than the window: the stream's zeros before it
        waveforms = np.pad(waveforms, [(0, 0), (-start, 0)])
        start, end = 0, end - start
    return waveforms[:, start:end]


STREAMING_HOP_SECONDS = 1.0


def streaming_fused(exported_dir: pathlib.Path, variant: str, waveforms: np.ndarray,
                    crop_budget: int, hop_seconds: float = STREAMING_HOP_SECONDS) -> np.ndarray:
    """Fused scores of the streaming mode as a device tags a file: each clip streamed on
    its own from a fresh state, hop by hop (feature buffers, crop cache and budget), its
    answer the last hop's, whose window is the clip's last whole grid steps."""
    from edge_runtime import ArraySource, StreamRunner, Pipeline
    tagger = Pipeline.from_export(exported_dir, variant, "streaming", crop_budget=crop_budget)
    stream = StreamRunner(tagger, hop_seconds)
    answers = []
    for clip in waveforms:
        last = None
        for last in stream.run(ArraySource([clip], tagger.sample_rate)):
            pass
        answers.append(last.result.fused)
    return np.stack(answers)


def _targets(report: dict) -> dict:
    variants, keras_map = report["variants"], report["keras"]["fused"]["mAP"]
    targets = {}
    if "int8" in variants:
        drop = keras_map - variants["int8"]["fused"]["mAP"]
        targets["int8_fused_mAP_drop"] = {"value": drop, "target": MAP_DROP_TARGET,
                                          "met": bool(drop <= MAP_DROP_TARGET)}
    if "int8" in variants and "f32" in variants:
        def shrinkable(row):  # the file minus the constants every variant keeps float32
            return sum(row["bytes"].values()) - sum(row.get("kept_float_bytes", {}).values())
        ratio = shrinkable(variants["int8"]) / shrinkable(variants["f32"])
        targets["int8_size_ratio"] = {"value": ratio, "target": SIZE_RATIO_TARGET,
                                      "met": bool(ratio <= SIZE_RATIO_TARGET)}
    budget = f"crop_budget_{report.get('default_crop_budget', CROP_BUDGET)}"
    for variant, row in variants.items():
        if budget in row.get("streaming", {}):
            drop = row["fused"]["mAP"] - row["streaming"][budget]["fused"]["mAP"]
            targets[f"{variant}_streaming_fused_mAP_drop"] = {
                "value": drop, "target": STREAMING_MAP_DROP_TARGET,
                "met": bool(drop <= STREAMING_MAP_DROP_TARGET)}
    return targets


def markdown(report: dict) -> str:
    """The README table: one row per variant plus Keras float32."""
    keras = report["keras"]["fused"]
    lines = [f"{report['model']['backbone']}, {report['clips']} eval clips, window "
             f"{report['model']['window_samples']} samples, N={report['model']['n_clips']}, "
             f"tau={report['model']['tau']} s",
             "",
             "| variant | global KB | local KB | fused mAP | fused mAUC | max abs diff | "
             "mean abs diff | picks as good | pair ms (1 thr) | pair ms (2 thr) |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| Keras f32 | | | {keras['mAP']:.4f} | {keras['mAUC']:.4f} | | | | | |"]
    for variant, row in report["variants"].items():
        lat = row["latency_ms"]
        lines.append(
            f"| {variant} | {row['bytes']['global'] / 1024:.0f} | {row['bytes']['local'] / 1024:.0f}"
            f" | {row['fused']['mAP']:.4f} | {row['fused']['mAUC']:.4f}"
            f" | {row['parity']['max_abs']:.2g} | {row['parity']['mean_abs']:.2g}"
            f" | {row['parity']['selection']:.0%} | {lat['1_threads']['pair']:.1f}"
            f" | {lat['2_threads']['pair']:.1f} |")
        for setting, stream in row.get("streaming", {}).items():
            lines.append(f"| {variant} streaming, {setting.replace('_', ' ')} | | | "
                         f"{stream['fused']['mAP']:.4f} | {stream['fused']['mAUC']:.4f} | "
                         f"{stream['max_abs_vs_exact']:.2g} | {stream['mean_abs_vs_exact']:.2g}"
                         f" | | vs Keras on its window: {stream['max_abs_vs_keras_window']:.2g}"
                         " | |")
    if any("streaming" in row for row in report["variants"].values()):
        lines.append("\nstreaming rows: each clip streamed on its own through the streaming "
                     f"models ({STREAMING_HOP_SECONDS:g} s hop, fresh state; new local crops "
                     "per hop within the `crop budget`: the runtime's default, and one that "
                     "scores every pick), its answer the last hop's; diffs are to the same "
                     "variant's exact pair on the "
                     "whole clip, and (max) to Keras on the streamed window, the clip's last "
                     "whole grid steps.")
    for name, target in report.get("targets", {}).items():
        lines.append(f"\n{name}: {target['value']:.4f} (target {target['target']:.4f}): "
                     f"{'met' if target['met'] else 'NOT met'}")
    if report.get("consistency"):
        from export.consistency import markdown as matrix_table
        lines.append("\nConsistency matrix: max |diff| from Keras on the same audio over "
                     "fused, global and local (* clips differ but are as good by Keras' "
                     "scores):\n\n" + matrix_table(report["consistency"]))
    return "\n".join(lines) + "\n"


def plot(report: dict, path) -> None:
    """Size against fused mAP per variant, Keras' mAP as a line: the trade-off at a glance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, row in report["variants"].items():
        size = sum(row["bytes"].values()) / 2 ** 20
        ax.scatter(size, row["fused"]["mAP"])
        ax.annotate(variant, (size, row["fused"]["mAP"]), textcoords="offset points",
                    xytext=(5, 5))
    ax.axhline(report["keras"]["fused"]["mAP"], linestyle="--", label="Keras float32")
    ax.set_xlabel("global + local file size (MiB)")
    ax.set_ylabel("fused mAP (eval shards)")
    ax.set_title(f"{report['model']['backbone']}: LiteRT variants")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@one_line_errors("glat-export report")
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="glat-export report", description=__doc__)
    parser.add_argument("--model", required=True, help="the GlatModel .keras that was exported")
    parser.add_argument("--exported", required=True, help="directory of glat-export tflite")
    parser.add_argument("--eval", required=True, help="TFRecord shard glob of eval clips")
    parser.add_argument("--out", required=True, help="where report.json/.md/.png go")
    parser.add_argument("--clips", type=int, help="use only the first N eval clips")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target is not met (for CI)")
    parser.add_argument("--saved-model", help="a SavedModel of the same model: its row in the "
                                              "consistency matrix")
    parser.add_argument("--single-file", nargs="+", metavar="TFLITE",
                        help="glat_<v>.tflite files of --single-file: a MediaPipe row per "
                             "variant in the consistency matrix")
    console.add_verbose(parser)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    for flag, value in (("--clips", args.clips), ("--latency-runs", args.latency_runs)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    meta_file = (os.path.join(args.exported, "metadata.json") if os.path.isdir(args.exported)
                 else args.exported)
    if not os.path.isfile(meta_file):  # before the model loads
        parser.error(f"--exported {args.exported}: no metadata.json (pass the folder "
                     "glat-export tflite wrote)")
    from glat_tf.loading import load_model
    model = load_model(args.model)  # bad paths and files: one line from one_line_errors
    from edge_runtime import ExportMetadata
    meta = ExportMetadata.read(args.exported)
    waveforms, labels = read_eval(args.eval, model.num_classes, meta.window_samples, args.clips)
    report = build_report(model, args.exported, waveforms, labels, args.latency_runs)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from export import consistency
    rows = consistency.report_matrix(model, args.exported, out / "audio", args.saved_model,
                                     args.single_file)
    report["consistency"] = rows
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "report.png")
    print(markdown(report))
    missed = [name for name, target in report["targets"].items() if not target["met"]]
    if args.strict and missed:
        print(f"export.report: targets not met: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
