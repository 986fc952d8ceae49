"""The one custom training loop behind every strategy: distributed steps, checkpoints, evaluation, logs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from glat_core.console import Progress as tqdm  # plain lines in logs

from glat_tf.data.pipeline import DAMAGE, READ_ERRORS, input_error_line, is_damage
from train.checkpoints import Checkpointer, StopRequest, save_keras
from train.evaluate import format_line, main_stream, make_forward, predict, score_streams
from train.strategy import worker_role

# TensorBoard's scalar plugin tag, written with TF's core summary op: the `tensorboard`
# package (which tf.summary.scalar needs) is not a dependency of training.
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


class DamagedInputError(ValueError):
    """A shard of the training or evaluation data could not be read; the run checkpointed first."""


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How long and how to train; `batch_size` is the global batch over all replicas."""

    steps: int
    batch_size: int
    eval_every: int = 500
    checkpoint_every: int = 500
    learning_rate: float = 1e-3
    amsgrad: bool = False
    jit_compile: bool = False
    seed: int | None = None
    log_every: int = 10
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {name}={getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def _scalars(values: dict, step: int) -> None:
    for tag, value in values.items():
        tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=_SCALAR)


def make_optimizer(settings: LoopSettings):
    optimizer = keras.optimizers.Adam(settings.learning_rate, amsgrad=settings.amsgrad)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        # float16 gradients underflow without a (dynamic) loss scale; bfloat16 has the range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(strategy, model, optimizer, settings: LoopSettings):
    """One distributed training step on the next batch of `iterator`: global-mean losses.

    Each replica runs the model's own `training_step` (the one model.fit runs too).
    """
    batch = settings.batch_size

    def replica_step(waveform, labels):
        return model.training_step(optimizer, waveform, labels, batch)

    if settings.jit_compile:
        # XLA on the per-replica step only: a multi-device function cannot be compiled.
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}

    return train_step


