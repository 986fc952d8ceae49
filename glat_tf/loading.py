"""The one model loader every command uses: a `.keras` file written by glat-fit (or the
PANNs converter) -> a GlatModel or a Baseline, anything else refused with the reason."""

from __future__ import annotations

import os
import pathlib

import keras

from glat_tf.backbones.base import Backbone
from glat_tf.baseline import Baseline
from glat_tf.model import GlatModel

TAGGERS = (GlatModel, Baseline)


def load_model(path: str | os.PathLike, kinds: tuple = TAGGERS):
    """A GlatModel or a Baseline (the baseline) from a `.keras` file; anything else
    is refused with the reason (a folder, another format, another class). `kinds` widens
    the classes accepted: glat-fit --init also takes a bare Backbone (a PANNs conversion)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a .keras model file (a SavedModel or a "
                         "LiteRT export folder is not trained further or exported again)")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.suffix != ".keras":
        raise ValueError(f"model must be a .keras file written by glat-fit, got {path}")
    try:
        model = keras.models.load_model(path)
    except (ValueError, TypeError, OSError) as error:
        # Keras appends the whole config to "could not locate class": the first line says it.
        raise ValueError(f"{path} is not a model glat-tf can load: "
                         f"{str(error).splitlines()[0][:300]}") from None
    if not isinstance(model, kinds):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a "
                        f"{' or a '.join(k.__name__ for k in kinds)}")
    return model


def load_backbone_source(path: str | os.PathLike):
    """What glat-fit --init copies weights from: a tagger or a bare Backbone."""
    return load_model(path, TAGGERS + (Backbone,))
