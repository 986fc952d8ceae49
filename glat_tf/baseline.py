"""The plain-backbone baseline: one backbone as a tagger with GlatModel's loss interface."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf.base_model import TaggingModel, binary_crossentropy
from glat_tf.model import global_stream


@keras.saving.register_keras_serializable(package="glat_tf")
class Baseline(TaggingModel):
    """A backbone alone, scored on whole clips: the baseline GL-AT is compared with.

    Input: float32 waveform (batch, samples). Output dict: `global` (batch, L)
    probabilities = sigmoid(clipwise_logits), and `framewise` (batch, frames', L) frame
    activations. `stream_losses` mirrors GlatModel's so one training loop
    serves both. `backbone` is a preset name (with `num_classes`, `sample_rate`,
    `backbone_kwargs`) or a Backbone instance, saved as an object.

    Example:
        model = Baseline(backbone="cnn10_tiny", num_classes=10)
        out = model(tf.zeros([2, 64000]))
        out["global"].shape  # (2, 10)
    """

    loss_names = ("loss", "global_loss")
    # The baseline's facts (TaggingModel): no windows picked, no local stream, no crops.
    n_clips = 0
    tau = 0.0
    selection = "attention"  # nothing is selected, so nothing at random: exportable
    suppress_overlap = False
    output_keys = ("global", "framewise")
    crop_samples = 0

    def __init__(self, backbone="cnn10", num_classes=None, sample_rate=None, backbone_kwargs=None,
                 class_names=(), class_mids=(), **kwargs):
        super().__init__(class_names=class_names, class_mids=class_mids, **kwargs)
        self.global_backbone = global_stream(backbone, num_classes, sample_rate, backbone_kwargs)
        self.num_classes = self.global_backbone.num_classes
        self.sample_rate = self.global_backbone.sample_rate
        self.check_labels()

    def build(self, input_shape):
        samples = input_shape[1] if input_shape[1] is not None else self.sample_rate
        self.global_backbone(tf.zeros([1, samples]), training=False)
        self.built = True

    def global_stage(self, waveform, training=False) -> dict:
        """(batch, samples) -> `global` (batch, L), `framewise` (batch, frames', L)."""
        out = self.global_backbone(waveform, training=training)
        return {"global": tf.sigmoid(out["clipwise_logits"]),
                "framewise": tf.sigmoid(out["framewise_logits"])}

    def call(self, waveform, training=None):
        self.check_waveform(waveform)
        out = self.global_backbone(tf.cast(waveform, tf.float32), training=training)
        return {"global": tf.sigmoid(out["clipwise_logits"]),  # (batch, L)
                "framewise": tf.sigmoid(out["framewise_logits"])}  # (batch, frames', L)

    def stream_losses(self, outputs, labels):
        """Per-example losses (batch,): the trained `loss` and the same value as `global_loss`."""
        loss = binary_crossentropy(labels, outputs["global"])
        return {"loss": loss, "global_loss": loss}

    def get_config(self):
        return {**super().get_config(),
                "backbone": keras.saving.serialize_keras_object(self.global_backbone)}


# Files saved before the rename name the class BackboneTagger: they still load.
keras.saving.get_custom_objects()["glat_tf>BackboneTagger"] = Baseline