def _stop_agreement(strategy):
    """Workers must stop at the same step or the others hang in an all-reduce: sum the flags."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return bool

    @tf.function
    def any_worker(flag):
        per_replica = strategy.run(lambda f: f, args=(flag,))
        return strategy.reduce("SUM", per_replica, axis=None)

    return lambda flag: bool(any_worker(tf.constant(float(flag))).numpy() > 0)


class Trainer:
    """Trains a TaggingModel (GlatModel or BackboneTagger) under a tf.distribute strategy.

    `build_model()` is called inside `strategy.scope()` and must return a built model;
    `train_data(input_context, seed)` returns the infinite (waveform, labels) dataset
    of one input pipeline; `eval_data()` the whole eval set (or None: no evaluation).

    Example:
        trainer = Trainer(strategy, build_model, train_data, eval_data, settings, "runs/x")
        result = trainer.run()  # {"step", "interrupted", "best", "last", "is_chief"}
        trainer.model  # the trained model
    """

    def __init__(self, strategy, build_model: Callable, train_data: Callable,
                 eval_data: Callable | None, settings: LoopSettings, out_dir: str, *,
                 resume: bool = False):
        self.strategy, self.settings, self.out_dir = strategy, settings, out_dir
        self.train_data, self.eval_data = train_data, eval_data
        self.is_chief, _ = worker_role(strategy)
        with strategy.scope():
            self.model = build_model()
            self.optimizer = make_optimizer(settings)
            # Built here, inside the scope: slot variables must be mirrored like the weights.
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpointer = Checkpointer(out_dir, model=self.model, optimizer=self.optimizer,
                                         step=self.step, is_chief=self.is_chief)
        if self.checkpointer.latest and not resume:
            raise ValueError(f"{out_dir} already holds checkpoints: pass --resume to continue "
                             "that run, or choose another --out")
        self.start_step = self.checkpointer.restore_latest() if resume else 0
        self.best = self._read_best() if resume else None
        self._forward = None  # the evaluation tf.function, traced once

    def _read_best(self):
        path = os.path.join(self.out_dir, "best.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _log_line(self, text: str) -> None:
        if self.is_chief:
            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    def _log_scalars(self, step: int, losses: dict, clips_per_second: float | None) -> None:
        values = {f"train/{k}": v for k, v in losses.items()}
        values["train/learning_rate"] = float(
            keras.ops.convert_to_numpy(self.optimizer.learning_rate))
        if clips_per_second is not None:
            values["train/clips_per_second"] = clips_per_second
        skipped = DAMAGE.skipped - self._skipped_at_start
        if skipped:  # only with --skip-corrupt: otherwise the first damage stops the run
            values["train/skipped_records"] = skipped
            if skipped != self._skipped_logged:
                self._log_line(f"step {step}: {skipped} damaged records skipped so far "
                               f"(latest: {DAMAGE.last})")
                self._skipped_logged = skipped
        _scalars(values, step)
        tf.summary.flush()  # TensorBoard shows progress now, not at the 2-minute flush

    def evaluate(self, step: int) -> dict:
        """Scores the eval set, logs it, keeps best.keras by the main stream's mAP (chief only)."""
        if self._forward is None:
            self._forward = make_forward(self.model)
        labels, scores = predict(self.model, self.eval_data(), forward=self._forward,
                                 progress=False)
        results = score_streams(labels, scores)
        summary = {s: r.summary() for s, r in results.items()}
        _scalars({f"eval/{s}/{k}": v for s, r in summary.items() for k, v in r.items()
                  if k != "skipped_classes"}, step)
        self._log_line(f"eval step {step}/{self.settings.steps}: {format_line(results)}")
        with open(os.path.join(self.out_dir, "eval_log.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **summary}) + "\n")
        stream = main_stream(summary)
        value = summary[stream]["mAP"]
        if self.best is None or (not math.isnan(value) and value > self.best["mAP"]):
            self.best = {"step": step, "stream": stream, "mAP": value, "summary": summary}
            save_keras(self.model, os.path.join(self.out_dir, "best.keras"))
            with open(os.path.join(self.out_dir, "best.json"), "w", encoding="utf-8") as f:
                json.dump(self.best, f, indent=1)
        return summary

    def _stop_on_damage(self, exc, step: int, saved: int):
        """Checkpoint the finished steps, then one line naming the damaged file (no traceback)."""
        if not is_damage(exc):
            raise exc
        if saved != step:
            self.checkpointer.save()
        kept = f"checkpoint saved at step {step}" if step else "no step was trained yet"
        raise DamagedInputError(
            f"{input_error_line(exc)}; {kept}: re-ingest or remove the shard (or train with "
            "--skip-corrupt), then continue with --resume") from None

    def run(self) -> dict:
        s = self.settings
        os.makedirs(self.out_dir, exist_ok=True)
        seed = None if s.seed is None else s.seed + self.start_step  # a resumed run sees new order
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: self.train_data(context, seed))
        iterator = iter(dataset)
        train_step = make_train_step(self.strategy, self.model, self.optimizer, s)
        agree = _stop_agreement(self.strategy)
        writer = (tf.summary.create_file_writer(os.path.join(self.out_dir, "tensorboard"))
                  if self.is_chief else tf.summary.create_noop_writer())
        step, saved, last = self.start_step, self.start_step, None
        self._skipped_at_start, self._skipped_logged = DAMAGE.skipped, 0
        self._log_line(f"training steps {step}..{s.steps} on {self.strategy.num_replicas_in_sync} "
                       f"replica(s), global batch {s.batch_size} -> {self.out_dir}")
        started, clips_since, timer = self.start_step, 0, time.perf_counter()
        with StopRequest() as stop, writer.as_default(), \
                tqdm(total=s.steps, initial=step, unit="step", desc="train", file=sys.stderr,
                     disable=not (s.progress and self.is_chief), dynamic_ncols=True) as bar:
            while step < s.steps and not agree(stop.requested):
                try:
                    losses = {k: float(v) for k, v in train_step(iterator).items()}
                except READ_ERRORS as exc:  # a damaged shard: keep what is trained
                    self._stop_on_damage(exc, step, saved)
                step += 1
                self.step.assign(step)
                clips_since += s.batch_size
                bar.update(1)
                bar.set_postfix({k.replace("_loss", ""): f"{v:.4f}" for k, v in losses.items()})
                if not all(map(math.isfinite, losses.values())):
                    raise FloatingPointError(f"non-finite loss at step {step}: {losses}")
                if step % s.log_every == 0 or step == s.steps:
                    now = time.perf_counter()
                    # The first interval holds tracing: clips/s starts after it.
                    rate = clips_since / (now - timer) if step - started > s.log_every else None
                    self._log_scalars(step, losses, rate)
                    clips_since, timer = 0, now
                if step % s.checkpoint_every == 0:
                    self.checkpointer.save()
                    saved = step
                # Evaluation runs no collective op: the other workers wait at the next step.
                if self.is_chief and self.eval_data is not None and (
                        step % s.eval_every == 0 or step == s.steps):
                    try:
                        last = self.evaluate(step)
                    except READ_ERRORS as exc:
                        self._stop_on_damage(exc, step, saved)
            interrupted = stop.signum if step < s.steps else None
            if saved != step:
                self.checkpointer.save()
        if interrupted is not None:
            self._log_line(f"stopped by signal {interrupted} at step {step}; checkpoint saved, "
                           "continue with --resume")
        elif self.is_chief:
            save_keras(self.model, os.path.join(self.out_dir, "final.keras"))
        return {"step": step, "interrupted": interrupted, "best": self.best, "last": last,
                "is_chief": self.is_chief}
