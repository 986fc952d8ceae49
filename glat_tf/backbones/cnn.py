"""PANNs plain CNNs (CNN6, CNN10, CNN14) as one configurable class."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf.backbones.base import Backbone, ClipHead, batch_norm, scaled
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
    `width` scales every channel count and the embedding (the `_tiny` presets).

    Example:
        net = glat_tf.backbones.build("cnn10", num_classes=527)
        out = net(tf.zeros([1, 320000]))
        out["clipwise_logits"].shape, out["features"].shape  # (1, 527), (1, 62, 512)
    """

    def __init__(self, num_classes=527, channels=(64, 128, 256, 512), kernel_size=3,
                 convs_per_block=2, pools=None, embedding_size=512, width=1.0, **kwargs):
        super().__init__(num_classes=num_classes, **kwargs)
        self.channels = tuple(channels)
        self.kernel_size = kernel_size
        self.convs_per_block = convs_per_block
        self.pools = tuple(tuple(p) for p in (pools or ((2, 2),) * len(self.channels)))
        if len(self.pools) != len(self.channels):
            raise ValueError(f"pools={self.pools} needs one entry per channel in {self.channels}")
        self.embedding_size = embedding_size
        self.width = width
        self.blocks = [ConvBlock(scaled(c, width), kernel_size, convs_per_block, pool,
                                 name=f"conv_block{i + 1}")
                       for i, (c, pool) in enumerate(zip(self.channels, self.pools))]
        self.head = ClipHead(scaled(embedding_size, width), num_classes, name="head")

    def extract(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)  # (batch, frames, mel_bins, channels)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_size": self.kernel_size,
                "convs_per_block": self.convs_per_block, "pools": self.pools,
                "embedding_size": self.embedding_size, "width": self.width}
