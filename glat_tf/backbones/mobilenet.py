"""PANNs MobileNets: depthwise-separable CNNs that downsample by average pooling."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.backbones.base import Backbone, ClipHead, batch_norm, scaled
from glat_tf.backbones.registry import register

# (output channels, stride) after the stem: PANNs MobileNetV1.
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@dataclasses.dataclass(frozen=True)
class MobileNetArch:
    """MobileNet settings: embedding size (fc1), V2's last 1x1 conv width (V1 ignores it),
    and `width` scaling every channel count."""

    embedding_size: int = 1024
    last_channels: int = 1280
    width: float = 1.0


def _stem_rows(mobilenet):
    # PANNs MobileNets: features.0 = Sequential(conv, avg pool, bn, relu).
    return [("features.0.0", mobilenet.stem[0], "conv"), ("features.0.2", mobilenet.stem[2], "bn")]


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

    Arch = MobileNetArch
    panns_arch = "mobilenetv1"

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        width = self.arch.width
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
        self.head = ClipHead(scaled(self.arch.embedding_size, width), num_classes, name="head")

    def panns_layout(self) -> list:
        rows = _stem_rows(self)
        for i in range(len(self.body) // 7):  # dw, pool, bn, relu, pw, bn, relu
            dw, _, dw_bn, _, pw, pw_bn, _ = self.body[7 * i:7 * i + 7]
            rows += [(f"features.{i + 1}.0", dw, "depthwise"),
                     (f"features.{i + 1}.2", dw_bn, "bn"),
                     (f"features.{i + 1}.4", pw, "conv"), (f"features.{i + 1}.5", pw_bn, "bn")]
        return rows

    def extract(self, x, training=None):
        for layer in self.stem + self.body:
            x = layer(x, training=training)  # (batch, frames, mel_bins, channels)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', channels)


# (expansion t, channels c, repeats n, stride s of the first): PANNs MobileNetV2, whose 96-channel
# stage strides and 160 does not (the reverse of the standard network).
V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2),
              (6, 160, 3, 1), (6, 320, 1, 1))


@keras.saving.register_keras_serializable(package="glat_tf")
class InvertedResidual(keras.layers.Layer):
    """PANNs MobileNetV2 block: [1x1-BN-ReLU6] -> depthwise 3x3 -> avg pool -> BN-ReLU6 -> 1x1-BN.

    Expansion 1 skips the expand conv; the projection is linear; a residual is added only at
    stride 1 with in_channels == filters. (batch, frames, mel_bins, in_channels) ->
    (batch, frames / stride, mel_bins / stride, filters).

    Example:
        block = InvertedResidual(in_channels=16, filters=24, stride=2, expansion=6)
        y = block(tf.zeros([1, 500, 32, 16]))  # (1, 250, 16, 24)
    """

    def __init__(self, in_channels, filters, stride=1, expansion=6, **kwargs):
        super().__init__(**kwargs)
        self.in_channels = in_channels
        self.filters = filters
        self.stride = stride
        self.expansion = expansion
        self.residual = stride == 1 and in_channels == filters
        hidden = int(round(in_channels * expansion))
        self.expand = None
        if expansion != 1:
            self.expand = keras.layers.Conv2D(hidden, 1, use_bias=False, name="expand")
            self.expand_bn = batch_norm("expand_bn")
        self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                                                      name="depthwise")
        self.pool = _pool(stride)
        self.depthwise_bn = batch_norm("depthwise_bn")
        self.project = keras.layers.Conv2D(filters, 1, use_bias=False, name="project")
        self.project_bn = batch_norm("project_bn")

    def call(self, inputs, training=None):
        x = inputs
        if self.expand is not None:
            x = tf.nn.relu6(self.expand_bn(self.expand(x), training=training))
        x = self.pool(self.depthwise(x))  # (batch, frames / stride, mel_bins / stride, hidden)
        x = tf.nn.relu6(self.depthwise_bn(x, training=training))
        x = self.project_bn(self.project(x), training=training)
        return inputs + x if self.residual else x

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "filters": self.filters,
                "stride": self.stride, "expansion": self.expansion}


@register("mobilenetv2", embedding_size=1024)
@register("mobilenetv2_tiny", embedding_size=1024, width=0.125)
@keras.saving.register_keras_serializable(package="glat_tf")
class MobileNetV2(Backbone):
    """PANNs MobileNetV2 (not keras.applications'): the edge-friendly backbone.

    Stem conv 3x3 (32) -> avg pool 2 -> BN -> ReLU6; 17 inverted residuals (V2_SETTING);
    1x1 conv to 1280 -> BN -> ReLU6; mean over mel bins; PANNs head with fc1 1280 -> 1024.
    PANNs has no dropout before fc1 here; its embedding-only dropout is left out too, so the
    head runs with dropout 0 (the classifier is the same function).
    Waveform (batch, samples) -> features (batch, frames', 1280 * width); frames' = 31 for 10 s.

    Example:
        net = glat_tf.backbones.build("mobilenetv2")
        net(tf.zeros([1, 320000]))["features"].shape  # (1, 31, 1280)
    """

    Arch = MobileNetArch
    panns_arch = "mobilenetv2"

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        width = self.arch.width
        channels = scaled(32, width)
        self.stem = [keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                                         name="stem_conv"),
                     _pool(2), batch_norm("stem_bn"), keras.layers.ReLU(6.0)]
        self.blocks = []
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                self.blocks.append(InvertedResidual(channels, scaled(c, width), s if i == 0 else 1,
                                                    t, name=f"block{len(self.blocks) + 1}"))
                channels = scaled(c, width)
        self.last = [keras.layers.Conv2D(scaled(self.arch.last_channels, width), 1,
                                         use_bias=False, name="last_conv"),
                     batch_norm("last_bn"), keras.layers.ReLU(6.0)]
        self.head = ClipHead(scaled(self.arch.embedding_size, width), num_classes, dropout=0.0,
                             name="head")

    def panns_layout(self) -> list:
        rows = _stem_rows(self)
        for i, block in enumerate(self.blocks):
            prefix = f"features.{i + 1}.conv"
            first = 0
            if block.expand is not None:
                rows += [(f"{prefix}.0", block.expand, "conv"),
                         (f"{prefix}.1", block.expand_bn, "bn")]
                first = 3
            rows += [(f"{prefix}.{first}", block.depthwise, "depthwise"),
                     (f"{prefix}.{first + 2}", block.depthwise_bn, "bn"),
                     (f"{prefix}.{first + 4}", block.project, "conv"),
                     (f"{prefix}.{first + 5}", block.project_bn, "bn")]
        last = f"features.{len(self.blocks) + 1}"
        return rows + [(f"{last}.0", self.last[0], "conv"), (f"{last}.1", self.last[1], "bn")]

    def extract(self, x, training=None):
        for layer in self.stem + self.blocks + self.last:
            x = layer(x, training=training)  # (batch, frames, mel_bins, channels)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', channels)
