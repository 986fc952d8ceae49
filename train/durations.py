"""Classes grouped by median event duration from an onset/offset list, and mAP per group.

The paper's argument for GL-AT is that pooling over a whole clip misses short events:
these groups show where the local stream helps.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from glat_tf.data.labels import LabelMap

SHORT_SECONDS = 0.5
LONG_SECONDS = 2.0
GROUPS = ("short", "medium", "long")

# Accepted spellings of the three columns: the synthetic sidecar's and AudioSet strong labels'.
_LABEL_COLUMNS = ("mid", "label", "event_label", "display_name")
_ONSET_COLUMNS = ("onset", "start_time_seconds", "start", "onset_seconds")
_OFFSET_COLUMNS = ("offset", "end_time_seconds", "end", "offset_seconds")


def _column(header: list[str], names: tuple[str, ...], path) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    raise ValueError(f"{path}: no column named any of {names}; header is {header}")


def read_event_durations(path: str | os.PathLike, label_map: LabelMap) -> dict[int, list[float]]:
    """{class index: [event durations in seconds]} from a CSV with a header row.

    Labels are MIDs or display names; events of classes outside the label map are ignored.
    """
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        rows = list(csv.reader(f, delimiter=delimiter))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = rows[0]
    label_i = _column(header, _LABEL_COLUMNS, path)
    onset_i = _column(header, _ONSET_COLUMNS, path)
    offset_i = _column(header, _OFFSET_COLUMNS, path)
    durations: dict[int, list[float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            onset, offset = float(row[onset_i]), float(row[offset_i])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{line}: onset/offset must be numbers, got {row}") from None
        if offset < onset:
            raise ValueError(f"{path}:{line}: offset {offset} is before onset {onset}")
        index = label_map.lookup(row[label_i])
        if index is not None:
            durations.setdefault(index, []).append(offset - onset)
    if not durations:
        raise ValueError(f"{path}: no event matches a class of the label map")
    return durations


def group_of(median_seconds: float) -> str:
    if median_seconds < SHORT_SECONDS:
        return "short"
    return "long" if median_seconds > LONG_SECONDS else "medium"


def duration_groups(path, label_map: LabelMap, ap: dict) -> dict:
    """{group: {"classes": [names], "median_seconds": [..], "mAP": {stream: value}}}.

    `ap` maps each stream to per-class AP (L,); NaN APs (no positive) are left out of a mean.
    """
    medians = {i: float(np.median(d)) for i, d in read_event_durations(path, label_map).items()}
    out = {}
    for group in GROUPS:
        members = sorted(i for i, m in medians.items() if group_of(m) == group)
        if not members:
            continue
        out[group] = {
            "classes": [label_map.names[i] for i in members],
            "median_seconds": [round(medians[i], 3) for i in members],
            "mAP": {s: _nanmean(np.asarray(v)[members]) for s, v in ap.items()},
        }
    return out


def _nanmean(values: np.ndarray) -> float | None:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else None
