"""The per-clip step and the shard writer that both ingest runners run: the local process
pool (ingest.py) and the Apache Beam pipeline (beam_ingest.py)."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from glat_tf.data import storage
from glat_tf.data.decode import ClipError, decode_clip


@dataclasses.dataclass(frozen=True, slots=True)  # slots: 2M rows of AudioSet stay small
class Row:
    audio_id: str
    path: str
    labels: tuple[int, ...]
    stamp: tuple[int, int]  # (bytes, mtime_ns): in the shard fingerprint, so a replaced file is re-read


@dataclasses.dataclass(frozen=True)
class Settings:
    sample_rate: int = 32000
    clip_seconds: float = 10.0
    shard_size: int = 256
    gzip: bool = False

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))


def clip_task(row: Row, settings: Settings):
    """What decode_task needs of a row: (path, rate, samples), small enough to pickle."""
    return row.path, settings.sample_rate, settings.clip_samples


def decode_task(task):
    """The per-clip step of both runners: (path, rate, samples) -> (int16 bytes | None, reason, detail)."""
    try:
        return decode_clip(*task).tobytes(), "", ""
    except ClipError as err:
        return None, err.reason, err.detail


def write_shard(path: str, tmp: str, shard_rows, results, settings: Settings,
                fingerprint: str) -> dict:
    """Write one shard from its rows and their per-clip results (in order); both runners.

    The shard exists under its final name only once complete. Returns its manifest entry;
    uncompressed shards also list each record's byte offset and labels (the index that
    balanced sampling draws from).
    """
    from glat_tf.data import schema  # TensorFlow only in the writing process

    counts, rejects, offsets, labels, at = collections.Counter(), [], [], [], 0
    with schema.tf.io.TFRecordWriter(storage.local(tmp), "GZIP" if settings.gzip else "") as writer:
        for row, (pcm, reason, detail) in zip(shard_rows, results):
            if pcm is None:
                rejects.append((row.audio_id, row.path, reason, detail))
                continue
            record = schema.encode_example(row.audio_id, np.frombuffer(pcm, np.int16),
                                           settings.sample_rate, row.labels)
            writer.write(record)
            offsets.append(at)
            labels.append(list(row.labels))
            at += len(record) + 16  # TFRecord framing: length, its CRC, data, the data's CRC
            counts.update(row.labels)
    storage.rename(tmp, path)
    entry = {"file": storage.basename(path), "fingerprint": fingerprint,
             "num_records": len(offsets), "bytes": storage.size(path),
             "class_counts": {str(k): v for k, v in sorted(counts.items())},
             "rejects": [list(r) for r in rejects]}
    if not settings.gzip:
        entry.update(offsets=offsets, labels=labels)
    return entry
