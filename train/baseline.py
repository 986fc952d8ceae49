"""The plain-backbone baseline: one registered backbone as a tagger with GlatModel's loss interface."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf import backbones
from glat_tf.model import binary_crossentropy


@keras.saving.register_keras_serializable(package="glat_tf")
class BackboneTagger(keras.Model):
    """A registered backbone alone, scored on whole clips: the baseline GL-AT is compared with.

    Input: float32 waveform (batch, samples). Output dict: `global` (batch, L)
    probabilities = sigmoid(clipwise_logits). `stream_losses` mirrors
    GlatModel's so one training loop serves both.

    Example:
        model = BackboneTagger(backbone="cnn10_tiny", num_classes=10)
        out = model(tf.zeros([2, 64000]))
        out["global"].shape  # (2, 10)
    """

    def __init__(self, backbone="cnn10", num_classes=527, sample_rate=32000, backbone_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.backbone_kwargs = dict(backbone_kwargs or {})
        # Named like GlatModel's global stream so weights move between the two by name.
        self.global_backbone = backbones.build(backbone, name="global_stream",
                                               num_classes=num_classes, sample_rate=sample_rate,
                                               **self.backbone_kwargs)

    def build(self, input_shape):
        samples = input_shape[1] if input_shape[1] is not None else self.sample_rate
        self.global_backbone(tf.zeros([1, samples]), training=False)
        self.built = True

    def call(self, waveform, training=None):
        out = self.global_backbone(tf.cast(waveform, tf.float32), training=training)
        return {"global": tf.sigmoid(out["clipwise_logits"])}  # (batch, L)

    def stream_losses(self, outputs, labels):
        """Per-example losses (batch,): the trained `loss` and the same value as `global_loss`."""
        loss = binary_crossentropy(labels, outputs["global"])
        return {"loss": loss, "global_loss": loss}

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone,
                "num_classes": self.num_classes, "sample_rate": self.sample_rate,
                "backbone_kwargs": self.backbone_kwargs}
