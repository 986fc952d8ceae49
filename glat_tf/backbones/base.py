"""What every backbone shares: the waveform-in frontend, the PANNs head, the output dict."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from glat_tf.config import PANNS_FRONTEND, FrontendConfig, arch_config
from glat_tf.frontend import LogMel

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def batch_norm(name=None, **kwargs):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                           **kwargs)


def scaled(channels: int, width: float) -> int:
    """Width multiplier for the small presets; never below 4 channels."""
    return max(4, int(round(channels * width)))


def tuples(value):
    """Nested lists (a config read back from JSON) -> nested tuples, hashable and comparable."""
    return tuple(tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


@keras.saving.register_keras_serializable(package="glat_tf")
class ClipHead(keras.layers.Layer):
    """PANNs head on a frame-wise feature map (batch, frames, channels).

    Clip: max over time + mean over time -> dropout -> fc1 + ReLU -> fc (logits).
    Frames: the same fc1 + fc on every frame (GL-AT's frame-wise activations).
    Embedding: fc1's output through a second dropout that, as in PANNs, feeds
    only the embedding and never the classifier.

    Example:
        head = ClipHead(hidden=512, num_classes=527)
        out = head(tf.zeros([2, 62, 512]))  # clipwise_logits (2, 527), framewise_logits (2, 62, 527)
    """

    def __init__(self, hidden, num_classes, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.num_classes = num_classes
        self.dropout = dropout
        self.drop_in = keras.layers.Dropout(dropout)
        self.drop_embedding = keras.layers.Dropout(dropout)
        self.fc1 = keras.layers.Dense(hidden, activation="relu", name="fc1")
        self.fc = keras.layers.Dense(num_classes, name="fc_audioset")

    def build(self, input_shape):
        self.fc1.build((None, input_shape[-1]))
        self.fc.build((None, self.hidden))
        super().build(input_shape)

    def call(self, features, training=None):
        pooled = tf.reduce_max(features, axis=1) + tf.reduce_mean(features, axis=1)  # (batch, C)
        hidden = self.fc1(self.drop_in(pooled, training=training))
        frame_hidden = self.fc1(features)  # (batch, frames, hidden)
        return {
            "clipwise_logits": tf.cast(self.fc(hidden), tf.float32),
            "framewise_logits": tf.cast(self.fc(frame_hidden), tf.float32),
            "embedding": self.drop_embedding(hidden, training=training),
        }

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "num_classes": self.num_classes,
                "dropout": self.dropout}


class Backbone(keras.Model):
    """Base of every backbone: waveform (batch, samples) float32 -> dict of

    - `clipwise_logits` (batch, classes)
    - `framewise_logits` (batch, frames', classes): the head applied per frame
    - `features` (batch, frames', channels): the frame-wise feature map
    - `embedding` (batch, embedding_size)

    Constructed from `num_classes`, a `frontend` (FrontendConfig, or a dict of overrides of
    the family's `default_frontend`) and an `arch` record of the family's `Arch` dataclass
    (or a dict of its fields); `preset` is only a label. Subclasses set `Arch`, build `self.head` from `self.arch` and
    implement `extract(log_mel, training)`: (batch, frames, mel_bins, 1) -> (batch, frames',
    channels). A family that PANNs also trained gives `panns_arch` and `panns_layout()`
    (convert/panns.py maps checkpoints with them).
    """

    Arch = None  # the family's frozen dataclass of architecture settings
    default_frontend = PANNS_FRONTEND
    panns_arch = None  # the PANNs architecture whose checkpoints fit this backbone, if any

    def __init__(self, num_classes=527, frontend=None, arch=None, preset=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got num_classes={num_classes!r}")
        self.num_classes = num_classes
        self.preset = preset  # the registry name it was built from: a label for reports only
        self.frontend_config = FrontendConfig.of(frontend, self.default_frontend)
        self.arch = arch_config(self.Arch, arch, f"{type(self).__name__} arch")
        # The frontend stays float32 under mixed precision: log of float16 power underflows.
        self.frontend = LogMel(**self.frontend_config.to_dict(), dtype="float32",
                               name="frontend")

    @property
    def sample_rate(self) -> int:
        return self.frontend_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.frontend_config.hop_length

    def build(self, input_shape):
        # A concrete forward pass creates every variable (needed before loading weights).
        samples = input_shape[1] if input_shape[1] is not None else self.sample_rate
        self.call(tf.zeros([1, samples]), training=False)
        self.built = True

    def extract(self, log_mel, training=None):
        raise NotImplementedError

    def features(self, waveform, training=None):
        """(batch, samples) -> the frame-wise feature map (batch, frames', channels)."""
        x = self.frontend(waveform, training=training)  # (batch, frames, mel_bins)
        return self.extract(tf.expand_dims(x, -1), training=training)  # (batch, frames, mel_bins, 1)

    def call(self, waveform, training=None):
        features = self.features(waveform, training=training)
        out = dict(self.head(features, training=training))
        out["features"] = features
        return out

    def panns_layout(self) -> list:
        """(PyTorch prefix, Keras layer, kind) of the trunk's weighted layers, for PANNs import."""
        raise ValueError(f"no PANNs checkpoint exists for a {type(self).__name__} backbone")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "frontend": self.frontend_config.to_dict(),
                "arch": dataclasses.asdict(self.arch), "preset": self.preset}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "arch" not in config:
            # Files written before the typed configs held every setting as a flat key.
            frontend = {k: config.pop(k) for k in list(config)
                        if k in FrontendConfig.field_names()}
            fields = {f.name for f in dataclasses.fields(cls.Arch)}
            config["arch"] = {k: config.pop(k) for k in list(config) if k in fields}
            config["frontend"] = frontend
        return cls(**config)


def conv_block_layout(blocks) -> list:
    """PANNs `conv_block{i}.conv{j}` / `bn{j}` rows of (prefix, block) pairs."""
    rows = []
    for prefix, block in blocks:
        for n, (conv, norm) in enumerate(zip(block.conv_layers, block.norms)):
            rows += [(f"{prefix}.conv{n + 1}", conv, "conv"), (f"{prefix}.bn{n + 1}", norm, "bn")]
    return rows
