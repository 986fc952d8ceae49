"""`glat-export saved-model|tflite|report ...`: a trained .keras GlatModel out to deployment."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from glat_core import console  # noqa: E402  first: TensorFlow's start-up stays quiet
console.quiet_startup()  # before anything imports TensorFlow

from glat_core.cli_errors import add_debug_flag, one_line_errors  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    from export.plan import DEFAULT_WINDOW_SECONDS
    parser = argparse.ArgumentParser(prog="glat-export", description=__doc__)
    console.add_verbose(parser)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    saved = sub.add_parser("saved-model", help="TF Serving layout <out>/<version>/")
    saved.add_argument("--model", required=True, help="GlatModel .keras file")
    saved.add_argument("--out", required=True, help="model base directory for TF Serving")
    saved.add_argument("--version", type=int, default=1, help="version subdirectory (default 1)")
    saved.add_argument("--labels", help="class CSV (index,mid,display_name); default: "
                       "labels.csv beside the model, or AudioSet's for 527 classes")

    lite = sub.add_parser("tflite", help="LiteRT global/local pair per variant + metadata.json")
    lite.add_argument("--model", required=True, help="GlatModel .keras file")
    lite.add_argument("--out", required=True, help="output directory")
    lite.add_argument("--variants", default=None,
                      help="comma-separated subset of f32,f16,dyn,int8 (default all; "
                           "f32,int8 with --single-file)")
    lite.add_argument("--calibration", help="TFRecord shard glob of real clips (int8 needs it)")
    lite.add_argument("--calibration-clips", type=int, default=200,
                      help="clips to calibrate int8 on (at least 100)")
    lite.add_argument("--calibration-padded", type=int, default=0, metavar="K",
                      help="zero-pad every K-th calibration clip in front (0: none): int8 then "
                           "tags mostly-zero audio (files shorter than a crop, digital silence) "
                           "as Keras does, at some accuracy on real clips (README)")
    lite.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS,
                      help="fixed input window of the global model (default "
                           f"{DEFAULT_WINDOW_SECONDS:g} s)")
    lite.add_argument("--labels", help="class CSV, as for saved-model")
    for command in (saved, lite):
        console.add_verbose(command)
        add_debug_flag(command)
    lite.add_argument("--streaming", action="store_true",
                      help="also the feature-streaming models (chunk + head per stream) that "
                           "python -m edge_runtime.stream --streaming runs")
    lite.add_argument("--single-file", action="store_true",
                      help="instead one glat_<v>.tflite of the whole pass with TFLite Model "
                           "Metadata, for MediaPipe's AudioClassifier (f32, int8)")

    sub.add_parser("report", add_help=False,
                   help="size, ops, parity, mAP and latency per variant (see report --help)")
    return parser


def _saved_model(args) -> int:
    from glat_tf.loading import load_model
    from glat_tf import class_names
    from export.saved_model import export_saved_model
    model = load_model(args.model)
    labels, source = class_names.resolve(model.num_classes, labels_csv=args.labels, model=model,
                                         model_path=args.model)
    with console.step("export: SavedModel"):
        path = export_saved_model(model, args.out, labels, version=args.version)
    print(f"SavedModel written to {path} (labels from {source})")
    return 0


@contextlib.contextmanager
def _staged(out: str):
    """A hidden sibling folder to export into; at the end each of its files replaces its
    namesake in `out` (os.replace, metadata last), so a killed or SIGTERMed export never
    leaves a partial file where the runtime loads one. SIGTERM ends the export cleanly."""
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=os.path.dirname(out))
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if main_thread else None
    try:
        yield tmp
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(tmp), key=lambda n: (n.endswith(".json"), n)):
            target = os.path.join(out, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(tmp, name), target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _tflite(args) -> int:
    from glat_tf.loading import load_model
    from glat_tf import class_names
    from export.calibration import padded, read_calibration
    from export.tflite import VARIANTS, export_tflite
    if args.single_file:
        from export import single_file
        VARIANTS, export_tflite = single_file.VARIANTS, single_file.export_cli  # noqa: N806
    variants = [v.strip() for v in (args.variants or ",".join(VARIANTS)).split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants must name some of {','.join(VARIANTS)}, got {args.variants!r}")
    if "int8" in variants and not args.calibration:
        raise ValueError("the int8 variant needs --calibration GLOB (TFRecord shards of real clips)")
    if args.calibration_padded < 0:
        raise ValueError(f"--calibration-padded must be >= 0, got {args.calibration_padded}")
    if not args.window_seconds > 0:
        raise ValueError(f"--window-seconds must be > 0, got {args.window_seconds}")
    model = load_model(args.model)
    window = int(round(args.window_seconds * model.sample_rate))
    crop = int(round(getattr(model, "tau", 0) * model.sample_rate)) if getattr(
        model, "n_clips", 0) else 0
    if window < max(crop, 1):  # before any conversion: the window must hold one crop
        raise ValueError(f"--window-seconds {args.window_seconds} is shorter than the model's "
                         f"crop (tau = {model.tau} s): the window must hold a crop")
    labels, source = class_names.resolve(model.num_classes, labels_csv=args.labels, model=model,
                                         model_path=args.model)
    calibration = None
    if "int8" in variants:
        calibration = read_calibration(args.calibration, model.num_classes, window,
                                       args.calibration_clips)
        if args.calibration_padded:
            calibration = padded(calibration, args.calibration_padded)
    with _staged(args.out) as staging:
        meta = export_tflite(model, staging, labels, variants=variants, window_samples=window,
                             calibration=calibration, streaming=args.streaming)
    for variant, files in meta["variants"].items():
        print(f"{variant}: " + ", ".join(f"{args.out}/{name}" for name in files.values()))
    print(f"metadata: {args.out}/{meta.get('record', 'metadata.json')} (labels from {source})")
    return 0


@one_line_errors("glat-export")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        from export import report
        return report.main(argv[1:])
    args = _parser().parse_args(argv)
    return {"saved-model": _saved_model, "tflite": _tflite}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
