"""Fixtures and helpers shared by the data tests (import the fixtures into a test module to use them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.paths import DATA
R9_WAV = DATA / "R9_ZSCveAHg_7s.wav"
R9_MP3 = DATA / "R9_ZSCveAHg_7s.mp3"


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A 24-train / 12-eval synthetic set, ingested; ensure_demo_shards makes it once per session."""
    from glat_tf.data.demo import ensure_demo_shards

    root = tmp_path_factory.getbasetemp() / "glat_demo"
    return ensure_demo_shards(root, seed=0, n_train=24, n_eval=12, shard_size=8, workers=1)


def write_tiny_shards(folder: Path, clips, shard_size: int, num_classes: int,
                      manifest: bool = False, split: str = "train", index: bool = False,
                      sample_rate: int = 32000) -> str:
    """Write (audio_id, int16 pcm, labels) clips as shards without audio files; returns a glob.

    With manifest=True, a minimal manifest.json (per-shard class counts) is written beside them;
    with index=True it also lists each shard's size, record offsets and labels, as glat-ingest
    does (the index sampler draws from them).
    """
    import tensorflow as tf

    from glat_tf.data import schema

    folder.mkdir(parents=True, exist_ok=True)
    count = -(-len(clips) // shard_size)
    entries = []
    for i in range(count):
        name = f"{split}-{i:05d}-of-{count:05d}.tfrecord"
        part = clips[i * shard_size:(i + 1) * shard_size]
        offsets, at = [], 0
        with tf.io.TFRecordWriter(str(folder / name)) as writer:
            for audio_id, pcm, labels in part:
                record = schema.encode_example(audio_id, np.asarray(pcm, np.int16), sample_rate,
                                               labels)
                writer.write(record)
                offsets.append(at)
                at += len(record) + 16  # TFRecord framing
        counts: dict[str, int] = {}
        for _, _, labels in part:
            for label in labels:
                counts[str(label)] = counts.get(str(label), 0) + 1
        entries.append({"file": name, "num_records": len(part), "class_counts": counts})
        if index:
            entries[-1].update(bytes=at, offsets=offsets,
                               labels=[list(map(int, labels)) for _, _, labels in part])
    if manifest:
        length = len(clips[0][1])
        (folder / "manifest.json").write_text(json.dumps({
            "num_classes": num_classes, "clip_samples": length, "sample_rate": sample_rate,
            "splits": {split: {"compression": "", "shards": entries}}}))
    return str(folder / f"{split}-*.tfrecord")
