"""The one custom training loop behind every strategy: distributed steps, checkpoints, evaluation, logs."""

from __future__ import annotations

import dataclasses
import gc
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
from train.checkpoints import (Checkpointer, StopRequest, clean_partial_saves, save_keras,
                               trim_eval_log, write_json_atomic)
from train.evaluate import format_line, main_stream, make_forward, predict, score_streams
from train.strategy import worker_role

# TensorBoard's scalar plugin tag, written with TF's core summary op: the `tensorboard`
# package (which tf.summary.scalar needs) is not a dependency of training.
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


class DamagedInputError(ValueError):
    """A shard of the training or evaluation data could not be read; the run checkpointed first."""


class TrainingDivergedError(ValueError):
    """A loss or weight became NaN or infinite; nothing was saved from that step on."""


def finite_weights(model) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v.value))) for v in model.weights
               if tf.as_dtype(v.dtype).is_floating)


def _format_losses(losses: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in losses.items())


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
    """Trains a TaggingModel (GlatModel or Baseline) under a tf.distribute strategy.

    `build_model()` is called inside `strategy.scope()` and must return a built model;
    `train_data(input_context, seed, start_batch)` returns the infinite (waveform, labels)
    dataset of one input pipeline from its batch `start_batch` on (a seeded pipeline gives
    the batches an uninterrupted run sees there); `eval_data()` the whole eval set (or
    None: no evaluation).

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
        if not math.isnan(value) and (self.best is None or value > self.best["mAP"]):
            self.best = {"step": step, "stream": stream, "mAP": value, "summary": summary}
            save_keras(self.model, os.path.join(self.out_dir, "best.keras"))
            write_json_atomic(os.path.join(self.out_dir, "best.json"), self.best)
        return summary

    def _check_finite(self, step: int, losses: dict | None = None) -> None:
        """Stops before a non-finite loss or weight reaches a checkpoint or a saved model."""
        if losses is not None:  # every step: the losses are at hand, the weights cost a pass
            bad = not all(map(math.isfinite, losses.values()))
        else:
            bad = not finite_weights(self.model)
        if bad:
            what = (f"non-finite loss at step {step} ({_format_losses(losses)})" if losses
                    else f"non-finite weights after step {step}")
            kept = self.checkpointer.latest_step()
            raise TrainingDivergedError(
                f"{what}; no checkpoint or model was written from it, the checkpoint of "
                f"step {kept} is kept: lower --lr (or check the data), then continue with "
                "--resume or start a new --out" if kept is not None else
                f"{what}; nothing was saved: lower --lr (or check the data) and start again")

    def _save(self, step: int) -> int:
        self._check_finite(step)
        self.checkpointer.save()
        return step

    def _damaged(self, line: str, step: int, saved: int):
        """Checkpoint the finished steps, then one line naming the damaged file (no traceback)."""
        if saved != step:
            self._save(step)
        kept = f"checkpoint saved at step {step}" if step else "no step was trained yet"
        return DamagedInputError(
            f"{line}; {kept}: re-ingest or remove the shard (or train with --skip-corrupt), "
            "then continue with --resume")

    def _release_input(self) -> None:
        """Ends the input pipeline now, from this thread, not in the interpreter's exit: a
        tf.data iterator with Python functions in flight can hang the exit (their threads
        wait for the GIL). The tracebacks of a read error hold it too, hence the collect."""
        self._iterator = None
        gc.collect()

    def run(self) -> dict:
        s = self.settings
        os.makedirs(self.out_dir, exist_ok=True)
        clean_partial_saves(self.out_dir)
        if self.start_step:  # evaluations after the checkpoint are repeated: keep one of each
            trim_eval_log(os.path.join(self.out_dir, "eval_log.jsonl"), self.start_step)
        self._skipped_at_start, self._skipped_logged = DAMAGE.skipped, 0
        # The same seed on resume: the pipeline restarts at the batch the checkpoint reached
        # (an unseeded stream is random anyway: nothing to skip).
        start = self.start_step if s.seed is not None else 0
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: self.train_data(context, s.seed, start * (
                context.num_replicas_in_sync // context.num_input_pipelines)))
        self._iterator = iter(dataset)
        try:
            return self._loop(s)
        finally:
            self._release_input()

    def _loop(self, s: LoopSettings) -> dict:
        train_step = make_train_step(self.strategy, self.model, self.optimizer, s)
        agree = _stop_agreement(self.strategy)
        writer = (tf.summary.create_file_writer(os.path.join(self.out_dir, "tensorboard"))
                  if self.is_chief else tf.summary.create_noop_writer())
        step, saved, last = self.start_step, self.start_step, None
        self._log_line(f"training steps {step}..{s.steps} on {self.strategy.num_replicas_in_sync} "
                       f"replica(s), global batch {s.batch_size} -> {self.out_dir}")
        started, clips_since, timer = self.start_step, 0, time.perf_counter()
        with StopRequest() as stop, writer.as_default(), \
                tqdm(total=s.steps, initial=step, unit="step", desc="train", file=sys.stderr,
                     disable=not (s.progress and self.is_chief), dynamic_ncols=True) as bar:
            while step < s.steps and not agree(stop.requested):
                damage = None
                try:
                    losses = {k: float(v) for k, v in train_step(self._iterator).items()}
                except READ_ERRORS as exc:  # a damaged shard: keep what is trained
                    if not is_damage(exc):
                        raise
                    damage = input_error_line(exc)
                if damage is not None:  # out of the except block: the traceback is gone
                    self._release_input()
                    raise self._damaged(damage, step, saved)
                self._check_finite(step + 1, losses)
                step += 1
                self.step.assign(step)
                clips_since += s.batch_size
                bar.update(1)
                bar.set_postfix({k.replace("_loss", ""): f"{v:.4f}" for k, v in losses.items()})
                if step % s.log_every == 0 or step == s.steps:
                    now = time.perf_counter()
                    # The first interval holds tracing: clips/s starts after it.
                    rate = clips_since / (now - timer) if step - started > s.log_every else None
                    self._log_scalars(step, losses, rate)
                    clips_since, timer = 0, now
                # Evaluation runs no collective op: the other workers wait at the next step.
                # It comes before the step's checkpoint, so a run killed while evaluating
                # repeats the evaluation on --resume.
                if self.is_chief and self.eval_data is not None and (
                        step % s.eval_every == 0 or step == s.steps):
                    self._check_finite(step)
                    try:
                        last = self.evaluate(step)
                    except READ_ERRORS as exc:
                        if not is_damage(exc):
                            raise
                        damage = input_error_line(exc)
                    if damage is not None:
                        gc.collect()  # the eval iterator, held by the error's traceback
                        raise self._damaged(damage, step, saved)
                if step % s.checkpoint_every == 0:
                    saved = self._save(step)
            interrupted = stop.signum if step < s.steps else None
            if saved != step:
                saved = self._save(step)
        if interrupted is not None:
            self._log_line(f"stopped by signal {interrupted} at step {step}; checkpoint saved, "
                           "continue with --resume")
        elif self.is_chief:
            self._check_finite(step)
            save_keras(self.model, os.path.join(self.out_dir, "final.keras"))
        return {"step": step, "interrupted": interrupted, "best": self.best, "last": last,
                "is_chief": self.is_chief}
