"""Training clips/s of the plain backbone, GL-AT and its variants (same preset, batch, clip
length), and each one's cost ratio to the backbone.

    python bench/train_throughput.py --backbone cnn10_tiny --batch-size 8 --n-clips 3 --tau 2

Both run the training loop's own step function (train/loop.py) on one in-memory batch, so
the numbers are the model's cost without the input pipeline; rounds alternate between the
two and the best round of each counts. Results: bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import keras
import tensorflow as tf
from tqdm import tqdm

from train.fit import json_object
from train.loop import LoopSettings, make_optimizer, make_train_step
from train.run import FitConfig, build_model
from train.variants import glat_variants


def make_runner(model, batch, labels, warmup: int):
    """A function timing `steps` training steps of `model`: (clips per wall second, clips
    per CPU-second of this process), after `warmup` steps."""
    strategy = tf.distribute.get_strategy()
    settings = LoopSettings(steps=1, batch_size=int(batch.shape[0]))
    optimizer = make_optimizer(settings)
    optimizer.build(model.trainable_variables)
    step = make_train_step(strategy, model, optimizer, settings)
    iterator = iter(tf.data.Dataset.from_tensors((batch, labels)).repeat())
    for _ in range(warmup):  # tracing and the first, slow executions
        step(iterator)["loss"].numpy()

    def clips_per_second(steps: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = step(iterator)
        out["loss"].numpy()
        clips = steps * settings.batch_size
        return clips / (time.perf_counter() - wall), clips / (time.process_time() - cpu)

    return clips_per_second


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cnn10_tiny")
    parser.add_argument("--backbone-kwargs", type=json_object, default={},
                        help="preset overrides as JSON, as glat-fit's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--sample-rate", type=int, default=32000)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--n-clips", type=int, default=3)
    parser.add_argument("--tau", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (best reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", help="comma-separated runs of train/variants.py "
                                           "(default: every GL-AT variant)")
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args(argv)
    from machine import Machine, command  # bench/ is sys.path[0] when this runs as a script
    here = Machine()
    samples = int(round(args.seconds * args.sample_rate))
    keras.utils.set_random_seed(0)
    batch = tf.random.normal([args.batch_size, samples], stddev=0.1)
    labels = tf.cast(tf.random.uniform([args.batch_size, args.num_classes]) < 0.2, tf.float32)
    base = FitConfig(train="-", out="-", backbone=args.backbone, n_clips=args.n_clips,
                     tau=args.tau, backbone_kwargs=args.backbone_kwargs)
    variants = {"backbone": {"backbone_only": True}}
    variants.update(glat_variants({"backbone": args.backbone,
                                   "backbone_kwargs": args.backbone_kwargs}))
    wanted = args.variants.split(",") if args.variants else list(variants)
    unknown = sorted(set(wanted) - set(variants))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(variants)}")
    # The models are built as glat-fit builds them, from the same FitConfig changes.
    models = {name: build_model(base.replace(**variants[name]), args.num_classes,
                                args.sample_rate, None, samples)
              for name in dict.fromkeys(["backbone", *wanted])}
    result = {"backbone": args.backbone, "backbone_kwargs": args.backbone_kwargs,
              "batch_size": args.batch_size, "seconds": args.seconds,
              "n_clips": args.n_clips, "tau": args.tau,
              "command": command(argv)}
    runners = {}
    for name, model in models.items():
        runners[name] = make_runner(model, batch, labels, args.warmup)
    # Rounds alternate between the models so both meet the same load on a shared machine;
    # the best round is the least disturbed one.
    rates = {name: [] for name in runners}
    for _ in tqdm(range(args.repeats), desc="rounds", unit="round", leave=False):
        for name, runner in runners.items():
            rates[name].append(runner(args.steps))
    for name, pairs in rates.items():
        runs, per_cpu = [wall for wall, _ in pairs], [cpu for _, cpu in pairs]
        result[name] = {"clips_per_second": max(runs), "median": statistics.median(runs),
                        "runs": runs, "clips_per_cpu_second": max(per_cpu),
                        "cpu_runs": per_cpu}
        print(f"{name:8s} {max(runs):7.2f} clips/s best of {len(runs)} (median "
              f"{statistics.median(runs):.2f})", flush=True)
    result["seconds_per_step"] = {name: args.batch_size / result[name]["clips_per_second"]
                                  for name in runners}
    for name in runners:
        if name != "backbone":
            result[f"{name}_cost_ratio"] = (result["backbone"]["clips_per_second"]
                                            / result[name]["clips_per_second"])
            result[f"{name}_cpu_cost_ratio"] = (result["backbone"]["clips_per_cpu_second"]
                                                / result[name]["clips_per_cpu_second"])
            print(f"{name} step costs {result[f'{name}_cost_ratio']:.2f}x the backbone's")
    expected = 1 + args.n_clips * args.tau / args.seconds
    print(f"(GL-AT's conv-dominated estimate: 1 + N*tau/T0 = {expected:.2f})")
    result["machine"] = here.record()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
