"""The cost variants of issue 23: reused features (local scores off the global feature map)
and the zoom-in local stream (a finer frontend on short windows), with their costs."""

import numpy as np
import pytest
import tensorflow as tf

from glat_tf.model import GlatModel
from tests.harness import bench_module, check
from train.variants import zoom_in

RATE = 16000
FRONTEND = {"n_mels": 32, "hop_length": 320, "n_fft": 512, "fmax": 8000.0, "spec_augment": False}
CLIP = 10 * RATE


def model_cost():
    return bench_module("model_cost")


def reused(**kwargs):
    model = GlatModel("cnn10_tiny", 6, 3, 2.0, RATE, backbone_kwargs=FRONTEND,
                      share_weights=True, reuse_features=True, **kwargs)
    model.build((None, CLIP))
    return model


def test_reuse_features_needs_shared_weights():
    with pytest.raises(ValueError, match="share_weights"):
        GlatModel("cnn10_tiny", 6, 3, 2.0, RATE, backbone_kwargs=FRONTEND, reuse_features=True)


def test_reused_local_scores_are_the_head_on_the_window_frames():
    model = reused()
    wave = tf.random.stateless_normal([2, CLIP], seed=[1, 2], stddev=0.1)
    out = check.run_backbone_test(model, (wave,), {"per_clip": (2, 3, 6), "fused": (2, 6)},
                                  "glat_model", int_outputs=("clip_starts", "selected_classes"))
    features = model.branch_features("global", wave)  # (2, F, C)
    frames = features.shape[1]
    stride = CLIP / frames
    width = int(model.crop_samples // stride)
    for b in range(2):
        for n in range(3):
            first = min(round(out["clip_starts"][b, n] / stride), frames - width)
            expect = model.local_head(features[b:b + 1, first:first + width])["per_clip"][0]
            np.testing.assert_allclose(out["per_clip"][b, n], expect, atol=1e-5)


def test_window_features_match_the_crop_pass_inside_the_receptive_field():
    """The approximation's premise: away from a crop's ends, its own features equal the
    clip's features over it (a window on the feature grid, long enough to have an inside)."""
    model = GlatModel("cnn10_tiny", 6, 1, 6.0, RATE, backbone_kwargs=FRONTEND,
                      share_weights=True, reuse_features=True)
    model.build((None, CLIP))
    wave = tf.random.stateless_normal([1, CLIP], seed=[3, 4], stddev=0.1)
    whole = model.branch_features("global", wave)
    grid = model.window_features(whole, tf.constant([[0]]), CLIP).shape[1]
    stride = 16 * 320  # CNN10 pools time 2x four times: one feature per 16 hops
    start = 4 * stride
    crop = model.branch_features("global", wave[:, start:start + model.crop_samples])
    picked = model.window_features(whole, tf.constant([[start]]), CLIP)
    assert picked.shape[1] == grid == crop.shape[1]
    middle = crop.shape[1] // 2
    scale = float(tf.reduce_max(tf.abs(crop)))
    np.testing.assert_allclose(picked[0, middle], crop[0, middle], atol=1e-4 * scale)
    assert float(tf.reduce_max(tf.abs(picked[0, 0] - crop[0, 0]))) > 1e-4 * scale  # edge differs


def test_reused_training_step_trains_the_shared_network():
    model = reused()
    optimizer = tf.keras.optimizers.Adam(1e-3)
    wave = tf.random.stateless_normal([2, CLIP], seed=[5, 6], stddev=0.1)
    labels = tf.constant([[1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]], tf.float32)
    before = [v.numpy().copy() for v in model.trainable_variables]
    losses = model.training_step(optimizer, wave, labels, 2)
    assert np.isfinite(float(losses["local_loss"])) and float(losses["local_loss"]) > 0
    changed = sum(not np.array_equal(a, v.numpy())
                  for a, v in zip(before, model.trainable_variables))
    assert changed == len(before)


def test_reused_local_stream_costs_a_head_not_a_pass():
    cost = model_cost()
    shared = GlatModel("cnn10_tiny", 6, 3, 2.0, RATE, backbone_kwargs=FRONTEND,
                       share_weights=True)
    shared.build((None, CLIP))
    crop_pass = cost.multiply_adds(shared, CLIP)
    reuse = cost.multiply_adds(reused(), CLIP)
    assert reuse["global"] == crop_pass["global"]
    assert crop_pass["local"] > 0.5 * crop_pass["global"]  # 3 windows of 2 s: 0.6 of a clip
    assert reuse["local"] < 0.01 * reuse["global"]


def test_zoom_in_pair_costs_no_more_than_the_baseline():
    from train.run import FitConfig, build_model

    cost = model_cost()
    config = {"backbone": "cnn10_tiny", "backbone_kwargs": FRONTEND}
    fields = zoom_in(config)
    fit = FitConfig(train="-", out="-", **config).replace(**fields)
    zoom = build_model(fit, 6, RATE, None, CLIP)
    base = build_model(FitConfig(train="-", out="-", backbone_only=True, **config), 6, RATE,
                       None, CLIP)
    g, l = zoom.global_backbone.frontend_config, zoom.local_backbone.frontend_config
    assert l.n_mels > FRONTEND["n_mels"] > g.n_mels
    assert l.hop_length < FRONTEND["hop_length"] < g.hop_length
    pair = sum(cost.multiply_adds(zoom, CLIP).values())
    baseline = sum(cost.multiply_adds(base, CLIP).values())
    assert pair <= baseline
    out = zoom(tf.zeros([1, CLIP]))
    assert out["per_clip"].shape == (1, 2, 6)
