"""GlatModel: outputs, the two loss modes' gradients, save/load, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from glat_tf import GlatModel
from harness import assert_round_trips

CLASSES = 6


def tiny(**kwargs):
    args = dict(backbone="cnn10_tiny", num_classes=CLASSES, n_clips=2, tau=1.0)
    args.update(kwargs)
    return GlatModel(**args)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, (2, 3 * 32000)).astype(np.float32)
    labels = (rng.random((2, CLASSES)) < 0.4).astype(np.float32)
    return wave, labels


def test_outputs_and_round_trip(batch, tmp_path):
    model = tiny()
    out = assert_round_trips(model, (batch[0],), tmp_path, atol=1e-6)
    assert {k: v.shape for k, v in out.items()} == {
        "global": (2, CLASSES), "local": (2, CLASSES), "fused": (2, CLASSES),
        "framewise": (2, 18, CLASSES), "clip_starts": (2, 2), "selected_classes": (2, 2)}
    assert out["clip_starts"].dtype == np.int32 and out["selected_classes"].dtype == np.int32
    for key in ("global", "local", "fused", "framewise"):
        assert ((out[key] >= 0) & (out[key] <= 1)).all()
    # Fusion is (max + mean) / 2 of the two streams, so it lies between them.
    low = np.minimum(out["global"], out["local"])
    high = np.maximum(out["global"], out["local"])
    np.testing.assert_allclose(out["fused"], (high + (low + high) / 2) / 2, atol=1e-6)
    # The selected classes are the global top-N.
    top = np.argsort(-out["global"], axis=1)[:, :2]
    assert (np.sort(top, 1) == np.sort(out["selected_classes"], 1)).all()


def test_any_length_at_least_tau():
    model = tiny()
    for seconds in (1.0, 2.5, 7.0):
        out = model(tf.zeros([1, int(seconds * 32000)]))
        assert out["clip_starts"].numpy().max() <= int(seconds * 32000) - 32000


def test_joint_global_gradient_is_the_gradient_of_global_loss_alone(batch):
    model = tiny()
    wave, labels = batch
    model(wave)
    variables = model.global_backbone.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = model.stream_losses(model(wave, training=False), labels)
        joint = tf.reduce_mean(losses["loss"])
        global_only = tf.reduce_mean(losses["global_loss"])
    g_joint = tape.gradient(joint, variables)
    g_global = tape.gradient(global_only, variables)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in g_global)
    for a, b in zip(g_joint, g_global):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7, rtol=1e-6)
    local_grads = tape.gradient(joint, model.local_backbone.trainable_variables)
    assert all(g is not None for g in local_grads)


def test_frozen_global_leaves_global_weights_bit_identical(batch):
    model = tiny(loss_mode="frozen_global")
    wave, labels = batch
    model(wave)
    before = [v.numpy().copy() for v in model.global_backbone.weights]
    local_before = [v.numpy().copy() for v in model.local_backbone.trainable_variables]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(wave, labels, batch_size=2, epochs=2, verbose=0)
    for a, v in zip(before, model.global_backbone.weights):
        assert np.array_equal(a, v.numpy()), v.path
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(local_before, model.local_backbone.trainable_variables))


def test_joint_training_moves_both_streams(batch):
    model = tiny()
    wave, labels = batch
    model(wave)
    g0 = [v.numpy().copy() for v in model.global_backbone.trainable_variables]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(wave, labels, batch_size=2, epochs=1, verbose=0).history
    assert set(history) == {"loss", "global_loss", "local_loss"}
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(g0, model.global_backbone.trainable_variables))


def test_bad_input_names_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="rank 2"):
        model(tf.zeros([1, 1, 32000]))
    with pytest.raises(ValueError, match="dtype"):
        model(tf.zeros([1, 32000], tf.int32))
    with pytest.raises(ValueError, match="tau=1.0"):
        model(tf.zeros([1, 16000]))
    with pytest.raises(ValueError, match="n_clips=7"):
        tiny(n_clips=7)
    with pytest.raises(ValueError, match="tau"):
        tiny(tau=0.0)
    with pytest.raises(ValueError, match="backbone='cnn99'"):
        tiny(backbone="cnn99")
    with pytest.raises(ValueError, match="loss_mode"):
        tiny(loss_mode="both")
