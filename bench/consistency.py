"""The consistency matrix of README.md for trained models: every in-process path on the
fixed audio set (export/consistency.py), for a GL-AT model and its baseline.

    python bench/consistency.py --model runs/demo/glat/best.keras \
        --baseline runs/demo/baseline/best.keras \
        --calibration "demo_data/*/shards/train-*.tfrecord" --out runs/consistency

Exports each model (SavedModel; LiteRT f32 and int8; for GL-AT the single-file model for
MediaPipe when the extra is installed) into --out, reusing what is there, and writes
results/consistency.{json,md}. The fresh-process paths (SavedModel in a new Python, TF
Serving's protocol, glat-tag's CSV, the edge CLI) are in tests/export/test_consistency.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def export_all(model, name: str, out: pathlib.Path, calibration) -> dict:
    from export import consistency  # noqa: F401  (keeps the import order of the CLIs)
    from export.saved_model import export_saved_model
    from export.tflite import export_tflite
    from glat_tf import class_names
    labels, _ = class_names.resolve(model.num_classes, model=model)
    saved = out / f"{name}_serving"
    if not (saved / "1" / "saved_model.pb").exists():
        export_saved_model(model, saved, labels)
    lite = out / f"{name}_lite"
    if not (lite / "metadata.json").exists():
        export_tflite(model, lite, labels, variants=("f32", "int8"), calibration=calibration)
    single = None
    if model.n_clips:  # the MediaPipe file is GL-AT's whole pass
        folder = out / f"{name}_mediapipe"
        single = [folder / "glat_f32.tflite", folder / "glat_int8.tflite"]
        if not all(f.exists() for f in single):
            try:
                from export.single_file import export_single_file
                export_single_file(model, folder, labels, variants=("f32", "int8"),
                                   calibration=calibration)
            except ImportError:
                single = None
    return {"saved": saved / "1", "lite": lite, "single": single}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GL-AT .keras")
    parser.add_argument("--baseline", help="the baseline .keras (Baseline)")
    parser.add_argument("--calibration", required=True, help="train shard glob (int8)")
    parser.add_argument("--out", default="runs/consistency")
    parser.add_argument("--results", default=str(ROOT / "results"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from export import consistency
    from export.calibration import read_calibration
    from glat_tf.loading import load_model
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, numbers = [], {}
    for name, path in (("GL-AT", args.model), ("baseline", args.baseline)):
        if not path:
            continue
        model = load_model(path)
        window = int(10 * model.sample_rate)
        calibration = read_calibration(args.calibration, model.num_classes, window)
        made = export_all(model, name.lower().replace("-", ""), out, calibration)
        rows = consistency.report_matrix(model, made["lite"], out / "audio", made["saved"],
                                         made["single"])
        numbers[name] = {"model": path, "rows": rows}
        tables.append(f"{name} ({path}):\n\n" + consistency.markdown(rows))
        print(tables[-1], flush=True)
    results = pathlib.Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "consistency.json").write_text(json.dumps(numbers, indent=1))
    (results / "consistency.md").write_text("\n\n".join(tables) + "\n")
    print(f"-> {results / 'consistency.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
