"""Training cost per step of the plain backbone, GL-AT and its variants (same preset, batch,
clip length): clips/s of the training loop's own step function (train/loop.py) on one
in-memory batch, so the numbers are the model's cost without the input pipeline.

bench/train_throughput.py prints and stores it; train/experiments.py reads every table row's
cost from it (both import this module, so the two measure the same thing).
"""

from __future__ import annotations

import statistics
import time

import keras
import tensorflow as tf
from tqdm import tqdm

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


def measure(backbone: str = "cnn10_tiny", backbone_kwargs: dict | None = None,
            batch_size: int = 8, seconds: float = 10.0, sample_rate: int = 32000,
            num_classes: int = 10, n_clips: int = 3, tau: float = 2.0, steps: int = 5,
            repeats: int = 5, warmup: int = 2, variants: list | None = None) -> dict:
    """{run: {"clips_per_second" (best round), "median", "runs", "clips_per_cpu_second",
    "cpu_runs"}, "seconds_per_step": {run: s}, "<run>_cost_ratio" and "<run>_cpu_cost_ratio":
    its step's cost over the backbone's in wall and CPU time, and the settings}. Rounds
    alternate between the models so all meet the same load on a shared machine; the best
    round is the least disturbed one. `variants`: runs to time besides "backbone" (default
    every GL-AT variant); an unknown name raises ValueError."""
    backbone_kwargs = dict(backbone_kwargs or {})
    table = {"backbone": {"backbone_only": True}}
    table.update(glat_variants({"backbone": backbone, "backbone_kwargs": backbone_kwargs}))
    wanted = list(table) if variants is None else list(variants)
    unknown = sorted(set(wanted) - set(table))
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; choose from {', '.join(table)}")
    samples = int(round(seconds * sample_rate))
    keras.utils.set_random_seed(0)
    batch = tf.random.normal([batch_size, samples], stddev=0.1)
    labels = tf.cast(tf.random.uniform([batch_size, num_classes]) < 0.2, tf.float32)
    base = FitConfig(train="-", out="-", backbone=backbone, n_clips=n_clips, tau=tau,
                     backbone_kwargs=backbone_kwargs)
    # The models are built as glat-fit builds them, from the same FitConfig changes.
    runners = {name: make_runner(build_model(base.replace(**table[name]), num_classes,
                                             sample_rate, None, samples), batch, labels, warmup)
               for name in dict.fromkeys(["backbone", *wanted])}
    result = {"backbone": backbone, "backbone_kwargs": backbone_kwargs, "batch_size": batch_size,
              "seconds": seconds, "n_clips": n_clips, "tau": tau}
    rates = {name: [] for name in runners}
    for _ in tqdm(range(repeats), desc="rounds", unit="round", leave=False):
        for name, runner in runners.items():
            rates[name].append(runner(steps))
    for name, pairs in rates.items():
        runs, per_cpu = [wall for wall, _ in pairs], [cpu for _, cpu in pairs]
        result[name] = {"clips_per_second": max(runs), "median": statistics.median(runs),
                        "runs": runs, "clips_per_cpu_second": max(per_cpu), "cpu_runs": per_cpu}
    result["seconds_per_step"] = {name: batch_size / result[name]["clips_per_second"]
                                  for name in runners}
    for name in runners:
        if name != "backbone":
            result[f"{name}_cost_ratio"] = (result["backbone"]["clips_per_second"]
                                            / result[name]["clips_per_second"])
            result[f"{name}_cpu_cost_ratio"] = (result["backbone"]["clips_per_cpu_second"]
                                                / result[name]["clips_per_cpu_second"])
    return result
