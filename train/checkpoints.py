"""Training state on disk: CheckpointManager (model, optimizer, step), best `.keras`, stop signals."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading

import tensorflow as tf

from glat_tf import class_names

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
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
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
        # expect_partial: the optimizer's slot variables of an unbuilt optimizer are not
        # an error; everything the model and step hold must match.
        self.checkpoint.restore(path).expect_partial()
        return int(self.step.numpy())

    def save(self) -> str | None:
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if not self.is_chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            return None
        return path


def save_keras(model, path: str) -> None:
    """model.save(path), and `labels.csv` beside it for people and older tools (the class
    names travel inside the model; nothing reads this file back).

    Written to a temporary name first, so a killed run never leaves half a `.keras` file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)
    labels = class_names.from_model(model)
    if labels is not None:
        labels.to_csv(os.path.join(folder, LABELS_NAME))


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
