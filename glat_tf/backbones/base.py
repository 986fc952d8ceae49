"""What every backbone shares: the waveform-in frontend, the PANNs head, the output dict."""

from __future__ import annotations

import keras
import tensorflow as tf

from glat_tf.frontend import LogMel

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def batch_norm(name=None, **kwargs):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                           **kwargs)


def scaled(channels: int, width: float) -> int:
    """Width multiplier for the small presets; never below 4 channels."""
    return max(4, int(round(channels * width)))


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

    Subclasses build `self.head` and implement `extract(log_mel, training)`:
    (batch, frames, mel_bins, 1) -> (batch, frames', channels).
    Constructor arguments of the frontend are shared by every subclass.
    """

    def __init__(self, num_classes=527, sample_rate=32000, hop_length=320, n_mels=64, fmin=50.0,
                 fmax=14000.0, spec_augment=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got num_classes={num_classes!r}")
        self.num_classes = num_classes
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.spec_augment = spec_augment
        # The frontend stays float32 under mixed precision: log of float16 power underflows.
        self.frontend = LogMel(sample_rate=sample_rate, hop_length=hop_length, n_mels=n_mels,
                               fmin=fmin, fmax=fmax, spec_augment=spec_augment,
                               dtype="float32", name="frontend")

    def build(self, input_shape):
        # A concrete forward pass creates every variable (needed before loading weights).
        samples = input_shape[1] if input_shape[1] is not None else self.sample_rate
        self.call(tf.zeros([1, samples]), training=False)
        self.built = True

    def extract(self, log_mel, training=None):
        raise NotImplementedError

    def call(self, waveform, training=None):
        x = self.frontend(waveform, training=training)  # (batch, frames, mel_bins)
        features = self.extract(x[..., None], training=training)  # (batch, frames', channels)
        out = dict(self.head(features, training=training))
        out["features"] = features
        return out

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length,
                "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax,
                "spec_augment": self.spec_augment}
