"""PANNs plain CNNs (CNN6, CNN10, CNN14) as one configurable class."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.backbones.base import (Backbone, ClipHead, batch_norm, conv_block_layout, scaled,
                                    tuples)
from glat_tf.backbones.registry import register


@keras.saving.register_keras_serializable(package="glat_tf")
class ConvBlock(keras.layers.Layer):
    """PANNs ConvBlock: `convs` x (conv k x k, no bias -> BN -> ReLU), avg pool, dropout.

    Input and output (batch, frames, mel_bins, channels); pooling floors odd sizes.

    Example:
        block = ConvBlock(64, kernel_size=3, convs=2, pool=(2, 2))
        y = block(tf.zeros([1, 1001, 64, 1]))  # (1, 500, 32, 64)
    """

    def __init__(self, filters, kernel_size=3, convs=2, pool=(2, 2), dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.convs = convs
        self.pool = tuple(pool)
        self.dropout = dropout
        self.conv_layers = [keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False,
                                                name=f"conv{i + 1}") for i in range(convs)]
        self.norms = [batch_norm(name=f"bn{i + 1}") for i in range(convs)]
        self.pooling = keras.layers.AveragePooling2D(self.pool, padding="valid")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.conv_layers, self.norms):
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
            norm.build(shape)
        super().build(input_shape)

    def call(self, x, training=None):
        for conv, norm in zip(self.conv_layers, self.norms):
            x = tf.nn.relu(norm(conv(x), training=training))
        if self.pool != (1, 1):
            x = self.pooling(x)
        return self.drop(x, training=training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "convs": self.convs, "pool": self.pool, "dropout": self.dropout}


@dataclasses.dataclass(frozen=True)
class CnnArch:
    """CNN6/10/14 settings: channels per ConvBlock, kernel, convs per block, pool per block
    (default (2, 2) each), embedding size, and `width` scaling every channel count."""

    channels: tuple = (64, 128, 256, 512)
    kernel_size: int = 3
    convs_per_block: int = 2
    pools: tuple | None = None
    embedding_size: int = 512
    width: float = 1.0

    def __post_init__(self):
        channels = tuples(self.channels)
        pools = tuples(self.pools) if self.pools else ((2, 2),) * len(channels)
        if len(pools) != len(channels):
            raise ValueError(f"pools={pools} needs one entry per channel in {channels}")
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "pools", pools)


@register("cnn6", channels=(64, 128, 256, 512), kernel_size=5, convs_per_block=1,
          embedding_size=512)
@register("cnn10", channels=(64, 128, 256, 512), embedding_size=512)
@register("cnn14", channels=(64, 128, 256, 512, 1024, 2048), embedding_size=2048,
          pools=((2, 2),) * 5 + ((1, 1),))
@register("cnn6_tiny", channels=(64, 128, 256, 512), kernel_size=5, convs_per_block=1,
          embedding_size=512, width=0.125)
@register("cnn10_tiny", channels=(64, 128, 256, 512), embedding_size=512, width=0.125)
@register("cnn10_small", channels=(64, 128, 256, 512), embedding_size=512, width=0.25)
@register("cnn14_tiny", channels=(64, 128, 256, 512, 1024, 2048), embedding_size=2048,
          pools=((2, 2),) * 5 + ((1, 1),), width=0.0625)
@keras.saving.register_keras_serializable(package="glat_tf")
class Cnn(Backbone):
    """PANNs CNN6/10/14: ConvBlocks with average pooling, mean over mel bins, PANNs head.

    Waveform (batch, samples) -> frame-wise features (batch, frames', channels[-1]),
    frames' = the STFT frames halved (floored) once per (2, 2) pool: 62 for 10 s in CNN10.
    `arch.width` scales every channel count and the embedding (the `_tiny` presets).

    Example:
        net = glat_tf.backbones.build("cnn10", num_classes=527)
        out = net(tf.zeros([1, 320000]))
        out["clipwise_logits"].shape, out["features"].shape  # (1, 527), (1, 62, 512)
    """

    Arch = CnnArch

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        a = self.arch
        self.blocks = [ConvBlock(scaled(c, a.width), a.kernel_size, a.convs_per_block, pool,
                                 name=f"conv_block{i + 1}")
                       for i, (c, pool) in enumerate(zip(a.channels, a.pools))]
        self.head = ClipHead(scaled(a.embedding_size, a.width), num_classes, name="head")

    @property
    def panns_arch(self) -> str:
        if len(self.arch.channels) == 6:
            return "cnn14"
        return "cnn6" if self.arch.convs_per_block == 1 else "cnn10"

    def panns_layout(self) -> list:
        return conv_block_layout((f"conv_block{i + 1}", b) for i, b in enumerate(self.blocks))

    def extract(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)  # (batch, frames, mel_bins, channels)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', channels)
