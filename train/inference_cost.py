"""Inference cost of a model: parameters, multiply-adds (TensorFlow's profiler) and CPU
forward time per clip, timed in alternating rounds so a shared machine's load meets every
model alike.

    python -m train.inference_cost --model runs/x/best.keras --threads 1 --out cost.json

bench/model_cost.py (presets, GL-AT and its variants) and train/realset_experiments.py (each
trained row's cost, in a process of its own for the thread setting) both use this module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import tensorflow as tf


def trainable_params(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def forward_timer(model, batch_size: int, samples: int):
    """A function timing one inference forward pass of `model` (traced and run once here):
    (wall ms, CPU ms of this process, all threads) per clip."""
    forward = tf.function(lambda w: model(w, training=False))
    wave = tf.random.normal([batch_size, samples], stddev=0.1)
    tf.nest.map_structure(lambda t: t.numpy(), forward(wave))  # trace + first run

    def once() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        tf.nest.map_structure(lambda t: t.numpy(), forward(wave))
        return (1000 * (time.perf_counter() - wall) / batch_size,
                1000 * (time.process_time() - cpu) / batch_size)
    return once


def ms_per_clip(models: dict, batch_size: int, samples: int, repeats: int) -> dict:
    """{name: ([wall ms], [CPU ms]) per clip} over `repeats` rounds that time every model once
    in turn, so that a change of load on a shared machine meets all of them alike."""
    timers = {name: forward_timer(model, batch_size, samples) for name, model in models.items()}
    runs = {name: ([], []) for name in models}
    for _ in range(repeats):
        for name, once in timers.items():
            for kept, value in zip(runs[name], once()):
                kept.append(value)
    return runs


def float_ops(function, *specs) -> int:
    """TensorFlow's profiler count of float operations of `function` on static `specs`
    (a convolution or matmul counts 2 per multiply-add; the RFFT is not counted)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    graph = convert_variables_to_constants_v2(
        tf.function(function).get_concrete_function(*specs)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def multiply_adds(model, samples: int) -> dict:
    """Multiply-adds (float ops / 2) of one clip of `samples` through a backbone, a
    Baseline or a GlatModel, by stage: `global` (backbone + head on the clip) and
    `local` (N crops through the local stream, or N heads on reused global features)."""
    clip = tf.TensorSpec([1, samples], tf.float32)
    if not getattr(model, "n_clips", 0):  # a backbone, or the baseline (n_clips 0)
        net = getattr(model, "backbone", model)
        return {"global": float_ops(lambda w: net(w, training=False), clip) // 2, "local": 0}
    features = model.branch_features("global", tf.zeros([1, samples]))
    out = {"global": float_ops(lambda w: model.global_head(
        model.branch_features("global", w)), clip) // 2}
    if getattr(model, "reuse_features", False):
        starts = tf.zeros([1, model.n_clips], tf.int32)
        window = model.window_features(features, starts, samples)
        spec = tf.TensorSpec(window.shape, tf.float32)
        out["local"] = float_ops(lambda f: model.local_head(f), spec) // 2
    else:
        crops = tf.TensorSpec([model.n_clips, model.crop_samples], tf.float32)
        out["local"] = float_ops(lambda c: model.local_stage(c), crops) // 2
    return out


def saved_model_costs(paths, seconds: float, repeats: int) -> dict:
    """{path: inference cost} of saved .keras models: ms per clip at batch 1 (median over
    `repeats` rounds that time every model once in turn, so a load change hits all of them
    alike) and multiply-adds."""
    from glat_tf.loading import load_model
    rows, timers = {}, {}
    for path in paths:
        model = load_model(path)
        samples = int(round(seconds * model.sample_rate))
        macs = multiply_adds(model, samples)
        rows[path] = {"seconds": seconds, "multiply_adds": sum(macs.values()),
                      "multiply_adds_by_stage": macs, "params": trainable_params(model)}
        timers[path] = forward_timer(model, 1, samples)
    times = {path: [] for path in paths}
    for _ in range(repeats):
        for path, once in timers.items():
            times[path].append(once()[0])
    for path in paths:
        rows[path]["ms_per_clip"] = statistics.median(times[path])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved .keras models")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    parser.add_argument("--out", required=True, help="JSON: {path: cost}, or the cost of one")
    args = parser.parse_args(argv)
    missing = [p for p in args.model if not os.path.exists(p)]
    if missing:
        parser.error(f"--model {missing[0]}: no such file")
    if args.threads:  # before TensorFlow runs anything: set once per process
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    rows = saved_model_costs(args.model, args.seconds, args.repeats)
    for row in rows.values():
        row["threads"], row["load_average_1min"] = args.threads, os.getloadavg()[0]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(rows if len(rows) > 1 else {"model": args.model[0], **rows[args.model[0]]},
                  f, indent=1)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
