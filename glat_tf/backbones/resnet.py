"""PANNs ResNet22/38/54: a ConvBlock stem, four residual stages, a ConvBlock after, PANNs head."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.backbones.base import (Backbone, ClipHead, batch_norm, conv_block_layout, scaled,
                                    tuples)
from glat_tf.backbones.cnn import ConvBlock
from glat_tf.backbones.registry import register

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)


def _conv(filters, size, name):
    return keras.layers.Conv2D(filters, size, padding="same", use_bias=False, name=name)


@keras.saving.register_keras_serializable(package="glat_tf")
class BasicBlock(keras.layers.Layer):
    """PANNs basic block: [avg pool] -> conv3x3-BN-ReLU -> dropout 0.1 -> conv3x3-BN, + shortcut.

    Downsampling is an average pool before the first conv (never a strided conv);
    the shortcut is identity or ([avg pool 2x2] -> conv 1x1 -> BN) when `downsample`.
    The last BN starts at gamma 0, so a fresh block is the identity (as PANNs).
    Input (batch, frames, mel_bins, C_in) -> (batch, frames/stride, mel_bins/stride, planes * 1).

    Example:
        block = BasicBlock(128, stride=2, downsample=True)
        y = block(tf.zeros([1, 500, 32, 64]))  # (1, 250, 16, 128)
    """

    expansion = 1

    def __init__(self, planes, stride=1, downsample=False, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got stride={stride}")
        self.planes = planes
        self.stride = stride
        self.downsample = downsample
        self.dropout = dropout
        self.pool = keras.layers.AveragePooling2D(2) if stride == 2 else keras.layers.Identity()
        self.drop = keras.layers.Dropout(dropout)
        self.convs, self.norms = self._residual_layers()
        if downsample:
            self.shortcut_conv = _conv(planes * self.expansion, 1, "downsample_conv")
            self.shortcut_bn = batch_norm("downsample_bn")

    def _residual_layers(self):
        convs = [_conv(self.planes, 3, "conv1"), _conv(self.planes, 3, "conv2")]
        return convs, [batch_norm("bn1"), batch_norm("bn2", gamma_initializer="zeros")]

    def residual(self, x, training=None):
        x = tf.nn.relu(self.norms[0](self.convs[0](x), training=training))
        x = self.drop(x, training=training)
        return self.norms[1](self.convs[1](x), training=training)

    def call(self, x, training=None):
        pooled = self.pool(x)  # (batch, frames / stride, mel_bins / stride, C_in)
        shortcut = x
        if self.downsample:
            shortcut = self.shortcut_bn(self.shortcut_conv(pooled), training=training)
        return tf.nn.relu(self.residual(pooled, training=training) + shortcut)

    def get_config(self):
        return {**super().get_config(), "planes": self.planes, "stride": self.stride,
                "downsample": self.downsample, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="glat_tf")
class Bottleneck(BasicBlock):
    """PANNs bottleneck: [avg pool] -> 1x1 -> 3x3 -> dropout 0.1 -> 1x1 (x4 channels), + shortcut.

    Input (batch, frames, mel_bins, C_in) -> (batch, frames/stride, mel_bins/stride, planes * 4).

    Example:
        block = Bottleneck(64, stride=1, downsample=True)
        y = block(tf.zeros([1, 500, 32, 64]))  # (1, 500, 32, 256)
    """

    expansion = 4

    def _residual_layers(self):
        convs = [_conv(self.planes, 1, "conv1"), _conv(self.planes, 3, "conv2"),
                 _conv(self.planes * self.expansion, 1, "conv3")]
        norms = [batch_norm("bn1"), batch_norm("bn2"), batch_norm("bn3", gamma_initializer="zeros")]
        return convs, norms

    def residual(self, x, training=None):
        x = tf.nn.relu(self.norms[0](self.convs[0](x), training=training))
        x = tf.nn.relu(self.norms[1](self.convs[1](x), training=training))
        x = self.drop(x, training=training)
        return self.norms[2](self.convs[2](x), training=training)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@dataclasses.dataclass(frozen=True)
class ResNetArch:
    """ResNet settings: "basic" or "bottleneck" blocks, blocks per stage, embedding size,
    and `width` scaling every channel count."""

    block: str = "basic"
    stage_blocks: tuple = (3, 4, 6, 3)
    embedding_size: int = 2048
    width: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "stage_blocks", tuples(self.stage_blocks))
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got block={self.block!r}")
        if len(self.stage_blocks) != len(STAGE_CHANNELS):
            raise ValueError(f"stage_blocks={self.stage_blocks} needs one block count per stage "
                             f"({len(STAGE_CHANNELS)} stages)")


@register("resnet22", block="basic", stage_blocks=(2, 2, 2, 2))
@register("resnet38", block="basic", stage_blocks=(3, 4, 6, 3))
@register("resnet54", block="bottleneck", stage_blocks=(3, 4, 6, 3))
@register("resnet38_tiny", block="basic", stage_blocks=(3, 4, 6, 3), width=0.0625)
@keras.saving.register_keras_serializable(package="glat_tf")
class ResNet(Backbone):
    """PANNs ResNets: ConvBlock(64) -> residual stages -> avg pool -> ConvBlock(2048) -> head.

    `arch.block` is "basic" (ResNet22 [2,2,2,2], ResNet38 [3,4,6,3]) or "bottleneck"
    (ResNet54 [3,4,6,3]); stages have 64/128/256/512 planes at strides 1/2/2/2.
    Waveform (batch, samples) -> features (batch, frames', 2048 * width), frames' = 31 for 10 s.

    Example:
        net = glat_tf.backbones.build("resnet38", num_classes=527)
        out = net(tf.zeros([1, 320000]))
        out["features"].shape, out["clipwise_logits"].shape  # (1, 31, 2048), (1, 527)
    """

    Arch = ResNetArch

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        width = self.arch.width
        block_cls = BLOCKS[self.arch.block]
        self.conv_block1 = ConvBlock(scaled(64, width), pool=(2, 2), name="conv_block1")
        self.stages = []
        in_channels = scaled(64, width)
        stages = zip(STAGE_CHANNELS, self.arch.stage_blocks, STAGE_STRIDES)
        for s, (planes, count, stride) in enumerate(stages):
            planes = scaled(planes, width)
            stage = []
            for j in range(count):
                first = j == 0
                downsample = first and (stride != 1 or in_channels != planes * block_cls.expansion)
                stage.append(block_cls(planes, stride if first else 1, downsample,
                                       name=f"layer{s + 1}_{j}"))
                in_channels = planes * block_cls.expansion
            self.stages.append(stage)
        self.pool = keras.layers.AveragePooling2D(2)
        self.drop = keras.layers.Dropout(0.2)
        self.conv_block_after1 = ConvBlock(scaled(2048, width), pool=(1, 1),
                                           name="conv_block_after1")
        self.head = ClipHead(scaled(self.arch.embedding_size, width), num_classes, name="head")

    @property
    def panns_arch(self) -> str:
        if self.arch.block == "bottleneck":
            return "resnet54"
        return "resnet22" if self.arch.stage_blocks == (2, 2, 2, 2) else "resnet38"

    def panns_layout(self) -> list:
        rows = conv_block_layout([("conv_block1", self.conv_block1)])
        for s, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                prefix = f"resnet.layer{s + 1}.{j}"
                for n, (conv, norm) in enumerate(zip(block.convs, block.norms)):
                    rows += [(f"{prefix}.conv{n + 1}", conv, "conv"),
                             (f"{prefix}.bn{n + 1}", norm, "bn")]
                if block.downsample:  # PANNs: Sequential([AvgPool,] conv, bn)
                    first = 1 if block.stride == 2 else 0
                    rows += [(f"{prefix}.downsample.{first}", block.shortcut_conv, "conv"),
                             (f"{prefix}.downsample.{first + 1}", block.shortcut_bn, "bn")]
        return rows + conv_block_layout([("conv_block_after1", self.conv_block_after1)])

    def extract(self, x, training=None):
        x = self.conv_block1(x, training=training)  # (batch, frames/2, mel_bins/2, 64)
        for stage in self.stages:
            for block in stage:
                x = block(x, training=training)  # (batch, frames', mel_bins', planes * expansion)
        x = self.drop(self.pool(x), training=training)  # (batch, frames/32, mel_bins/32, C)
        x = self.conv_block_after1(x, training=training)  # (batch, frames/32, mel_bins/32, 2048)
        return tf.reduce_mean(x, axis=2)  # (batch, frames', 2048)
