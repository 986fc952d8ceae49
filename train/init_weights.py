"""`--init PATH`: starting weights for both streams from a `.keras` model or a PANNs `.pth` checkpoint."""

from __future__ import annotations

import os

import numpy as np

from glat_tf.base_model import TaggingModel
from glat_tf.loading import load_backbone_source

HEAD_LAYER = "fc_audioset"  # the classifier; its shape follows the label set


def streams(model) -> dict:
    """The backbones of a GlatModel (`global`, `local`), a Baseline (`global`) or a bare backbone."""
    if not isinstance(model, TaggingModel):
        return {"global": model}
    return {"global": model.global_backbone,
            **({"local": model.local_backbone} if model.n_clips else {})}


def copy_backbone(source, target) -> list[str]:
    """Assigns source's weights to target (same architecture); returns the skipped head weights.

    The classifier is skipped, not an error, when only its class count differs:
    that is fine-tuning a pretrained backbone on another label set.
    """
    src, dst = source.weights, target.weights
    if len(src) != len(dst):
        raise ValueError(f"cannot copy {source.name} ({len(src)} weights) into {target.name} "
                         f"({len(dst)} weights): not the same backbone preset")
    skipped = []
    for s, d in zip(src, dst):
        if tuple(s.shape) == tuple(d.shape):
            d.assign(np.asarray(s))
        elif HEAD_LAYER in d.path:
            skipped.append(d.path)
        else:
            raise ValueError(f"weight {d.path} has shape {tuple(d.shape)} but the init model's "
                             f"{s.path} has {tuple(s.shape)}: not the same backbone preset")
    return skipped


def load_init(model, path: str) -> str:
    """Loads `path` into every stream of `model` (built); returns a one-line description.

    A `.keras` GlatModel gives each stream its own stream's weights; a baseline or a
    bare backbone gives its one backbone to both streams. A `.pth` goes through the
    PANNs importer.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init {path}: no such file")
    targets = streams(model)
    if path.endswith(".pth"):
        return _load_panns(model, targets, path)
    if not path.endswith(".keras"):
        raise ValueError(f"--init {path}: expected a .keras model or a PANNs .pth checkpoint")
    source = streams(load_backbone_source(path))
    skipped = []
    for name, target in targets.items():
        skipped += copy_backbone(source.get(name, source["global"]), target)
    note = f" (classifier left new: {len(skipped)} weights of another class count)" if skipped else ""
    return f"initialised {', '.join(targets)} stream(s) from {path}{note}"


def _load_panns(model, targets: dict, path: str) -> str:
    try:  # imported here: only this one option needs the importer
        from glat_tf.convert import panns
    except ImportError as exc:
        raise RuntimeError(f"--init {path}: the PANNs importer is unavailable ({exc})") from exc
    state_dict = panns.load_panns_checkpoint(path)
    head = {k: v for k, v in state_dict.items() if k.startswith(f"{HEAD_LAYER}.")}
    new_labels = bool(head) and head[f"{HEAD_LAYER}.bias"].shape[0] != model.num_classes
    if new_labels:
        # Fine-tuning on another label set: everything but the classifier must load.
        state_dict = {k: v for k, v in state_dict.items() if k not in head}
    lines = []
    for name, backbone in targets.items():
        report = panns.import_into_backbone(backbone, state_dict, strict=not new_labels)
        others = [k for k in report.missing + report.unexpected if HEAD_LAYER not in k]
        if others:
            raise ValueError(f"--init {path}: {report.summary()}")
        lines.append(f"{name} stream: {report.summary().splitlines()[0]}")
    note = f" (classifier left new for {model.num_classes} classes)" if new_labels else ""
    return f"initialised from {path}{note}: " + "; ".join(lines)
