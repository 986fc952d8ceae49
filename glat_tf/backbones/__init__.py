"""Waveform-in audio tagging backbones, looked up by name.

    from glat_tf import backbones
    backbones.names()                       # ['cnn10', 'cnn10_tiny', ...]
    net = backbones.build("cnn10", num_classes=527)
    out = net(waveform)                     # dict: clipwise_logits, framewise_logits, features, embedding
"""

from glat_tf.backbones.registry import add_preset, build, get, names, register

# Importing a family module registers its presets.
from glat_tf.backbones import atsca, cnn, mobilenet, resnet, talnet  # noqa: E402,F401
from glat_tf.backbones.base import Backbone  # noqa: E402

__all__ = ["Backbone", "add_preset", "build", "get", "names", "register"]
