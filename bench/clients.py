"""Figures of the client paths: MediaPipe's AudioClassifier vs Keras on the real test clip
(f32 and int8 single-file export), and glat-tag's wall time on N demo clips on CPU.

    python bench/clients.py --model runs/demo/glat/best.keras --out bench/results/clients
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import soundfile

CLIP = pathlib.Path(__file__).parents[1] / "tests" / "data" / "R9_ZSCveAHg_7s.wav"


def mediapipe_scores(model_path, out: pathlib.Path, calibration_clips: int) -> list[dict]:
    from mediapipe.tasks.python import audio
    from mediapipe.tasks.python.components.containers import audio_data
    from mediapipe.tasks.python.core import base_options

    from export import single_file
    from export.calibration import fit_length
    from glat_tf.loading import load_model
    from glat_tf import class_names
    from glat_tf.data.synthetic import make_clip
    model = load_model(model_path)
    labels, _ = class_names.resolve(model.num_classes, model=model, model_path=model_path)
    window = 10 * model.sample_rate
    rng = np.random.default_rng(0)
    # Whole clips at their own level, as glat-export's --calibration reads them.
    calibration = fit_length(np.stack([make_clip(rng)[0] for _ in range(calibration_clips)]),
                             window)
    single_file.export_single_file(model, out / "single", labels, variants=("f32", "int8"),
                                   window_samples=window, calibration=calibration)
    clip, rate = soundfile.read(CLIP, dtype="float32")
    # The 7 s clip at its own length: MediaPipe pads it to the window, the model drops that.
    keras_fused = model(clip[None], training=False)["fused"]
    rows = {name: {"class": name, "keras": float(s)}
            for name, s in zip(labels.names, np.asarray(keras_fused)[0])}
    for variant in ("f32", "int8"):
        options = audio.AudioClassifierOptions(
            base_options=base_options.BaseOptions(
                model_asset_path=str(out / "single" / f"glat_{variant}.tflite")),
            running_mode=audio.RunningMode.AUDIO_CLIPS, max_results=-1)
        with audio.AudioClassifier.create_from_options(options) as classifier:
            result = classifier.classify(audio_data.AudioData.create_from_array(clip, rate))[0]
        for category in result.classifications[0].categories:
            rows[category.category_name][f"mediapipe_{variant}"] = category.score
    return sorted(rows.values(), key=lambda r: -r["keras"])


def tag_time(model_path, out: pathlib.Path, clips: int) -> dict:
    from glat_tf.data.synthetic import make_clip
    folder = out / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(clips):
        soundfile.write(folder / f"clip{i:03d}.wav", make_clip(rng)[0], 32000, subtype="PCM_16")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "glat_core.tag", str(model_path), str(folder),
                           "--out", str(out / "tags.csv")], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"clips": clips, "clip_seconds": 10.0, "wall_seconds": round(seconds, 1),
            "seconds_per_clip": round(seconds / clips, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", default="bench/results/clients")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--calibration-clips", type=int, default=100)
    parser.add_argument("--tag-only", action="store_true",
                        help="only glat-tag's wall time, into <out>_tag.json (no MediaPipe export)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from demo_numbers import machine
    if args.tag_only:
        result = {"model": args.model, "machine": machine(), "load_1min": os.getloadavg()[0],
                  "glat_tag": tag_time(args.model, out, args.clips)}
        pathlib.Path(f"{out}_tag.json").write_text(json.dumps(result, indent=1))
        print(result)
        return 0
    result = {"model": args.model, "machine": machine(), "load_1min": os.getloadavg()[0],
              "mediapipe_vs_keras": mediapipe_scores(
        args.model, out, args.calibration_clips), "glat_tag": tag_time(args.model, out, args.clips)}
    pathlib.Path(f"{out}.json").write_text(json.dumps(result, indent=1))
    for row in result["mediapipe_vs_keras"]:
        print(f"{row['class']:<24} keras {row['keras']:.6f}  mediapipe f32 "
              f"{row['mediapipe_f32']:.6f}  int8 {row['mediapipe_int8']:.6f}")
    print(result["glat_tag"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
