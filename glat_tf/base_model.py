"""What GlatModel and the plain-backbone baseline share: class names, the checks on a
waveform, the loss interface and the one training step every trainer runs."""

from __future__ import annotations

import keras
import tensorflow as tf


def binary_crossentropy(labels, probabilities):
    """Per-example BCE on probabilities, mean over classes: (batch,)."""
    return keras.losses.binary_crossentropy(tf.cast(labels, tf.float32), probabilities)


class TaggingModel(keras.Model):
    """Base of the project's taggers. Subclasses implement `stream_losses(outputs, labels)`
    -> {"loss", ...} per example and store `num_classes`.

    `training_step` is the one training step: `model.fit` (through `train_step`) and the
    distributed loop of train/loop.py (one call per replica) both run it. `class_names`
    and `class_mids` name the output columns, so a saved model carries its own labels.

    What kind of tagger a model is, it states once, and export, the Tagger and evaluation
    read it instead of probing for attributes: `n_clips` (0: no local stream, the
    baseline), `crop_samples` (one tau-second crop; 0 without a local stream), `tau`,
    `selection`, `suppress_overlap`, `output_keys` (the keys `call` returns) and
    `min_samples` (the shortest input it tags). Each subclass sets them.
    """

    loss_names: tuple = ("loss",)  # the keys of stream_losses, tracked by model.fit
    n_clips: int
    tau: float
    selection: str
    suppress_overlap: bool
    output_keys: tuple

    @property
    def crop_samples(self) -> int:
        raise NotImplementedError

    @property
    def min_samples(self) -> int:
        """The shortest input: one crop, or one second without a local stream."""
        return self.crop_samples or int(self.sample_rate)

    def __init__(self, class_names=(), class_mids=(), **kwargs):
        super().__init__(**kwargs)
        self.class_names = tuple(str(n) for n in class_names)
        self.class_mids = tuple(str(m) for m in class_mids)
        self.track_losses(self.loss_names)

    def track_losses(self, names) -> None:
        """The losses model.fit reports (stream_losses' keys); set in __init__, never traced."""
        self.loss_names = tuple(names)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}

    def check_labels(self) -> None:
        for what, values in (("class_names", self.class_names), ("class_mids", self.class_mids)):
            if values and len(values) != self.num_classes:
                raise ValueError(f"{len(values)} {what} for a model of {self.num_classes} classes")

    def check_waveform(self, waveform) -> None:
        dtype = getattr(waveform, "dtype", None)
        if dtype is None or not tf.as_dtype(dtype).is_floating:
            raise ValueError(f"waveform must be a float tensor, got waveform.dtype={dtype}")
        if len(waveform.shape) != 2:
            raise ValueError(f"waveform must have rank 2 (batch, samples), got shape "
                             f"waveform.shape={tuple(waveform.shape)}")

    def stream_losses(self, outputs, labels) -> dict:
        raise NotImplementedError

    def training_step(self, optimizer, waveform, labels, global_batch_size) -> dict:
        """One optimizer step on this replica's batch; the losses as this replica's share of
        the global-batch mean (summed over replicas they are the global mean).

        Each replica's loss is its examples' sum / the GLOBAL batch, so the all-reduced sum
        of the replicas' gradients is the gradient of the global mean.
        """
        with tf.GradientTape() as tape:
            losses = self.stream_losses(self(waveform, training=True), labels)
            loss = tf.nn.compute_average_loss(losses["loss"], global_batch_size=global_batch_size)
            if self.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
            scaled = optimizer.scale_loss(loss)
        variables = self.trainable_variables
        optimizer.apply(tape.gradient(scaled, variables), variables)
        return {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch_size)
                for k, v in losses.items()}

    # model.fit / evaluate: the same step, on one device, the batch being the global batch.
    def _track(self, losses: dict) -> dict:
        for name, value in losses.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def train_step(self, data):
        waveform, labels = data[0], data[1]
        return self._track(self.training_step(self.optimizer, waveform, labels,
                                              tf.shape(waveform)[0]))

    def test_step(self, data):
        waveform, labels = data[0], data[1]
        losses = self.stream_losses(self(waveform, training=False), labels)
        return self._track({k: tf.reduce_mean(v) for k, v in losses.items()})

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names),
                "class_mids": list(self.class_mids)}
