"""Evaluation of a trained model: mAP / mAUC / d-prime per stream, per-class AP, N/tau sweeps.

    glat-eval --model runs/demo/best.keras --eval "demo_data/shards/eval-*.tfrecord" --out eval
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from glat_core import console  # first: TensorFlow's start-up stays quiet
console.quiet_startup()  # before anything imports TensorFlow
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from glat_core.console import Progress as tqdm  # noqa: E402  plain lines in logs

from glat_tf import class_names
from glat_core.cli_errors import add_debug_flag, one_line_errors
from glat_tf.data import pipeline
from glat_tf.data.labels import LabelMap
from glat_tf.loading import load_model
from glat_tf.metrics import tagging_scores
from glat_tf.model import GlatModel
from train import plots
from train.durations import duration_groups, read_event_durations

STREAMS = ("global", "local", "fused")


def make_forward(model):
    """A tf.function giving the model's clip-level scores {stream: (batch, L)}; make it once."""
    @tf.function(reduce_retracing=True)
    def forward(waveform):
        out = model(waveform, training=False)
        return {k: out[k] for k in STREAMS if k in out}

    return forward


def predict(model, dataset, *, forward=None, total: int | None = None, progress: bool = True):
    """(labels (clips, L), {stream: scores (clips, L)}) over a (waveform, labels) dataset.

    Pass `forward=make_forward(model)` when predicting repeatedly: each new tf.function traces.
    """
    forward = forward or make_forward(model)
    labels, scores = [], {}
    with tqdm(total=total, unit="clip", desc="evaluate", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for batch in dataset:
            for key, value in forward(batch[0]).items():
                scores.setdefault(key, []).append(value.numpy())
            labels.append(batch[1].numpy())
            bar.update(len(labels[-1]))
    if not labels:
        raise ValueError("the evaluation dataset is empty")
    return np.concatenate(labels), {k: np.concatenate(v) for k, v in scores.items()}


def score_streams(labels, scores: dict) -> dict:
    """{stream: TaggingScores} for every stream the model produced."""
    return {stream: tagging_scores(labels, value) for stream, value in scores.items()}


def main_stream(results: dict) -> str:
    """The stream a model is judged by: fused for GL-AT, global for a plain backbone."""
    return "fused" if "fused" in results else "global"


def format_line(results: dict) -> str:
    return " | ".join(f"{s} mAP={r.mAP:.4f} mAUC={r.mAUC:.4f} d'={r.d_prime:.3f}"
                      for s, r in results.items())


def with_clips(model: GlatModel, n_clips: int, tau: float) -> GlatModel:
    """The same trained streams with another N and tau (neither changes a weight)."""
    config = {**model.get_config(), "n_clips": n_clips, "tau": tau}
    clone = GlatModel.from_config(config)
    clone.build((None, None))
    for name in ("global_backbone", "local_backbone"):
        getattr(clone, name).set_weights(getattr(model, name).get_weights())
    return clone


def sweep(model: GlatModel, make_dataset, ns, taus, *, total=None, progress=True) -> dict:
    """mAP of each stream at every N in `ns` (model's tau) and every tau in `taus` (model's N)."""
    points = {"n": [(n, model.tau) for n in ns], "tau": [(model.n_clips, t) for t in taus]}
    out = {}
    for key, settings in points.items():
        out[key] = []
        for n, tau in settings:
            labels, scores = predict(with_clips(model, n, tau), make_dataset(), total=total,
                                     progress=progress)
            results = score_streams(labels, scores)
            out[key].append({"n_clips": n, "tau": tau,
                             **{s: r.mAP for s, r in results.items()}})
            print(f"sweep N={n} tau={tau:g}: {format_line(results)}", flush=True)
    return out


def count_clips(file_pattern: str) -> int | None:
    """Clips in the shards matching the glob, from the manifest (None if it does not list them)."""
    try:
        manifest = pipeline.read_manifest(file_pattern)
    except FileNotFoundError:
        return None
    records = {e["file"]: e["num_records"] for split in manifest.get("splits", {}).values()
               for e in split.get("shards", [])}
    names = [os.path.basename(f) for f in tf.io.gfile.glob(file_pattern)]
    return sum(records[n] for n in names) if names and all(n in records for n in names) else None


def find_labels(model, model_path: str, eval_glob: str, labels_csv: str | None) -> LabelMap:
    """--labels, else the model's own names, else an old labels.csv beside it, else the eval
    shards' manifest (glat_tf.class_names.resolve)."""
    try:
        manifest = pipeline.read_manifest(eval_glob)
    except FileNotFoundError:
        manifest = None
    labels, _ = class_names.resolve(model.num_classes, labels_csv=labels_csv, model=model,
                                    model_path=model_path, manifest=manifest,
                                    shard_glob=eval_glob)
    return labels


def write_per_class(path: str, label_map: LabelMap, labels, results: dict) -> None:
    positives = np.asarray(labels).sum(axis=0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name", "positives",
                         *[f"{s}_ap" for s in results], *[f"{s}_auc" for s in results]])
        for i, (mid, name) in enumerate(zip(label_map.mids, label_map.names)):
            writer.writerow([i, mid, name, int(positives[i]),
                             *[_fmt(r.ap[i]) for r in results.values()],
                             *[_fmt(r.auc[i]) for r in results.values()]])


