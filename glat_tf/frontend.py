"""Waveform -> log-mel (PANNs frontend), built from ops that LiteRT runs as builtins."""

from __future__ import annotations

import random

import keras
import numpy as np
import tensorflow as tf

from glat_tf.config import FrontendConfig


# Slaney's mel scale: linear (F_SP Hz per mel) below 1 kHz, logarithmic above.
F_SP = 200.0 / 3
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP
LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(freq):
    freq = np.asarray(freq, dtype=np.float64)
    log = MIN_LOG_MEL + np.log(np.maximum(freq, 1e-12) / MIN_LOG_HZ) / LOGSTEP
    return np.where(freq >= MIN_LOG_HZ, log, freq / F_SP)


def _mel_to_hz(mels):
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(mels >= MIN_LOG_MEL, MIN_LOG_HZ * np.exp(LOGSTEP * (mels - MIN_LOG_MEL)),
                    F_SP * mels)


def mel_matrix(config: FrontendConfig) -> np.ndarray:
    """Slaney-normalised triangular filters, (n_bins, n_mels), as librosa.filters.mel(...).T."""
    fft_freqs = np.linspace(0, config.sample_rate / 2, config.n_bins)
    mel_points = np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_bins)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    # Slaney norm: every filter has unit area in Hz.
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.T.astype(np.float32)


