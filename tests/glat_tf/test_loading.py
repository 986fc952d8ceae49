"""glat_tf.loading: the one model loader; --init's variant also takes a bare backbone."""

import pytest

from glat_tf import backbones
from glat_tf.loading import load_backbone_source, load_model


def test_a_bare_backbone_is_an_init_source_but_not_a_model(tmp_path):
    net = backbones.build("cnn6_tiny", num_classes=3)
    net.build((None, 16000))
    net.save(tmp_path / "backbone.keras")  # what the PANNs converter writes
    with pytest.raises(TypeError, match="not a GlatModel or a Baseline"):
        load_model(tmp_path / "backbone.keras")
    source = load_backbone_source(tmp_path / "backbone.keras")
    assert type(source) is type(net) and len(source.weights) == len(net.weights)
    with pytest.raises(ValueError, match="is a folder"):
        load_backbone_source(tmp_path)
