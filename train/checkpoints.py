"""Training state on disk: CheckpointManager (model, optimizer, step), best `.keras`, stop signals."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import tempfile
import threading

import tensorflow as tf

from glat_tf import class_names
from glat_tf.data.damage import plain_message

LABELS_NAME = class_names.SIDECAR


class Checkpointer:
    """tf.train.CheckpointManager over (model, optimizer, step) under `<out>/checkpoints`.

    In multi-worker training every worker must take part in a save (variables may
    be all-reduced on read); only the chief keeps its files, the others write to
    a scratch folder that is deleted at once.

    Example:
        ckpt = Checkpointer(out, model=model, optimizer=opt, step=step, is_chief=True)
        start = ckpt.restore_latest()  # 0 when there is nothing to resume
        ckpt.save()
    """

    def __init__(self, out_dir: str, *, model, optimizer, step: tf.Variable, is_chief: bool = True,
                 max_to_keep: int = 3):
        self.step = step
        self.is_chief = is_chief
        self.directory = os.path.join(out_dir, "checkpoints")
        # Every variable, listed: Keras 3 layers kept in Python lists are not in
        # TensorFlow's object graph, and the random generators' states must resume too.
        self.checkpoint = tf.train.Checkpoint(model_variables=_distinct(model.variables),
                                              optimizer_variables=_distinct(optimizer.variables),
                                              step=step)
        write_dir = self.directory if is_chief else tempfile.mkdtemp(prefix="glat-ckpt-")
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir,
                                                  max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> int:
        """Restores the chief's newest checkpoint (every worker reads the same one); the step."""
        path = self.latest
        if path is None:
            return 0
        if not any(name.startswith("model_variables/") for name, _ in tf.train.list_variables(path)):
            raise ValueError(f"{path} was written by an older glat-fit that did not keep every "
                             "weight: it cannot be resumed exactly; start a new --out")
        try:
            self.checkpoint.restore(path).assert_consumed()
        except AssertionError as exc:  # another model, or another glat-fit's layout
            raise ValueError(f"{path} does not match this model and optimizer (another "
                             f"--backbone or settings?): {str(exc).splitlines()[0][:200]}") from None
        return int(self.step.numpy())

    def latest_step(self) -> int | None:
        path = self.latest
        return None if path is None else int(path.rsplit("-", 1)[1])

    def save(self) -> str | None:
        """Writes the checkpoint of the current step. TensorFlow writes the data under a
        temporary name and updates the `checkpoint` file last, so a run killed meanwhile
        resumes from the previous one; a failed write (a full disk) raises
        CheckpointWriteError with the previous checkpoint intact."""
        number = int(self.step.numpy())
        try:
            path = self.manager.save(checkpoint_number=number)
        except (tf.errors.OpError, OSError) as exc:
            prefix = os.path.join(self.manager.directory, f"ckpt-{number}")
            for partial in glob.glob(glob.escape(prefix) + ".*") + glob.glob(
                    glob.escape(prefix) + "_temp*"):
                _remove(partial)
            previous = self.latest_step() if self.is_chief else None
            kept = (f"the checkpoint of step {previous} is intact" if previous is not None
                    else "there was no earlier checkpoint")
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {number} to {self.manager.directory} "
                f"({plain_message(exc)}); {kept}: free space, then continue with --resume"
            ) from None
        if not self.is_chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            return None
        return path


def _distinct(variables) -> list:
    """The variables in order, one met twice (shared weights) once. By position, not by path:
    Keras numbers the names of a second model built in one process (adam_2, glat_model_1)."""
    seen = set()
    return [v for v in variables if not (id(v) in seen or seen.add(id(v)))]


class CheckpointWriteError(RuntimeError):
    """The disk refused a checkpoint (full, quota, file size limit); the previous one stands."""


_PARTIAL = ".partial-"  # the prefix of a save in progress: never a name a user loads


def save_keras(model, path: str) -> None:
    """model.save(path), and `labels.csv` beside it for people and older tools (the class
    names travel inside the model; nothing reads this file back).

    Written into a temporary sibling folder and moved into place, so a killed run never
    leaves half a `.keras` file where one is loaded (nor a `*.keras` file beside it).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=_PARTIAL, dir=folder) as tmp:
        model.save(os.path.join(tmp, os.path.basename(path)))
        os.replace(os.path.join(tmp, os.path.basename(path)), path)
    labels = class_names.from_model(model)
    if labels is not None:
        labels.to_csv(os.path.join(folder, LABELS_NAME))


def _write_atomic(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f"{_PARTIAL}{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, value) -> None:
    _write_atomic(path, json.dumps(value, indent=1))


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.remove(path)


def clean_partial_saves(out_dir: str) -> None:
    """Removes what a killed run left half-written (temporary save folders, checkpoint temps)."""
    for path in glob.glob(os.path.join(glob.escape(out_dir), _PARTIAL + "*")) + glob.glob(
            os.path.join(glob.escape(out_dir), "checkpoints", "*_temp*")):
        _remove(path)


def trim_eval_log(path: str, last_step: int) -> None:
    """Drops the evaluations after `last_step` (a resumed run repeats them), atomically."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= last_step]
    if len(kept) != len(lines):
        _write_atomic(path, "".join(kept))


class StopRequest:
    """Turns SIGTERM and SIGINT into a flag the training loop polls between steps.

    A second signal of either kind restores the default behaviour, so a stuck run
    can still be stopped at once with another Ctrl-C.

    Example:
        with StopRequest() as stop:
            while not stop.requested: train_one_step()
        stop.signum  # signal.SIGTERM, signal.SIGINT or None
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.requested:  # second signal: give up the clean stop
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # Python only lets the main thread install handlers
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False
