"""Balanced draws by record index: PANNs' BalancedTrainSampler order, the right records, damaged records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glat_tf.data import ingest, pipeline
from glat_tf.data.sampler import BalancedTrainSampler

# Multi-label set: clip i's pcm is the constant i, so a drawn waveform names its clip.
LABELS = [[0], [0, 1], [1], [1], [2], [3], [3], [3], [3], [0, 3]]


def _indexed_shards(folder: Path, labels=LABELS, shard_size: int = 4, samples: int = 16) -> str:
    """Shards written by ingest's own writer, so the manifest carries the record index."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = ingest.Settings(sample_rate=32000, clip_seconds=samples / 32000, shard_size=shard_size)
    count = -(-len(labels) // shard_size)
    entries = []
    for s in range(count):
        part = range(s * shard_size, min(len(labels), (s + 1) * shard_size))
        rows = [ingest.Row(f"c{i:03d}", "-", tuple(labels[i]), (0, 0)) for i in part]
        results = [(np.full(samples, i, np.int16).tobytes(), "", "") for i in part]
        path = str(folder / f"train-{s:05d}-of-{count:05d}.tfrecord")
        entries.append(ingest.write_shard(path, path + ".tmp", rows, results, settings, "f"))
    (folder / "manifest.json").write_text(json.dumps({
        "num_classes": 4, "clip_samples": samples, "sample_rate": 32000,
        "splits": {"train": {"compression": "", "shards": entries}}}))
    return str(folder / "train-*.tfrecord")


def _drawn_clips(pattern, batches, batch_size=4, **kwargs):
    ds = pipeline.train_dataset(pattern, batch_size, 4, seed=0, **kwargs)
    waves = [w.numpy() for w, _ in ds.take(batches)]
    return np.round(np.stack(waves) * 32768).astype(int)[..., 0]  # (batches, batch) clip ids


def test_every_round_draws_each_class_once_and_the_marginal_is_exact(tmp_path):
    pattern = _indexed_shards(tmp_path)
    assert "offsets" in json.loads((tmp_path / "manifest.json").read_text())[
        "splits"]["train"]["shards"][0]
    rounds = _drawn_clips(pattern, 300)  # batch 4 = one round of the 4 classes
    for clips in rounds[:50]:  # each round's clips cover all 4 classes
        assert set().union(*(LABELS[c] for c in clips)) == {0, 1, 2, 3}
    observed = np.bincount(rounds.ravel(), minlength=len(LABELS)) / rounds.size
    n = np.bincount([c for ls in LABELS for c in ls])
    expected = np.array([sum(1 / n[c] for c in ls) for ls in LABELS]) / 4  # sum 1/(L n_c)
    np.testing.assert_allclose(observed, expected, rtol=0.1)


def test_sampler_cycles_through_each_class_before_repeating():
    indptr = np.array([0, 1, 2, 3, 4, 5])
    classes = np.array([0, 0, 0, 1, 1])  # class 0: clips 0-2, class 1: clips 3-4
    draws = BalancedTrainSampler(indptr, classes, 3, seed=5).draws(12)
    assert sorted(draws[:2] < 3) == [False, True]  # one of each class per round
    of_zero = [d for d in draws if d < 3]
    assert sorted(of_zero[:3]) == sorted(of_zero[3:]) == [0, 1, 2]
    assert np.array_equal(BalancedTrainSampler(indptr, classes, 3, seed=5).draws(12), draws)


def test_a_damaged_record_is_named_or_skipped(tmp_path):
    pattern = _indexed_shards(tmp_path)
    shard = sorted(tmp_path.glob("train-*.tfrecord"))[1]
    offsets = json.loads((tmp_path / "manifest.json").read_text())[
        "splits"]["train"]["shards"][1]["offsets"]
    data = bytearray(shard.read_bytes())
    data[offsets[1]] ^= 0x40  # that record's length header
    shard.write_bytes(bytes(data))
    with pytest.raises(pipeline.READ_ERRORS) as info:
        _drawn_clips(pattern, 100)
    assert pipeline.input_error_line(info.value).startswith(
        f"damaged shard {shard}: record 1 (byte {offsets[1]}) is unreadable (")
    before = pipeline.DAMAGE.skipped
    clips = _drawn_clips(pattern, 100, skip_corrupt=True)
    assert 5 not in clips and pipeline.DAMAGE.skipped > before  # clip 5 is that record


def test_a_ranged_read_checks_both_crcs_as_tensorflow_does(tmp_path):
    """unframe() accepts what TensorFlow's writer framed and names each kind of damage."""
    import tensorflow as tf

    from glat_tf.data.sampler import unframe
    path = tmp_path / "one.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"a record's bytes")
    framed = path.read_bytes()
    assert unframe(framed, len(framed)) == (b"a record's bytes", None)
    assert unframe(framed[:-1], len(framed))[1] == "the shard ends inside it"
    assert unframe(framed, len(framed) + 1)[1] == "the shard ends inside it"
    header = bytearray(framed)
    header[9] ^= 1  # the length's CRC
    assert unframe(bytes(header), len(framed)) == (b"", "length CRC mismatch")
    data = bytearray(framed)
    data[14] ^= 1  # a data byte
    assert unframe(bytes(data), len(framed)) == (b"", "data CRC mismatch")
    longer = (len(framed) - 15).to_bytes(8, "little") + framed[8:]
    assert unframe(longer, len(framed))[1] == "framing differs from the index"
