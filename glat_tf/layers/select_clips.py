"""GL-AT's class-wise clip selection: top-N classes -> their most active tau-second windows."""

from __future__ import annotations

import keras
import tensorflow as tf

SELECTIONS = ("attention", "random")


@keras.saving.register_keras_serializable(package="glat_tf")
class SelectClips(keras.layers.Layer):
    """Picks, for the N classes with the highest clip score, the window where each is most active.

    Inputs: waveform (batch, samples), clip scores (batch, classes), frame
    activations (batch, frames, classes). For class i, m = argmax_t act[t, i];
    the window of `crop_samples` samples is centred on frame m's centre,
    (m + 0.5) * samples / frames, and clamped into [0, samples]. With
    `suppress_overlap`, after each pick the activations of every class in frames
    [m - o, m + o), o = window frames // 4, are zeroed so later classes look
    elsewhere. `suppress_overlap="reference"` is the authors' exact rule: the
    same, except that a pick whose window reaches the clip's end (start + crop_samples
    >= samples) zeroes the last 2*o frames instead, and one clamped at the start
    the first 2*o frames (GLAT_SPEC 3). `selection="random"` ignores the
    activations and draws uniformly random valid starts (the control experiment).
    Nothing here passes a gradient.

    Outputs: crops (batch, N, crop_samples) float32, starts (batch, N) int32 samples,
    classes (batch, N) int32.

    Example:
        select = SelectClips(n_clips=5, tau=3.0, sample_rate=32000)
        crops, starts, classes = select(waveform, scores, frame_acts)
        crops.shape  # (batch, 5, 96000)
    """

    def __init__(self, n_clips=5, tau=3.0, sample_rate=32000, suppress_overlap=True,
                 selection="attention", seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_clips, int) or n_clips < 1:
            raise ValueError(f"n_clips must be a positive int, got n_clips={n_clips!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0 seconds, got tau={tau!r}")
        if not (isinstance(suppress_overlap, bool) or suppress_overlap == "reference"):
            raise ValueError(f"suppress_overlap must be True, False or 'reference', got "
                             f"suppress_overlap={suppress_overlap!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got selection={selection!r}")
        self.n_clips = n_clips
        self.tau = tau
        self.sample_rate = sample_rate
        self.suppress_overlap = suppress_overlap
        self.selection = selection
        self.seed = seed
        self.crop_samples = int(round(tau * sample_rate))
        self._rng = keras.random.SeedGenerator(seed) if selection == "random" else None

    def check_inputs(self, waveform_shape, num_classes):
        """Static checks; raises ValueError naming the bad argument."""
        if len(waveform_shape) != 2:
            raise ValueError(f"waveform must have rank 2 (batch, samples), got shape "
                             f"waveform.shape={tuple(waveform_shape)}")
        samples = waveform_shape[1]
        if samples is not None and samples < self.crop_samples:
            raise ValueError(f"waveform has {samples} samples, fewer than tau={self.tau} s "
                             f"({self.crop_samples} samples at {self.sample_rate} Hz)")
        if num_classes is not None and self.n_clips > num_classes:
            raise ValueError(f"n_clips={self.n_clips} is larger than the number of classes "
                             f"({num_classes})")

    def _attention_starts(self, activations, classes, num_samples):
        frames = tf.shape(activations)[1]
        samples_per_frame = tf.cast(num_samples, tf.float32) / tf.cast(frames, tf.float32)
        # o = (window frames) // 4: how far the suppression reaches either side of a pick.
        reach = (self.crop_samples * frames // num_samples) // 4
        frame_index = tf.expand_dims(tf.range(frames), 0)  # (1, frames)
        # One-hot picks of class columns: a batched GATHER failed to prepare in LiteRT.
        picks = tf.one_hot(classes, tf.shape(activations)[2], dtype=activations.dtype)
        starts = []
        for k in range(self.n_clips):
            column = tf.reduce_sum(activations * tf.expand_dims(picks[:, k], 1), axis=2)  # (batch, frames)
            peak = tf.argmax(column, axis=1, output_type=tf.int32)  # (batch,)
            centre = (tf.cast(peak, tf.float32) + 0.5) * samples_per_frame
            start = tf.cast(tf.floor(centre - self.crop_samples / 2), tf.int32)  # (batch,)
            starts.append(start)
            if self.suppress_overlap and k + 1 < self.n_clips:
                peak_column = tf.expand_dims(peak, 1)  # (batch, 1)
                near = ((frame_index >= peak_column - reach)
                        & (frame_index < peak_column + reach))  # (batch, frames)
                if self.suppress_overlap == "reference":
                    near = self._reference_edges(near, start, frame_index, frames, reach,
                                                 num_samples)
                activations = activations * tf.expand_dims(tf.cast(~near, activations.dtype), 2)
        return tf.stack(starts, axis=1)  # (batch, N)

    def _reference_edges(self, near, start, frame_index, frames, reach, num_samples):
        """The authors' region_select: a window clamped to an edge suppresses that edge."""
        # Their test is index_r >= duration_all, so a window ending exactly at the end counts.
        at_end = tf.expand_dims(start + self.crop_samples >= num_samples, 1)  # (batch, 1)
        at_start = tf.expand_dims(start < 0, 1) & ~at_end
        # maps[:, -2*o:] = 0: with o = 0 the slice -0: is the whole map, zeroed as theirs is.
        last = frame_index >= tf.where(reach > 0, frames - 2 * reach, 0)  # (1, frames)
        first = frame_index < 2 * reach  # maps[:, :2*o] = 0
        return tf.where(at_end, last, tf.where(at_start, first, near))  # (batch, frames)

    def _random_starts(self, batch, num_samples):
        draw = keras.random.uniform((batch, self.n_clips), seed=self._rng)
        span = tf.cast(num_samples - self.crop_samples + 1, tf.float32)
        return tf.cast(tf.floor(draw * span), tf.int32)

    def call(self, waveform, scores, activations):
        self.check_inputs(waveform.shape, scores.shape[-1])
        scores = tf.stop_gradient(tf.cast(scores, tf.float32))
        activations = tf.stop_gradient(tf.cast(activations, tf.float32))
        waveform = tf.stop_gradient(waveform)
        num_samples = tf.shape(waveform)[1]
        if waveform.shape[1] is None:
            tf.debugging.assert_greater_equal(
                num_samples, self.crop_samples,
                message=f"waveform is shorter than tau={self.tau} s ({self.crop_samples} samples)")
        _, classes = tf.math.top_k(scores, k=self.n_clips)  # (batch, N)
        classes = tf.cast(classes, tf.int32)
        if self.selection == "attention":
            starts = self._attention_starts(activations, classes, num_samples)
        else:
            starts = self._random_starts(tf.shape(waveform)[0], num_samples)
        starts = tf.clip_by_value(starts, 0, num_samples - self.crop_samples)
        # Index into the flattened batch: a plain axis-0 GATHER is one LiteRT builtin.
        # Indexing with None (new axes) is a StridedSlice LiteRT lacks at dynamic shapes.
        offsets = tf.reshape(tf.range(tf.shape(waveform)[0]) * num_samples, [-1, 1, 1])
        index = (offsets + tf.expand_dims(starts, 2)
                 + tf.reshape(tf.range(self.crop_samples), [1, 1, -1]))  # (batch, N, crop_samples)
        crops = tf.gather(tf.reshape(waveform, [-1]), index)  # (batch, N, crop_samples)
        return crops, starts, classes

    def build(self, waveform_shape, scores_shape=None, activations_shape=None):
        # Named as call's inputs: Keras hands these names back to compute_output_shape
        # (model.summary() failed with the default single `input_shape`).
        self.built = True

    def compute_output_shape(self, waveform_shape, scores_shape=None, activations_shape=None):
        batch = waveform_shape[0]
        return ((batch, self.n_clips, self.crop_samples), (batch, self.n_clips),
                (batch, self.n_clips))

    def get_config(self):
        return {**super().get_config(), "n_clips": self.n_clips, "tau": self.tau,
                "sample_rate": self.sample_rate, "suppress_overlap": self.suppress_overlap,
                "selection": self.selection, "seed": self.seed}
