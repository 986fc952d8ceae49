"""TALNet (Wang, Li, Metze 2019): a CRNN with frame-level outputs and linear-softmax pooling."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.backbones.base import Backbone, batch_norm, scaled, tuples
from glat_tf.backbones.registry import register
from glat_tf.config import TALNET_FRONTEND

PROB_FLOOR = 1e-7  # TALNet clamps frame probabilities to [1e-7, 1 - 1e-7]
TALNET_CHANNELS = (32, 32, 64, 64, 128, 128, 256, 256, 512, 512)
TALNET_POOLS = ((2, 2), (2, 2), (1, 2), (1, 2), (1, 2))


def _logit(p):
    return tf.math.log(p) - tf.math.log1p(-p)


@keras.saving.register_keras_serializable(package="glat_tf")
class LinearSoftmaxHead(keras.layers.Layer):
    """TALNet's head on GRU outputs (batch, frames, channels).

    Frame probabilities p_t = clamp(sigmoid(fc_prob(x_t)), 1e-7, 1 - 1e-7); clip probability
    y = sum_t p_t^2 / sum_t p_t (linear softmax). Both are returned as logits log(p / (1 - p))
    so every backbone has the same output contract; `embedding` is the mean GRU output.

    Example:
        head = LinearSoftmaxHead(num_classes=527)
        out = head(tf.zeros([2, 100, 1024]))
        out["clipwise_logits"].shape, out["framewise_logits"].shape  # (2, 527), (2, 100, 527)
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.fc_prob = keras.layers.Dense(num_classes, name="fc_prob")

    def build(self, input_shape):
        self.fc_prob.build((None, input_shape[-1]))
        super().build(input_shape)

    def call(self, features, training=None):
        logits = tf.cast(self.fc_prob(features), tf.float32)  # (batch, frames, classes)
        frame_prob = tf.clip_by_value(tf.sigmoid(logits), PROB_FLOOR, 1.0 - PROB_FLOOR)
        clip_prob = (tf.reduce_sum(frame_prob * frame_prob, axis=1)
                     / tf.reduce_sum(frame_prob, axis=1))  # (batch, classes)
        return {
            "clipwise_logits": _logit(clip_prob),
            "framewise_logits": _logit(frame_prob),
            "embedding": tf.reduce_mean(tf.cast(features, tf.float32), axis=1),
        }

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@dataclasses.dataclass(frozen=True)
class TalnetArch:
    """TALNet settings: conv channels, pools (one after every len(channels)/len(pools) convs),
    GRU units a direction, `width` scaling every channel count, `unroll_gru` for LiteRT."""

    channels: tuple = TALNET_CHANNELS
    pools: tuple = TALNET_POOLS
    gru_units: int = 512
    width: float = 1.0
    unroll_gru: bool = False

    def __post_init__(self):
        object.__setattr__(self, "channels", tuples(self.channels))
        object.__setattr__(self, "pools", tuples(self.pools))
        if len(self.channels) % len(self.pools):
            raise ValueError(f"{len(self.channels)} convs cannot be split evenly among "
                             f"{len(self.pools)} pools")


@register("talnet")
@register("talnet_tiny", width=0.125)
@keras.saving.register_keras_serializable(package="glat_tf")
class TALNet(Backbone):
    """TALNet on a 25 ms-hop PANNs frontend (hop 800 at 32 kHz: 401 frames per 10 s).

    10 x (conv 3x3 with bias -> BN -> ReLU), max pool after every second conv (2x2, 2x2,
    1x2, 1x2, 1x2) -> (batch, 100, 2, 512); per frame the (channels, freq) map is flattened
    channel-major as the PyTorch original -> (batch, 100, 1024); bidirectional GRU, 512 units a
    direction (PyTorch gates: reset_after) -> features (batch, 100, 1024); LinearSoftmaxHead.
    The original standardised each mel bin by a global mean/std and had no bn0, so bn0 here
    has no affine part (center/scale off): it standardises and adds no trainable parameters.
    Keras' looped GRU becomes a while loop over TensorList ops: the converter turned it into a
    builtin WHILE for this model, but left FlexTensorListReserve in a bare Bidirectional-GRU
    model, and GPU/NNAPI delegates refuse WHILE anyway. `unroll_gru=True` (or
    `with_unrolled_gru()`) gives the same weights and function, unrolled over the (then
    static) frames: no control flow, builtin ops only. Use it for export.

    Example:
        net = glat_tf.backbones.build("talnet", num_classes=527)
        out = net(tf.zeros([1, 320000]))
        out["framewise_logits"].shape, out["clipwise_logits"].shape  # (1, 100, 527), (1, 527)
    """

    Arch = TalnetArch
    default_frontend = TALNET_FRONTEND

    def __init__(self, num_classes=527, frontend=None, arch=None, **kwargs):
        super().__init__(num_classes=num_classes, frontend=frontend, arch=arch, **kwargs)
        a = self.arch
        self.channels, self.pools, width = a.channels, a.pools, a.width
        # Before bn0 is built, so it never creates gamma/beta (see the class docstring).
        self.frontend.bn0.center = self.frontend.bn0.scale = False
        every = len(self.channels) // len(self.pools)
        # The original pools after every `every`-th conv: a pool index per conv, None between.
        self._pool_of_conv = [(i + 1) // every - 1 if (i + 1) % every == 0 else None
                              for i in range(len(self.channels))]
        self.convs = [keras.layers.Conv2D(scaled(c, width), 3, padding="same", name=f"conv{i + 1}")
                      for i, c in enumerate(self.channels)]
        self.norms = [batch_norm(f"bn{i + 1}") for i in range(len(self.channels))]
        self.pool_layers = [keras.layers.MaxPooling2D(p) for p in self.pools]
        gru = keras.layers.GRU(scaled(a.gru_units, width), return_sequences=True,
                               reset_after=True, unroll=a.unroll_gru, name="gru")
        self.gru = keras.layers.Bidirectional(gru, name="bigru")
        self.head = LinearSoftmaxHead(num_classes, name="head")

    def extract(self, x, training=None):
        for conv, norm, pool in zip(self.convs, self.norms, self._pool_of_conv):
            x = tf.nn.relu(norm(conv(x), training=training))  # (batch, frames, mel_bins, C)
            if pool is not None:
                x = self.pool_layers[pool](x)
        _, _, bins, channels = x.shape
        x = tf.transpose(x, [0, 1, 3, 2])  # (batch, frames', channels, mel_bins')
        # (batch, frames', channels * mel_bins')
        x = tf.reshape(x, [tf.shape(x)[0], tf.shape(x)[1], channels * bins])
        return self.gru(x, training=training)  # (batch, frames', 2 * gru_units)

    @property
    def unroll_gru(self) -> bool:
        return self.arch.unroll_gru

    def with_unrolled_gru(self) -> "TALNet":
        """A copy computing the same function with an unrolled GRU (LiteRT builtins only)."""
        config = self.get_config()
        config["arch"] = {**config["arch"], "unroll_gru": True}
        clone = self.__class__.from_config(config)
        clone.build((None, self.sample_rate))
        clone.set_weights(self.get_weights())
        return clone
