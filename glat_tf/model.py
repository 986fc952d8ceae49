"""GlatModel: global stream, class-wise clip selection, local stream, fusion (GLAT_SPEC 2-5)."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf import backbones
from glat_tf.layers.select_clips import SelectClips

LOSS_MODES = ("joint", "frozen_global")


def max_mean_pool(scores, axis):
    """PANNs' pooling P: (max + mean) / 2 along `axis`."""
    return (tf.reduce_max(scores, axis=axis) + tf.reduce_mean(scores, axis=axis)) / 2.0


def binary_crossentropy(labels, probabilities):
    """Per-example BCE on probabilities, mean over classes: (batch,)."""
    return keras.losses.binary_crossentropy(tf.cast(labels, tf.float32), probabilities)


@keras.saving.register_keras_serializable(package="glat_tf")
class GlatModel(keras.Model):
    """GL-AT: tags a clip globally, re-tags the N windows its attention picks, fuses both.

    Input: float32 waveform (batch, samples), any samples >= tau * sample_rate.
    Output dict (scores are probabilities):
      `global` (batch, L), `local` (batch, L), `fused` (batch, L),
      `framewise` (batch, frames', L) global frame activations,
      `clip_starts` (batch, N) int32 samples, `selected_classes` (batch, N) int32.
    loss_mode `joint` trains L_g + L_l (the paper); `frozen_global` trains the
    local stream on L_l only with the global stream frozen in inference mode
    (the authors' code).

    Example:
        model = GlatModel(backbone="cnn10", num_classes=527, n_clips=5, tau=3.0)
        out = model(tf.zeros([2, 320000]))
        out["fused"].shape, out["clip_starts"].shape  # (2, 527), (2, 5)
    """

    def __init__(self, backbone="cnn10", num_classes=527, n_clips=5, tau=3.0, sample_rate=32000,
                 loss_mode="joint", suppress_overlap=True, selection="attention",
                 backbone_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got loss_mode={loss_mode!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.n_clips = n_clips
        self.tau = tau
        self.sample_rate = sample_rate
        self.loss_mode = loss_mode
        self.suppress_overlap = suppress_overlap
        self.selection = selection
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.select = SelectClips(n_clips, tau, sample_rate, suppress_overlap, selection,
                                  name="select_clips")
        self.select.check_inputs((None, None), num_classes)  # N <= classes, at construction
        stream_kwargs = dict(num_classes=num_classes, sample_rate=sample_rate,
                             **self.backbone_kwargs)
        self.global_backbone = backbones.build(backbone, name="global_stream", **stream_kwargs)
        self.local_backbone = backbones.build(backbone, name="local_stream", **stream_kwargs)
        if loss_mode == "frozen_global":
            # Frozen also means inference-mode BN: its statistics must not drift either.
            self.global_backbone.trainable = False
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "global_loss", "local_loss")}

    @property
    def window(self) -> int:
        return self.select.window

    def build(self, input_shape):
        self.select.check_inputs(tuple(input_shape), self.num_classes)
        # A concrete forward pass creates every variable (needed before loading weights).
        samples = input_shape[1] if input_shape[1] is not None else self.window
        self.global_backbone(tf.zeros([1, samples]), training=False)
        self.local_backbone(tf.zeros([1, self.window]), training=False)
        self.built = True

    def _check_waveform(self, waveform):
        dtype = getattr(waveform, "dtype", None)
        if dtype is None or not tf.as_dtype(dtype).is_floating:
            raise ValueError(f"waveform must be a float tensor, got waveform.dtype={dtype}")
        self.select.check_inputs(waveform.shape, self.num_classes)

    def call(self, waveform, training=None):
        self._check_waveform(waveform)
        waveform = tf.cast(waveform, tf.float32)
        global_training = training and self.loss_mode == "joint"
        g = self.global_backbone(waveform, training=global_training)
        global_scores = tf.sigmoid(g["clipwise_logits"])  # (batch, L)
        framewise = tf.sigmoid(g["framewise_logits"])  # (batch, frames', L)
        crops, starts, classes = self.select(waveform, global_scores, framewise)
        batch = tf.shape(waveform)[0]
        crops = tf.reshape(crops, [-1, self.window])  # (batch * N, window)
        local = self.local_backbone(crops, training=training)
        per_clip = tf.reshape(tf.sigmoid(local["clipwise_logits"]),
                              [batch, self.n_clips, self.num_classes])  # (batch, N, L)
        local_scores = max_mean_pool(per_clip, axis=1)
        fused = max_mean_pool(tf.stack([global_scores, local_scores], axis=1), axis=1)
        return {"global": global_scores, "local": local_scores, "fused": fused,
                "framewise": framewise, "clip_starts": starts, "selected_classes": classes}

    def stream_losses(self, outputs, labels):
        """Per-example losses (batch,): `global_loss`, `local_loss` and the trained `loss`."""
        global_loss = binary_crossentropy(labels, outputs["global"])
        local_loss = binary_crossentropy(labels, outputs["local"])
        loss = global_loss + local_loss if self.loss_mode == "joint" else local_loss
        return {"loss": loss, "global_loss": global_loss, "local_loss": local_loss}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _track(self, losses):
        for name, value in losses.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        waveform, labels = data[0], data[1]
        with tf.GradientTape() as tape:
            losses = self.stream_losses(self(waveform, training=True), labels)
            loss = tf.reduce_mean(losses["loss"])
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._track(losses)

    def test_step(self, data):
        waveform, labels = data[0], data[1]
        return self._track(self.stream_losses(self(waveform, training=False), labels))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone,
                "num_classes": self.num_classes, "n_clips": self.n_clips, "tau": self.tau,
                "sample_rate": self.sample_rate, "loss_mode": self.loss_mode,
                "suppress_overlap": self.suppress_overlap, "selection": self.selection,
                "backbone_kwargs": self.backbone_kwargs}
