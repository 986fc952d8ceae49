"""PANNs MobileNets: depthwise-separable CNNs that downsample by average pooling."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf.backbones.base import Backbone, ClipHead, batch_norm, scaled
from glat_tf.backbones.registry import register

# (output channels, stride) after the stem: PANNs MobileNetV1.
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _pool(stride):
    # PANNs strides by average pooling after the conv, so the conv itself stays stride 1.
    return keras.layers.AveragePooling2D(stride) if stride > 1 else keras.layers.Identity()


@register("mobilenetv1", embedding_size=1024)
@register("mobilenetv1_tiny", embedding_size=1024, width=0.125)
@keras.saving.register_keras_serializable(package="glat_tf")
class MobileNetV1(Backbone):
    """PANNs MobileNetV1: stem conv_bn(32, stride 2), 13 conv_dw blocks, PANNs head.

    conv_bn: conv 3x3 (no bias) -> avg pool stride -> BN -> ReLU.
    conv_dw: depthwise 3x3 -> avg pool stride -> BN -> ReLU -> 1x1 -> BN -> ReLU.
    Waveform (batch, samples) -> features (batch, frames', 1024 * width); frames' = 31 for 10 s.

    Example:
        net = glat_tf.backbones.build("mobilenetv1")
        net(tf.zeros([1, 320000]))["features"].shape  # (1, 31, 1024)
    """

    def __init__(self, num_classes=527, embedding_size=1024, width=1.0, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.embedding_size = embedding_size
        self.width = width
        self.stem = [keras.layers.Conv2D(scaled(32, width), 3, padding="same", use_bias=False,
                                         name="stem_conv"),
                     _pool(2), batch_norm("stem_bn"), keras.layers.ReLU()]
        self.body = []
        for i, (channels, stride) in enumerate(V1_LAYERS):
            self.body += [
                keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}"),
                _pool(stride), batch_norm(f"dw{i}_bn"), keras.layers.ReLU(),
                keras.layers.Conv2D(scaled(channels, width), 1, use_bias=False, name=f"pw{i}"),
                batch_norm(f"pw{i}_bn"), keras.layers.ReLU(),
            ]
        self.head = ClipHead(scaled(embedding_size, width), num_classes, name="head")

    def extract(self, x, training=None):
        for layer in self.stem + self.body:
            x = layer(x, training=training)  # (batch, frames, mel_bins, channels)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', channels)

    def get_config(self):
        return {**super().get_config(), "embedding_size": self.embedding_size, "width": self.width}
