"""AT-SCA (Hong et al., ICASSP 2020), a RECONSTRUCTION: CNN10 with spatial-channel attention."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.backbones.base import Backbone, ClipHead, scaled, tuples
from glat_tf.backbones.cnn import Cnn, ConvBlock
from glat_tf.backbones.registry import register


@keras.saving.register_keras_serializable(package="glat_tf")
class ScaConvBlock(ConvBlock):
    """A PANNs ConvBlock with spatial-channel attention between its last ReLU and the pooling.

    Channel attention: squeeze-excitation (mean over time x freq, Dense C -> C/reduction, ReLU,
    Dense -> C, sigmoid; no biases) scales x to x_c. Global spatial mask M_g = sigmoid(conv 7x7
    over [channel mean, channel max] of x_c), (T, F): where the event is. Local temporal mask
    M_t = sigmoid(conv1d k=3 over the frequency-mean of x_c, C -> 1), (T, 1): onsets/offsets.
    y = x_c * (1 + M_g * M_t), so a mask can only emphasise, never erase, the CNN's features.
    Input and output as ConvBlock: (batch, frames, mel_bins, C_in) -> pooled (..., filters).

    Example:
        block = ScaConvBlock(64)
        y = block(tf.zeros([1, 1001, 64, 1]))  # (1, 500, 32, 64)
    """

    def __init__(self, filters, kernel_size=3, convs=2, pool=(2, 2), dropout=0.2, reduction=16,
                 spatial_kernel=7, temporal_kernel=3, **kwargs):
        super().__init__(filters, kernel_size, convs, pool, dropout, **kwargs)
        self.reduction = reduction
        self.spatial_kernel = spatial_kernel
        self.temporal_kernel = temporal_kernel
        self.squeeze = keras.layers.Dense(max(1, filters // reduction), activation="relu",
                                          use_bias=False, name="se_squeeze")
        self.excite = keras.layers.Dense(filters, activation="sigmoid", use_bias=False,
                                         name="se_excite")
        # The mask convs keep a bias: it sets the resting level of each mask.
        self.spatial = keras.layers.Conv2D(1, spatial_kernel, padding="same",
                                           activation="sigmoid", name="global_mask")
        self.temporal = keras.layers.Conv1D(1, temporal_kernel, padding="same",
                                            activation="sigmoid", name="temporal_mask")

    def build(self, input_shape):
        super().build(input_shape)
        self.squeeze.build((None, self.filters))
        self.excite.build((None, max(1, self.filters // self.reduction)))
        self.spatial.build((None, None, None, 2))
        self.temporal.build((None, None, self.filters))

    def attend(self, x):
        weights = self.excite(self.squeeze(tf.reduce_mean(x, axis=[1, 2])))  # (batch, C)
        x = x * weights[:, None, None, :]  # (batch, frames, mel_bins, C)
        pooled = tf.concat([tf.reduce_mean(x, axis=-1, keepdims=True),
                            tf.reduce_max(x, axis=-1, keepdims=True)], axis=-1)  # (..., 2)
        global_mask = self.spatial(pooled)  # (batch, frames, mel_bins, 1)
        temporal_mask = self.temporal(tf.reduce_mean(x, axis=2))  # (batch, frames, 1)
        return x * (1.0 + global_mask * temporal_mask[:, :, None, :])

    def call(self, x, training=None):
        for conv, norm in zip(self.conv_layers, self.norms):
            x = tf.nn.relu(norm(conv(x), training=training))
        x = self.attend(x)
        if self.pool != (1, 1):
            x = self.pooling(x)
        return self.drop(x, training=training)

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "spatial_kernel": self.spatial_kernel, "temporal_kernel": self.temporal_kernel}


@dataclasses.dataclass(frozen=True)
class AtScaArch:
    """AT-SCA settings: CNN10's channels and embedding, the attention's channel reduction,
    and `width` scaling every channel count."""

    channels: tuple = (64, 128, 256, 512)
    embedding_size: int = 512
    reduction: int = 16
    width: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "channels", tuples(self.channels))


@register("atsca", channels=(64, 128, 256, 512), embedding_size=512)
@register("atsca_tiny", channels=(64, 128, 256, 512), embedding_size=512, width=0.125)
@keras.saving.register_keras_serializable(package="glat_tf")
class AtSca(Backbone):
    """AT-SCA RECONSTRUCTION: CNN10 whose every ConvBlock is a ScaConvBlock; PANNs head.

    No code or layer list of AT-SCA is public. Known: spatial attention split into a global
    part (which time-frequency regions) and a local part (onsets/offsets) plus channel
    attention, insertable into any CNN, 0.390 mAP on AudioSet. The layers here are this
    project's reading of that description (BACKBONES.md), not the authors' network.
    Variable names follow CNN10, so a PANNs CNN10 checkpoint loads into the CNN part
    (the attention weights stay fresh). Waveform (batch, samples) -> features
    (batch, frames', 512 * width), frames' = 62 for 10 s.

    Example:
        net = glat_tf.backbones.build("atsca", num_classes=527)
        out = net(tf.zeros([1, 320000]))
        out["features"].shape, out["framewise_logits"].shape  # (1, 62, 512), (1, 62, 527)
    """

    Arch = AtScaArch
    panns_arch = "cnn10"  # its CNN10 part

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        a = self.arch
        self.blocks = [ScaConvBlock(scaled(c, a.width), reduction=a.reduction,
                                    name=f"conv_block{i + 1}") for i, c in enumerate(a.channels)]
        self.head = ClipHead(scaled(a.embedding_size, a.width), num_classes, name="head")

    # The same trunk walk and PANNs names as CNN10: blocks in turn, then the mean over mel bins.
    extract = Cnn.extract
    panns_layout = Cnn.panns_layout
