"""What travels with every export: the model loaded from disk, its label map, its fixed sizes."""

from __future__ import annotations

import os
import pathlib

import keras
import tensorflow as tf

from glat_tf.data.labels import LabelMap, audioset_labels_csv
from glat_tf.model import GlatModel

AUDIOSET_CLASSES = 527


def load_model(path: str | os.PathLike) -> GlatModel:
    """A GlatModel from a `.keras` file; anything else is refused with the reason."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.suffix != ".keras":
        raise ValueError(f"model must be a .keras file saved by GlatModel.save, got {path}")
    model = keras.models.load_model(path)
    if not isinstance(model, GlatModel):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a GlatModel: "
                        "export needs both streams and the selection")
    return model


def resolve_labels(num_classes: int, labels_csv=None, model_path=None) -> tuple[LabelMap, str]:
    """The label map and where it came from.

    Order: `labels_csv`; `labels.csv` beside the model file; AudioSet's packaged CSV
    when the model has 527 classes. Otherwise there is nothing to name the outputs by.
    """
    if labels_csv is not None:
        source = str(labels_csv)
    elif model_path is not None and (pathlib.Path(model_path).parent / "labels.csv").is_file():
        source = str(pathlib.Path(model_path).parent / "labels.csv")
    elif num_classes == AUDIOSET_CLASSES:
        source = audioset_labels_csv()
    else:
        raise ValueError(f"the model has {num_classes} classes and no label CSV was given: "
                         "pass --labels CSV (index,mid,display_name) or put labels.csv "
                         "beside the .keras file")
    labels = LabelMap.from_csv(source)
    if len(labels) != num_classes:
        raise ValueError(f"{source} names {len(labels)} classes but the model outputs "
                         f"{num_classes}")
    return labels, source


def label_rows(labels: LabelMap) -> list[dict]:
    return [{"index": i, "mid": mid, "display_name": name}
            for i, (mid, name) in enumerate(zip(labels.mids, labels.names))]


def model_facts(model: GlatModel, window_samples: int) -> dict:
    """Sizes an exported model is fixed to: rate, window, crop, N, tau, frames of the window."""
    if window_samples < model.window:
        raise ValueError(f"window_samples={window_samples} is shorter than one crop of tau="
                         f"{model.tau} s ({model.window} samples)")
    frontend = model.global_backbone.frontend
    frames = model.global_backbone(tf.zeros([1, window_samples]),
                                   training=False)["framewise_logits"].shape[1]
    return {"backbone": model.backbone, "sample_rate": int(model.sample_rate),
            "window_samples": int(window_samples), "crop_samples": int(model.window),
            "n_clips": int(model.n_clips), "tau": float(model.tau),
            "num_classes": int(model.num_classes), "frames": int(frames),
            "suppress_overlap": bool(model.suppress_overlap),
            "frontend": {"n_fft": frontend.n_fft, "hop_length": frontend.hop_length,
                         "n_mels": frontend.n_mels, "fmin": frontend.fmin,
                         "fmax": frontend.fmax}}
