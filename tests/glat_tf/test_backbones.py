"""Registry behaviour, PANNs parameter counts, the output contract, save/load, LiteRT."""

import numpy as np
import pytest
import tensorflow as tf

from glat_tf import backbones
from glat_tf.backbones.cnn import Cnn
from tests.harness import check

PANNS_PARAMS = {"cnn6": 4_837_455, "cnn10": 5_219_279, "cnn14": 80_753_615,
                "mobilenetv1": 4_796_303}


def trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize("name", sorted(PANNS_PARAMS))
def test_parameter_counts_equal_panns(name):
    net = backbones.build(name, num_classes=527)
    net.build((None, 32000))
    assert trainable_params(net) == PANNS_PARAMS[name]


def test_registry_refuses_duplicates_and_unknown_names():
    assert {"cnn6", "cnn10", "cnn14", "mobilenetv1", "cnn10_tiny"} <= set(backbones.names())
    with pytest.raises(ValueError, match="already registered"):
        backbones.add_preset("cnn10", Cnn)
    with pytest.raises(ValueError, match="backbone='nope'"):
        backbones.build("nope")


@pytest.mark.parametrize("name,frames", [("cnn6_tiny", 62), ("cnn10_tiny", 62),
                                         ("cnn14_tiny", 31), ("mobilenetv1_tiny", 31)])
def test_output_contract(name, frames):
    net = backbones.build(name, num_classes=7)
    wave = tf.random.normal([2, 320000], stddev=0.1)
    check.run_backbone_test(
        net, (wave,), {"clipwise_logits": (2, 7), "framewise_logits": (2, frames, 7),
                       "features": (2, frames, None), "embedding": (2, None)}, "backbone",
        variable_inputs=[(tf.random.normal([1, 32000], stddev=0.1),)])


def test_training_mode_is_stochastic_and_inference_is_not():
    net = backbones.build("cnn10_tiny", num_classes=5)
    wave = tf.random.normal([1, 64000], stddev=0.1)
    a, b = (net(wave, training=False)["clipwise_logits"] for _ in range(2))
    np.testing.assert_array_equal(a, b)
    c, d = (net(wave, training=True)["clipwise_logits"] for _ in range(2))
    assert not np.allclose(c, d)


def test_cnn_converts_to_litert_builtins():
    net = backbones.build("cnn10_tiny", num_classes=5)
    wave = np.random.default_rng(0).normal(0, 0.1, (1, 96000)).astype(np.float32)
    net.build((None, 96000))
    keras_out = net(wave, training=False)
    check.run_export_test(lambda w: net(w, training=False), wave, net,
                          {k: keras_out[k] for k in ("clipwise_logits", "framewise_logits")},
                          "backbone")
