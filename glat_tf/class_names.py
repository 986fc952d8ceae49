"""Where a model's class names come from: one resolution order for fit, eval and export.

Models written by glat-fit carry their class names (GlatModel/Baseline
`class_names`, `class_mids`). Older files had a `labels.csv` beside them; shards carry
theirs in the manifest or a CSV beside them; a 527-class model without names is AudioSet.
"""

from __future__ import annotations

import os
import tempfile

from glat_tf.data.labels import LabelMap, audioset_labels_csv

AUDIOSET_CLASSES = 527
SIDECAR = "labels.csv"  # beside .keras files written before the names travelled inside


def from_model(model) -> LabelMap | None:
    names, mids = getattr(model, "class_names", ()), getattr(model, "class_mids", ())
    if not names:
        return None
    return LabelMap(tuple(mids) if mids else tuple(names), tuple(names))


def from_manifest(manifest: dict, shard_glob: str | None = None) -> LabelMap | None:
    """A shard set's labels: the manifest's list, else the label CSV ingest put beside it."""
    if manifest.get("labels"):
        entries = manifest["labels"]
        return LabelMap(tuple(e["mid"] for e in entries), tuple(e["display_name"] for e in entries))
    if shard_glob:
        from glat_tf.data import storage
        folder = shard_glob if storage.isdir(shard_glob) else os.path.dirname(shard_glob)
        path = storage.join(folder, manifest.get("labels_csv") or SIDECAR)
        if not storage.exists(path):
            return None
        if not storage.is_url(path):
            return LabelMap.from_csv(path)
        with tempfile.TemporaryDirectory() as tmp:  # an object store's CSV, read once
            local = os.path.join(tmp, SIDECAR)
            storage.copy(path, local)
            return LabelMap.from_csv(local)
    return None


def resolve(num_classes: int, *, labels_csv=None, model=None, model_path=None,
            manifest=None, shard_glob=None) -> tuple[LabelMap, str]:
    """(label map, where it came from) of a model of `num_classes` outputs.

    Order: an explicit `labels_csv`; the names inside `model`; `labels.csv` beside
    `model_path` (files saved before the names travelled inside); the shards' `manifest`;
    AudioSet's list for 527 classes. A count that does not match is an error.
    """
    found = None
    if labels_csv is not None:
        found = LabelMap.from_csv(labels_csv), str(labels_csv)
    elif model is not None and from_model(model) is not None:
        found = from_model(model), "the model"
    elif model_path is not None and os.path.isfile(
            os.path.join(os.path.dirname(os.path.abspath(model_path)), SIDECAR)):
        path = os.path.join(os.path.dirname(os.path.abspath(model_path)), SIDECAR)
        found = LabelMap.from_csv(path), path
    elif manifest is not None and from_manifest(manifest, shard_glob) is not None:
        found = from_manifest(manifest, shard_glob), "the shards' manifest"
    elif num_classes == AUDIOSET_CLASSES:
        found = LabelMap.from_csv(audioset_labels_csv()), audioset_labels_csv()
    if found is None:
        raise ValueError(f"the model has {num_classes} classes, names none of them and no label "
                         "CSV was given: pass --labels CSV (index,mid,display_name)")
    labels, source = found
    if len(labels) != num_classes:
        raise ValueError(f"{source} names {len(labels)} classes but the model outputs "
                         f"{num_classes}")
    return labels, source