def periodic_hann(length: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


@keras.saving.register_keras_serializable(package="glat_tf")
class SpecAugment(keras.layers.Layer):
    """Zeroes random time and frequency stripes of (batch, frames, mel_bins) in training only.

    Example:
        aug = SpecAugment(time_width=64, time_stripes=2, freq_width=8, freq_stripes=2)
        y = aug(log_mel, training=True)  # same shape, stripes set to 0
    """

    def __init__(self, time_width=64, time_stripes=2, freq_width=8, freq_stripes=2, **kwargs):
        super().__init__(**kwargs)
        self.time_width = time_width
        self.time_stripes = time_stripes
        self.freq_width = freq_width
        self.freq_stripes = freq_stripes
        # A layer-owned generator (not tf.random's global one): its state is a variable, so a
        # checkpoint holds it and a resumed run draws the stripes an uninterrupted one draws.
        # Seeded from Python's RNG (as Keras does) without advancing it: the layers built
        # after this one draw the initial weights they drew before it had a generator.
        state = random.getstate()
        self.seed_generator = keras.random.SeedGenerator()
        random.setstate(state)

    def _stripes(self, batch, size, max_width, count, dtype):
        """A (batch, size) keep-mask with `count` stripes of width in [0, max_width) per row."""
        keep = tf.ones([batch, size], dtype)
        positions = tf.range(size)[None, :]
        for _ in range(count):
            width = keras.random.randint([batch, 1], 0, max_width, dtype="int32",
                                         seed=self.seed_generator)
            start = keras.random.randint([batch, 1], 0, 1 << 30, dtype="int32",
                                         seed=self.seed_generator) % tf.maximum(size - width, 1)
            inside = (positions >= start) & (positions < start + width)
            keep *= tf.cast(~inside, dtype)
        return keep

    def call(self, x, training=None):
        if not training:
            return x
        shape = tf.shape(x)
        batch, frames, bins = shape[0], shape[1], shape[2]
        time_keep = self._stripes(batch, frames, self.time_width, self.time_stripes, x.dtype)
        freq_keep = self._stripes(batch, bins, self.freq_width, self.freq_stripes, x.dtype)
        return x * time_keep[:, :, None] * freq_keep[:, None, :]

    def get_config(self):
        return {**super().get_config(), "time_width": self.time_width,
                "time_stripes": self.time_stripes, "freq_width": self.freq_width,
                "freq_stripes": self.freq_stripes}


@keras.saving.register_keras_serializable(package="glat_tf")
class LogMel(keras.layers.Layer):
    """PANNs frontend: waveform (batch, samples) -> normalised log-mel (batch, frames, n_mels).

    Centred STFT (reflect padding of n_fft/2), periodic Hann window, power spectrum,
    Slaney mel filterbank, 10*log10(max(mel, amin)), BatchNorm over mel bins
    (`bn0` in PANNs), then SpecAugment in training when `spec_augment`.
    frames = samples // hop_length + 1 (1001 for 10 s at 32 kHz).

    Example:
        frontend = LogMel(sample_rate=32000, hop_length=320)
        feats = frontend(tf.zeros([2, 320000]))  # (2, 1001, 64)
        raw_db = frontend.log_mel(tf.zeros([2, 320000]))  # before bn0
    """

    def __init__(self, sample_rate=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0,
                 fmax=14000.0, amin=1e-10, spec_augment=True, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.amin = amin
        self.spec_augment = spec_augment
        self.config = FrontendConfig(sample_rate, n_fft, hop_length, n_mels, fmin, fmax, amin,
                                     spec_augment)
        # A non-trainable weight, not a constant, so a mel matrix imported from a checkpoint
        # (set_mel_matrix) is kept by a saved .keras model; the window never changes.
        self._mel = self.add_weight(name="mel_matrix", shape=(self.config.n_bins, n_mels),
                                    initializer=keras.initializers.Constant(
                                        mel_matrix(self.config)),
                                    trainable=False, dtype="float32")
        self._window = tf.constant(periodic_hann(n_fft))
        self.bn0 = keras.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-5, name="bn0")
        self.augment = SpecAugment(name="spec_augment") if spec_augment else None

    def build(self, input_shape):
        self.bn0.build((None, None, self.n_mels))
        super().build(input_shape)

    def set_mel_matrix(self, matrix: np.ndarray) -> None:
        """Replaces the (n_fft/2 + 1, n_mels) filterbank, e.g. with a checkpoint's `melW`."""
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape != tuple(self._mel.shape):
            raise ValueError(f"mel matrix shape {matrix.shape} != the frontend's "
                             f"{tuple(self._mel.shape)} (n_fft/2 + 1, n_mels)")
        self._mel.assign(matrix)

    def _frames(self, padded, num_frames):
        """(batch, padded samples) -> (batch, num_frames, n_fft) overlapping frames.

        Cut as hop-sized chunks joined with their next ceil(n_fft / hop) - 1
        neighbours: reshape, slice and concat only. A GATHER with a (frames, n_fft)
        index table also converts, but stores that table in the model (4 MB for
        10 s), which int8 quantization cannot shrink.
        """
        hop = self.hop_length
        chunks_per_frame = -(-self.n_fft // hop)
        num_chunks = num_frames + chunks_per_frame - 1
        # Zeros past the padded end only ever fill the tail of the last frame's last chunk,
        # which lies beyond n_fft and is cut off below.
        short = tf.maximum(num_chunks * hop - tf.shape(padded)[1], 0)
        padded = tf.pad(padded, [[0, 0], [0, short]])
        chunks = tf.reshape(padded[:, :num_chunks * hop], [tf.shape(padded)[0], num_chunks, hop])
        frames = tf.concat([chunks[:, i:i + num_frames] for i in range(chunks_per_frame)], axis=2)
        return frames[:, :, :self.n_fft]  # (batch, frames, n_fft)

    def log_mel(self, waveform):
        """(batch, samples) -> (batch, frames, n_mels) in dB, before bn0."""
        waveform = tf.convert_to_tensor(waveform, tf.float32)
        pad = self.n_fft // 2
        # (batch, samples + n_fft)
        padded = tf.pad(waveform, [[0, 0], [pad, pad]], mode="REFLECT")
        frames = self._frames(padded, tf.shape(waveform)[1] // self.hop_length + 1)
        frames = frames * self._window  # (batch, frames, n_fft)
        spectrum = tf.signal.rfft(frames, fft_length=[self.n_fft])  # (batch, frames, n_bins)
        power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
        mel = tf.tensordot(power, self._mel, axes=[[2], [0]])  # (batch, frames, n_mels)
        return 10.0 * tf.math.log(tf.maximum(mel, self.amin)) / np.log(10.0).astype(np.float32)

    def call(self, waveform, training=None):
        x = self.bn0(self.log_mel(waveform), training=training)
        if self.augment is not None:
            x = self.augment(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else self.config.frames_for(samples)
        return (input_shape[0], frames, self.n_mels)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "n_fft": self.n_fft,
                "hop_length": self.hop_length, "n_mels": self.n_mels, "fmin": self.fmin,
                "fmax": self.fmax, "amin": self.amin, "spec_augment": self.spec_augment}
