"""ResNet, MobileNetV2, TALNet, AT-SCA: published sizes, output contract, blocks, LiteRT."""

import numpy as np
import pytest
import tensorflow as tf

from glat_tf import backbones
from glat_tf.backbones.atsca import ScaConvBlock
from glat_tf.backbones.resnet import BasicBlock, Bottleneck
from tests.harness import check

LOGITS = ("clipwise_logits", "framewise_logits")  # the outputs LiteRT must reproduce

PUBLISHED_PARAMS = {"resnet22": 63_675_087, "resnet38": 73_783_247, "resnet54": 104_318_159,
                    "mobilenetv2": 4_075_343, "talnet": 9_980_527}
TINY_FRAMES_10S = {"mobilenetv2_tiny": 31, "resnet38_tiny": 31, "talnet_tiny": 100,
                   "atsca_tiny": 62}


def trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_equal_published(name):
    net = backbones.build(name, num_classes=527)
    net.build((None, 32000))  # one forward pass on 1 s creates every variable
    assert trainable_params(net) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TINY_FRAMES_10S))
def test_output_contract_and_round_trip(name):
    net = backbones.build(name, num_classes=7)
    check.run_backbone_test(net, (tf.random.normal([2, 32000], stddev=0.1),),
                            {"clipwise_logits": (2, 7), "embedding": (2, None)}, "backbone",
                            variable_inputs=[(tf.random.normal([1, 48000], stddev=0.1),)])
    frames = TINY_FRAMES_10S[name]  # T' of a 10 s clip, as the class docstrings say
    out = net(tf.random.normal([1, 320000], stddev=0.1), training=False)
    assert out["framewise_logits"].shape == (1, frames, 7)
    assert out["features"].shape[:2] == (1, frames)


@pytest.mark.parametrize("name", ["mobilenetv2_tiny", "talnet_tiny"])
def test_usable_as_both_glat_streams(name):
    from glat_tf.model import GlatModel
    model = GlatModel(backbone=name, num_classes=6, n_clips=2, tau=1.0)
    out = model(tf.random.normal([2, 48000], stddev=0.1), training=False)
    assert out["fused"].shape == (2, 6) and out["clip_starts"].shape == (2, 2)
    assert np.all(np.isfinite(out["fused"]))


def test_talnet_pools_frames_by_linear_softmax():
    net = backbones.build("talnet_tiny", num_classes=5)
    out = net(tf.random.normal([2, 64000], stddev=0.1), training=False)
    frame_prob = sigmoid(out["framewise_logits"].numpy().astype(np.float64))
    assert frame_prob.min() >= 1e-7 * 0.99 and frame_prob.max() <= 1 - 1e-7 * 0.99
    expected = (frame_prob ** 2).sum(axis=1) / frame_prob.sum(axis=1)
    np.testing.assert_allclose(sigmoid(out["clipwise_logits"].numpy()), expected, rtol=1e-5)
    # bn0 standardises without an affine part: the original had none to count.
    assert net.frontend.bn0.gamma is None and net.frontend.bn0.beta is None


def test_talnet_unrolled_gru_is_the_same_function_and_converts_without_control_flow():
    net = backbones.build("talnet_tiny", num_classes=5)
    wave = np.random.default_rng(0).normal(0, 0.1, (1, 32000)).astype(np.float32)
    net.build((None, 32000))
    unrolled = net.with_unrolled_gru()
    assert unrolled.unroll_gru and not net.unroll_gru
    looped = net(wave, training=False)
    np.testing.assert_allclose(unrolled(wave, training=False)["features"], looped["features"],
                               atol=1e-6)
    ops, _ = check.run_export_test(lambda w: unrolled(w, training=False), wave, unrolled,
                                   {k: looped[k] for k in LOGITS}, "backbone")
    assert "WHILE" not in ops


@pytest.mark.parametrize("name", ["mobilenetv2_tiny", "resnet38_tiny", "atsca_tiny"])
def test_converts_to_litert_builtins(name):
    net = backbones.build(name, num_classes=5)
    wave = np.random.default_rng(0).normal(0, 0.1, (1, 32000)).astype(np.float32)
    net.build((None, 32000))
    keras_out = net(wave, training=False)
    check.run_export_test(lambda w: net(w, training=False), wave, net,
                          {k: keras_out[k] for k in LOGITS}, "backbone")


def test_fresh_residual_blocks_start_as_identity_and_downsample_by_pooling():
    x = tf.random.normal([1, 10, 8, 16])
    # The last BN's gamma starts at 0 (as PANNs), so the residual branch adds nothing.
    np.testing.assert_allclose(BasicBlock(16)(x, training=False), tf.nn.relu(x), atol=1e-6)
    assert BasicBlock(32, stride=2, downsample=True)(x).shape == (1, 5, 4, 32)
    assert Bottleneck(8, downsample=True)(x).shape == (1, 10, 8, 32)
    resnet54 = backbones.build("resnet54")
    first = resnet54.stages[0][0]
    assert isinstance(first, Bottleneck) and first.downsample and first.stride == 1


def test_mobilenetv2_follows_panns_settings():
    net = backbones.build("mobilenetv2")
    strides = [b.stride for b in net.blocks]
    assert len(net.blocks) == 17 and strides.count(2) == 4
    assert [b.filters for b in net.blocks if b.stride == 2] == [24, 32, 64, 96]  # 160 at stride 1
    assert sum(b.residual for b in net.blocks) == 10


def test_atsca_attention_equals_numpy():
    block = ScaConvBlock(32)
    x = np.random.default_rng(5).normal(0, 1, (2, 9, 6, 32)).astype(np.float32)
    block.build(x.shape[:-1] + (1,))
    block.temporal.bias.assign([0.3])  # non-zero biases, so the test sees them used
    block.spatial.bias.assign([-0.2])
    got = block.attend(tf.constant(x)).numpy()
    squeeze, excite = block.squeeze.kernel.numpy(), block.excite.kernel.numpy()
    xc = x * sigmoid(np.maximum(x.mean(axis=(1, 2)) @ squeeze, 0) @ excite)[:, None, None, :]
    pooled = np.stack([xc.mean(-1), xc.max(-1)], axis=-1)  # (batch, T, F, 2)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(pooled, [(0, 0), (3, 3), (3, 3), (0, 0)]), (7, 7), axis=(1, 2))
    global_mask = sigmoid(np.einsum("btfcij,ijco->btfo", windows, block.spatial.kernel.numpy())
                          + block.spatial.bias.numpy())
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(xc.mean(axis=2), [(0, 0), (1, 1), (0, 0)]), 3, axis=1)  # (batch, T, C, 3)
    temporal_mask = sigmoid(np.einsum("btci,ico->bto", windows, block.temporal.kernel.numpy())
                            + block.temporal.bias.numpy())
    expected = xc * (1 + global_mask * temporal_mask[:, :, None, :])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