def _fmt(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def evaluate(model_path: str, eval_glob: str, out_dir: str, *, batch_size: int = 16,
             labels_csv: str | None = None, sweep_n=(), sweep_tau=(), strong_labels=None,
             progress: bool = True) -> dict:
    """Runs every report the CLI offers; returns {stream: summary dict}."""
    model = load_model(model_path)
    num_classes = model.num_classes
    label_map = find_labels(model, model_path, eval_glob, labels_csv)
    if sweep_n and max(sweep_n) > num_classes:
        raise ValueError(f"--sweep-n {max(sweep_n)} exceeds the model's {num_classes} classes")
    if strong_labels:  # read before the evaluation: a bad file must not cost a whole run
        try:
            read_event_durations(strong_labels, label_map)
        except ValueError as error:  # UnicodeDecodeError does not name the file
            message = str(error) if str(strong_labels) in str(error) else (
                f"--strong-labels {strong_labels}: {error}")
            raise ValueError(message) from error
    total = count_clips(eval_glob)

    def make_dataset():
        return pipeline.eval_dataset(eval_glob, batch_size, num_classes)

    labels, scores = predict(model, make_dataset(), total=total, progress=progress)
    results = score_streams(labels, scores)
    os.makedirs(out_dir, exist_ok=True)
    summary = {stream: r.summary() for stream, r in results.items()}
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    write_per_class(os.path.join(out_dir, "per_class_ap.csv"), label_map, labels, results)
    plots.per_class_ap_plot(list(label_map.names), {s: r.ap for s, r in results.items()},
                            os.path.join(out_dir, "per_class_ap.png"), sort_by=main_stream(results))
    print(f"{len(labels)} clips: {format_line(results)}", flush=True)
    if strong_labels:
        groups = duration_groups(strong_labels, label_map, {s: r.ap for s, r in results.items()})
        with open(os.path.join(out_dir, "duration_groups.json"), "w", encoding="utf-8") as f:
            json.dump(groups, f, indent=1)
        for name, group in groups.items():
            maps = " ".join(f"{s} mAP={'n/a' if v is None else f'{v:.4f}'}"
                            for s, v in group["mAP"].items())
            print(f"{name:6s} events ({len(group['classes'])} classes): {maps}", flush=True)
    if sweep_n or sweep_tau:
        if not model.n_clips:
            raise ValueError("--sweep-n/--sweep-tau need a GL-AT model, not a plain backbone")
        points = sweep(model, make_dataset, sweep_n, sweep_tau, total=total, progress=progress)
        with open(os.path.join(out_dir, "sweep.json"), "w", encoding="utf-8") as f:
            json.dump(points, f, indent=1)
        plots.sweep_plot(points, os.path.join(out_dir, "sweep.png"), n_clips=model.n_clips,
                         tau=model.tau)
    return summary


def _numbers(kind):
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values
    return parse


@one_line_errors("glat-eval")
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="glat-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras GlatModel or baseline")
    parser.add_argument("--eval", required=True, help="eval shard glob")
    parser.add_argument("--out", required=True, help="folder for summary.json, CSV and PNGs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--labels", help="class_labels_indices.csv (default: beside the model, "
                                         "else the shards' manifest)")
    parser.add_argument("--sweep-n", type=_numbers(int), default=[], help="e.g. 1,3,5,7")
    parser.add_argument("--sweep-tau", type=_numbers(float), default=[], help="e.g. 1,2,3,4,5")
    parser.add_argument("--strong-labels", help="onset/offset CSV: mAP by event duration group")
    parser.add_argument("--no-progress", action="store_true")
    console.add_verbose(parser)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not os.path.exists(args.model):
        parser.error(f"--model {args.model}: no such file")
    if args.strong_labels and not os.path.isfile(args.strong_labels):
        parser.error(f"--strong-labels {args.strong_labels}: no such file")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:  # bad paths, files and values: one line from one_line_errors
        evaluate(args.model, args.eval, args.out, batch_size=args.batch_size,
                 labels_csv=args.labels, sweep_n=args.sweep_n, sweep_tau=args.sweep_tau,
                 strong_labels=args.strong_labels, progress=not args.no_progress)
    except pipeline.READ_ERRORS as exc:  # a damaged shard: one line naming it
        if not pipeline.is_damage(exc):
            raise
        print(f"glat-eval: error: {pipeline.input_error_line(exc)}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/summary.json", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
