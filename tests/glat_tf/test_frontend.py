"""The LogMel frontend against librosa, and the same numbers in every execution mode."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from glat_tf.config import FrontendConfig
from glat_tf.frontend import LogMel, SpecAugment, mel_matrix
from tests.harness import check
from tests.paths import DATA


def librosa_log_mel(x):
    power = np.abs(librosa.stft(x, n_fft=1024, hop_length=320, win_length=1024, window="hann",
                                center=True, pad_mode="reflect")) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=32000, n_fft=1024, n_mels=64, fmin=50,
                                         fmax=14000)
    return 10 * np.log10(np.maximum(mel, 1e-10)).T  # (frames, n_mels)


def assert_close_db(got, ref, tol=0.01):
    """Within tol dB on every bin within 60 dB of the loudest one."""
    assert got.shape == ref.shape
    loud = ref >= ref.max() - 60
    assert loud.mean() > 0.3  # the comparison covers a real part of the spectrogram
    assert np.abs(got - ref)[loud].max() < tol


@pytest.fixture(scope="module")
def clip():
    x, rate = sf.read(str(DATA / "R9_ZSCveAHg_7s.wav"), dtype="float32")
    assert rate == 32000
    return x


@pytest.fixture(scope="module")
def frontend():
    layer = LogMel()
    layer.build((None, None))
    return layer


def test_mel_matrix_equals_librosa():
    ref = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_allclose(mel_matrix(FrontendConfig()), ref, atol=1e-6, rtol=0)


@pytest.mark.float_sensitive
def test_log_mel_of_real_clip_equals_librosa(frontend, clip):
    got = frontend.log_mel(clip[None]).numpy()[0]
    assert got.shape == (clip.size // 320 + 1, 64)
    assert_close_db(got, librosa_log_mel(clip))


@pytest.mark.float_sensitive
def test_log_mel_of_noise_equals_librosa(frontend):
    noise = np.random.default_rng(0).normal(0, 0.1, 32000 * 3).astype(np.float32)
    assert_close_db(frontend.log_mel(noise[None]).numpy()[0], librosa_log_mel(noise))


@pytest.mark.parametrize("samples", [1024, 32000, 32123, 320000])
def test_any_number_of_samples(frontend, samples):
    check.run_backbone_test(frontend, (tf.zeros([2, samples]),),
                            {"0": (2, samples // 320 + 1, 64)}, "frontend")


@pytest.mark.float_sensitive
def test_same_values_in_every_execution_mode(frontend, clip):
    batch = np.stack([clip, clip[::-1].copy()])
    eager = frontend.log_mel(batch).numpy()
    graph = tf.function(frontend.log_mel)(batch).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(batch).map(frontend.log_mel))).numpy()
    np.testing.assert_allclose(graph, eager, atol=1e-4)
    np.testing.assert_allclose(mapped, eager, atol=1e-4)
    ops, lite = check.run_export_test(lambda w: {"log_mel": frontend.log_mel(w)}, batch,
                                      frontend, {"log_mel": eager}, "frontend")
    assert "RFFT2D" in ops
    assert_close_db(lite["log_mel"][0], librosa_log_mel(clip))


def test_bn0_normalises_over_mel_bins(frontend, clip):
    # Fresh BN in inference: gamma 1, beta 0, mean 0, var 1 -> x / sqrt(1 + eps).
    raw = frontend.log_mel(clip[None]).numpy()
    np.testing.assert_allclose(frontend(clip[None], training=False).numpy(),
                               raw / np.sqrt(1 + 1e-5), rtol=1e-5, atol=1e-4)
    assert frontend.bn0.moving_mean.shape == (64,)


def test_spec_augment_only_in_training():
    x = tf.ones([4, 200, 64])
    aug = SpecAugment()
    assert np.array_equal(aug(x, training=False).numpy(), x.numpy())
    y = aug(x, training=True).numpy()
    zero_frames = (y == 0).all(axis=2).sum(axis=1)
    zero_bins = (y == 0).all(axis=1).sum(axis=1)
    assert (zero_frames <= 2 * 63).all() and (zero_bins <= 2 * 7).all()
    assert (y == 0).any() and set(np.unique(y)) <= {0.0, 1.0}


def test_bad_fft_length_is_refused():
    with pytest.raises(ValueError, match="n_fft"):
        LogMel(n_fft=1000)
