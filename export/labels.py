"""What travels with every export: its label map and its fixed sizes (the model loader is
glat_tf.loading.load_model)."""

from __future__ import annotations

import tensorflow as tf

from glat_tf.data.labels import LabelMap
from glat_tf.model import GlatModel


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
