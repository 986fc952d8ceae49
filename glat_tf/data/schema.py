"""The TFRecord layout of one clip: a tf.train.Example with int16 PCM bytes and label indices."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

# Full scale of int16 PCM: decoded samples lie in [-1, 1).
PCM_SCALE = 32768.0

FEATURES = {
    "audio_id": tf.io.FixedLenFeature([], tf.string),
    "waveform": tf.io.FixedLenFeature([], tf.string),  # little-endian int16, mono
    "num_samples": tf.io.FixedLenFeature([], tf.int64),
    "sample_rate": tf.io.FixedLenFeature([], tf.int64),
    "labels": tf.io.VarLenFeature(tf.int64),
}


def encode_example(audio_id: str, pcm: np.ndarray, sample_rate: int,
                   labels: Sequence[int]) -> bytes:
    """Serialise one clip; `pcm` is a 1-D int16 array."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"pcm must be 1-D int16, got dtype={pcm.dtype} shape={pcm.shape}")

    def bytes_feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    example = tf.train.Example(features=tf.train.Features(feature={
        "audio_id": bytes_feature(audio_id.encode("utf-8")),
        "waveform": bytes_feature(pcm.astype("<i2", copy=False).tobytes()),
        "num_samples": int_feature([pcm.shape[0]]),
        "sample_rate": int_feature([int(sample_rate)]),
        "labels": int_feature(sorted(int(i) for i in labels)),
    }))
    # The feature map has no fixed order unless asked: same input, same bytes.
    return example.SerializeToString(deterministic=True)


def multi_hot(label_indices: tf.SparseTensor, num_classes: int) -> tf.Tensor:
    """(batch, num_classes) float32 from a batch of variable-length label index lists."""
    dense = tf.sparse.to_indicator(label_indices, num_classes)
    return tf.cast(dense, tf.float32)


def parse_batch(serialized: tf.Tensor, num_classes: int) -> dict:
    """Parse a (batch,) string tensor of Examples.

    Returns audio_id (B,) string, pcm (B,) raw bytes string and labels (B, L) float32 multi-hot;
    the waveform stays as bytes so that shuffling and repetition move 1 copy, not 2 (float32).
    """
    parsed = tf.io.parse_example(serialized, {k: FEATURES[k] for k in ("audio_id", "waveform",
                                                                       "labels")})
    return {"audio_id": parsed["audio_id"], "pcm": parsed["waveform"],
            "labels": multi_hot(parsed["labels"], num_classes)}


def decode_pcm(pcm: tf.Tensor, num_samples: int | None = None) -> tf.Tensor:
    """(B,) int16 byte strings -> (B, S) float32 in [-1, 1); num_samples pads/cuts to S."""
    fixed = None if num_samples is None else 2 * int(num_samples)
    wave = tf.io.decode_raw(pcm, tf.int16, little_endian=True, fixed_length=fixed)
    # One op instead of cast then multiply: x * max_range / 32767 = x / 32768 exactly, and
    # one float buffer less per batch (fresh buffers cost page faults, more than the arithmetic).
    wave = tf.quantization.dequantize(tf.bitcast(wave, tf.qint16), -1.0, 32767 / PCM_SCALE,
                                      mode="SCALED")
    if num_samples is not None:
        wave = tf.ensure_shape(wave, [None, int(num_samples)])  # (batch, samples)
    return wave


def parse_single(serialized: bytes | tf.Tensor) -> dict:
    """One Example as NumPy values (tests, inspection): audio_id, pcm int16, sample_rate, labels."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    return {
        "audio_id": parsed["audio_id"].numpy().decode("utf-8"),
        "pcm": np.frombuffer(parsed["waveform"].numpy(), dtype="<i2"),
        "num_samples": int(parsed["num_samples"].numpy()),
        "sample_rate": int(parsed["sample_rate"].numpy()),
        "labels": parsed["labels"].values.numpy().tolist(),
    }
