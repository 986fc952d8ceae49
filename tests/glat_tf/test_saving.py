"""Saved models: files of the previous format load, backbones are saved as objects (no preset
table needed), and `import glat_tf` is all keras.saving.load_model needs."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import glat_tf
import glat_tf.backbones
from glat_tf.backbones import registry
from tests.paths import DATA

LEGACY = DATA / "legacy"


# The saved outputs were computed on another machine: other oneDNN kernels (AVX-512 vs AVX2,
# AMX) sum in another order, and float32 sums of n terms may differ by ~n * 1.2e-7 of their
# magnitude (seen: 3e-8, one ulp of 0.35). Probabilities within 1e-5 are the same model; a
# wrongly loaded weight moves them by 1e-2 or more. The picks are integers: exact.
PROBABILITY_ATOL = 1e-5


@pytest.mark.float_sensitive
def test_files_written_before_the_typed_configs_still_load():
    """tests/data/legacy/*_v0.keras were written by the code of commit f599c33 (preset name +
    backbone_kwargs in the config); they load and give the outputs saved beside them."""
    saved = np.load(LEGACY / "outputs_v0.npz")
    glat = keras.saving.load_model(LEGACY / "glat_cnn6_tiny_v0.keras")
    assert isinstance(glat, glat_tf.GlatModel)
    assert glat.global_backbone.frontend_config.hop_length == 640
    out = glat(saved["waveform"], training=False)
    for key in ("clip_starts", "selected_classes"):
        np.testing.assert_array_equal(np.asarray(out[key]), saved[f"glat_{key}"], err_msg=key)
    for key in ("global", "local", "fused", "framewise"):
        np.testing.assert_allclose(np.asarray(out[key]), saved[f"glat_{key}"],
                                   rtol=0, atol=PROBABILITY_ATOL, err_msg=key)
    baseline = keras.saving.load_model(LEGACY / "baseline_cnn6_tiny_v0.keras")
    np.testing.assert_allclose(np.asarray(baseline(saved["waveform"])["global"]),
                               saved["baseline_global"], rtol=0, atol=PROBABILITY_ATOL)


def test_the_legacy_tolerance_catches_a_changed_weight():
    """The tolerance above is tight enough: one kernel scaled by 1 % moves the outputs past it."""
    saved = np.load(LEGACY / "outputs_v0.npz")
    glat = keras.saving.load_model(LEGACY / "glat_cnn6_tiny_v0.keras")
    variable = glat.global_backbone.trainable_variables[-2]  # the classifier's kernel
    variable.assign(variable * 1.01)
    out = glat(saved["waveform"], training=False)
    assert np.abs(np.asarray(out["global"]) - saved["glat_global"]).max() > PROBABILITY_ATOL


def test_a_saved_model_loads_without_the_preset_table(tmp_path, monkeypatch):
    model = glat_tf.GlatModel.from_preset("mobilenetv2_tiny", num_classes=4, n_clips=2, tau=0.5)
    wave = np.random.default_rng(0).normal(0, 0.1, (1, 32000)).astype(np.float32)
    expected = model(wave)["fused"]
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(registry, "_PRESETS", {})  # a preset renamed or removed since
    with pytest.raises(ValueError, match="unknown backbone"):
        registry.build("mobilenetv2_tiny")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(wave)["fused"], expected)


@pytest.mark.slow
def test_import_glat_tf_is_enough_to_load_every_kind_of_file(tmp_path):
    wave = np.zeros((1, 32000), np.float32)
    glat = glat_tf.GlatModel("cnn6_tiny", num_classes=3, n_clips=1, tau=0.5)
    baseline = glat_tf.Baseline("cnn6_tiny", num_classes=3)
    backbone = glat_tf.backbones.build("talnet_tiny", num_classes=3)
    for name, model in (("glat", glat), ("baseline", baseline), ("backbone", backbone)):
        model(wave)
        model.save(tmp_path / f"{name}.keras")
    script = ("import sys, keras, glat_tf\n"
              "for path in sys.argv[1:]:\n"
              "    print(type(keras.saving.load_model(path)).__name__)\n")
    done = subprocess.run([sys.executable, "-c", script,
                           *[str(tmp_path / f"{n}.keras") for n in ("glat", "baseline", "backbone")]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["GlatModel", "Baseline", "TALNet"]
