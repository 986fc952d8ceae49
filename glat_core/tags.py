"""The one tag record: what every tagging path (glat-tag CSV and JSON lines, the edge stream's
JSON lines, the Python Tagger) says about one tagged window of audio.

    {"file": "street.wav", "start_seconds": 0.0, "end_seconds": 10.0,
     "top": [{"label": "Speech", "mid": "/m/09x0r", "fused": 0.81, "global": 0.77, "local": 0.86}],
     "clips": [{"class": "Speech", "mid": "/m/09x0r", "start_seconds": 4.1, "end_seconds": 7.1}]}

`clips` are the tau-second crops GL-AT chose (the model's `clip_starts` and
`selected_classes`), in seconds from the recording's start. Optional keys: `partial` and
`final` (the stream's lines), `nan_samples` (non-finite input samples replaced by 0).
A model without a local stream (the baseline) has no `local` score and no clips.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DIGITS = 5  # scores in records
TIME_DIGITS = 3  # seconds in records (1 ms)


def window_record(labels, fused, global_, local, clip_starts, selected_classes, *,
                  start: int, end: int, sample_rate: int, crop_samples: int, top_k: int = 5,
                  file: str | None = None, **extra) -> dict:
    """The record of one window of audio [start, end) (samples of the recording).

    `labels` are (name, mid) pairs; `fused`, `global_`, `local` (L,) scores (`local` None
    without a local stream); `clip_starts` (N,) samples from the recording's start and
    `selected_classes` (N,). Clips are cut to the window's audio; none is ever zero-length.
    `extra` keys (partial, final, nan_samples) are written when truthy.
    """
    rate = float(sample_rate)
    order = np.argsort(-np.asarray(fused), kind="stable")[:max(0, top_k)]
    top = []
    for c in order.tolist():
        entry = {"label": labels[c][0], "mid": labels[c][1],
                 "fused": round(float(fused[c]), DIGITS), "global": round(float(global_[c]), DIGITS)}
        if local is not None:
            entry["local"] = round(float(local[c]), DIGITS)
        top.append(entry)
    clips = []
    for begin, cls in zip(np.asarray(clip_starts).tolist(), np.asarray(selected_classes).tolist()):
        first, last = max(begin, start), min(begin + crop_samples, end)
        if round(last / rate, TIME_DIGITS) > round(first / rate, TIME_DIGITS):
            clips.append({"class": labels[int(cls)][0], "mid": labels[int(cls)][1],
                          "start_seconds": round(first / rate, TIME_DIGITS),
                          "end_seconds": round(last / rate, TIME_DIGITS)})
    record = {} if file is None else {"file": str(file)}
    record.update({"start_seconds": round(start / rate, TIME_DIGITS),
                   "end_seconds": round(end / rate, TIME_DIGITS), "top": top, "clips": clips})
    record.update({k: v for k, v in extra.items() if v})
    return record


def csv_row(record: dict) -> dict:
    """A record as one flat CSV row: label_k, mid_k, fused_k, global_k, local_k per rank,
    and the clips as `start-end:class` joined by `;`."""
    row = {key: record.get(key, "") for key in ("file", "start_seconds", "end_seconds")}
    for rank, item in enumerate(record["top"], 1):
        for key in ("label", "mid", "fused", "global", "local"):
            row[f"{key}_{rank}"] = item.get(key, "")
    row["clips"] = ";".join(f"{c['start_seconds']:.3f}-{c['end_seconds']:.3f}:{c['class']}"
                            for c in record["clips"])
    if record.get("nan_samples"):
        row["nan_samples"] = record["nan_samples"]
    return row


@dataclasses.dataclass
class Tags:
    """One recording's tagged windows, as arrays (what `Tagger.tag` returns).

    `window_starts`, `window_ends` (W,) and `clip_starts` (W, N) are int samples from the
    recording's start at `sample_rate` (as the model's own `clip_starts`);
    `selected_classes` (W, N); `fused`, `global_`, `local` (W, L) probabilities (`local`
    equals `global_` for a model without a local stream, whose N is 0); `framewise` one
    (frames, L) array of frame activations per window; `labels` (name, mid) pairs;
    `nan_samples` non-finite samples replaced by 0 while reading.
    """

    labels: list
    sample_rate: int
    crop_samples: int
    window_starts: np.ndarray
    window_ends: np.ndarray
    fused: np.ndarray
    global_: np.ndarray
    local: np.ndarray
    clip_starts: np.ndarray
    selected_classes: np.ndarray
    framewise: list
    nan_samples: int = 0
    has_local: bool = True

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.labels]

    def record(self, window: int, top_k: int = 5, file=None) -> dict:
        return window_record(
            self.labels, self.fused[window], self.global_[window],
            self.local[window] if self.has_local else None, self.clip_starts[window],
            self.selected_classes[window], start=int(self.window_starts[window]),
            end=int(self.window_ends[window]), sample_rate=self.sample_rate,
            crop_samples=self.crop_samples, top_k=top_k, file=file,
            nan_samples=self.nan_samples if window == 0 else 0)

    def records(self, top_k: int = 5, file=None):
        for window in range(len(self.window_starts)):
            yield self.record(window, top_k, file)
