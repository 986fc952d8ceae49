"""What travels with every export: the model loaded from disk, its label map, its fixed sizes."""

from __future__ import annotations

import os
import pathlib

import keras
import tensorflow as tf

from glat_tf.baseline import BackboneTagger
from glat_tf.data.labels import LabelMap
from glat_tf.model import GlatModel


def load_model(path: str | os.PathLike):
    """A GlatModel or a BackboneTagger (the baseline) from a `.keras` file; anything else
    is refused with the reason."""
    path = pathlib.Path(path)
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
    if not isinstance(model, (GlatModel, BackboneTagger)):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a GlatModel or a "
                        "BackboneTagger")
    return model


def label_rows(labels: LabelMap) -> list[dict]:
    return [{"index": i, "mid": mid, "display_name": name}
            for i, (mid, name) in enumerate(zip(labels.mids, labels.names))]


def model_facts(model, window_samples: int) -> dict:
    """Sizes an exported model is fixed to: rate, window, crop, N, tau, frames of the window.

    A BackboneTagger has no local stream: n_clips 0 and no crop.
    """
    glat = isinstance(model, GlatModel)
    crop = model.window if glat else 0
    if window_samples < crop:
        raise ValueError(f"window_samples={window_samples} is shorter than one crop of tau="
                         f"{model.tau} s ({model.window} samples)")
    frontend = model.global_backbone.frontend_config
    frames = model.global_backbone(tf.zeros([1, window_samples]),
                                   training=False)["framewise_logits"].shape[1]
    return {"backbone": model.global_backbone.preset or type(model.global_backbone).__name__,
            "sample_rate": int(model.sample_rate), "window_samples": int(window_samples),
            "crop_samples": int(crop), "n_clips": int(model.n_clips) if glat else 0,
            "tau": float(model.tau) if glat else 0.0,
            "num_classes": int(model.num_classes), "frames": int(frames),
            "suppress_overlap": model.suppress_overlap if glat else False,
            "frontend": {"n_fft": frontend.n_fft, "hop_length": frontend.hop_length,
                         "n_mels": frontend.n_mels, "fmin": frontend.fmin,
                         "fmax": frontend.fmax}}
