"""tf.data pipeline: balanced sampling, exactly-once evaluation, mixup, crop, tf.distribute."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.data_fixtures import small_demo, write_tiny_shards  # noqa: F401 (fixture)
from glat_tf.data import pipeline

# An imbalanced single-label set: class k has COUNTS[k] clips (ratio 60:1).
COUNTS = [1, 2, 5, 12, 30, 60]


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    clips, n = [], 0
    for label, count in enumerate(COUNTS):
        for _ in range(count):
            clips.append((f"c{n:03d}", np.full(16, label * 1000, np.int16), [label]))
            n += 1
    order = np.random.default_rng(0).permutation(len(clips))  # classes spread over shards
    return write_tiny_shards(tmp_path_factory.mktemp("imb"), [clips[i] for i in order],
                             shard_size=20, num_classes=len(COUNTS), manifest=True)


def _class_frequencies(ds, batches):
    labels = np.concatenate([y.numpy() for _, y in ds.take(batches)])
    return labels.sum(0) / labels.shape[0]


def test_balanced_draws_are_uniform_over_classes(imbalanced):
    ds = pipeline.train_dataset(imbalanced, 100, len(COUNTS), seed=1, shuffle_buffer=256)
    freq = _class_frequencies(ds, 100)  # 10,000 draws
    uniform = 1 / len(COUNTS)
    assert np.all(np.abs(freq - uniform) < 0.2 * uniform), freq
    plain = pipeline.train_dataset(imbalanced, 100, len(COUNTS), balanced=False, seed=1)
    freq = _class_frequencies(plain, 20)
    assert freq[0] < 0.03 and freq[-1] > 0.4, freq  # the test above could fail


def test_multi_label_marginal_matches_balanced_train_sampler(tmp_path):
    """BalancedTrainSampler draws clip x with p(x) = sum_{c in x} 1 / (L n_c)."""
    labels = [[0], [0, 1], [1], [1], [2]]  # n = (2, 3, 1)
    clips = [(f"x{i}", np.full(4, i, np.int16), y) for i, y in enumerate(labels)]
    pattern = write_tiny_shards(tmp_path, clips, 2, 3, manifest=True)
    waves = np.concatenate([w.numpy() for w, _ in pipeline.train_dataset(
        pattern, 50, 3, seed=0, shuffle_buffer=64).take(100)])
    observed = np.bincount(np.round(waves[:, 0] * 32768).astype(int), minlength=5) / len(waves)
    expected = np.array([1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3, 1]) / 3
    np.testing.assert_allclose(observed, expected, rtol=0.1)


def test_explicit_class_counts_replace_the_manifest(imbalanced):
    # Counts claiming class 5 is rare make it over-drawn: the argument is really used.
    counts = np.array(COUNTS)
    counts[5] = 1
    ds = pipeline.train_dataset(imbalanced, 100, len(COUNTS), seed=2, class_counts=counts)
    assert _class_frequencies(ds, 20)[5] > 0.5


def test_same_seed_same_batches(imbalanced):
    first = [pipeline.train_dataset(imbalanced, 8, len(COUNTS), seed=4, mixup_alpha=0.4)
             .take(3) for _ in range(2)]
    for (wa, ya), (wb, yb) in zip(*first):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_mixup_mixes_waveforms_and_labels_alike(imbalanced):
    ds = pipeline.train_dataset(imbalanced, 16, len(COUNTS), seed=3, mixup_alpha=0.5)
    wave, labels = next(iter(ds))
    wave, labels = wave.numpy(), labels.numpy()
    # Clip of class k is the constant k*1000/32768: a mix is sum_k label_k * k*1000/32768.
    expected = labels @ (np.arange(len(COUNTS)) * 1000 / 32768)
    np.testing.assert_allclose(wave, np.repeat(expected[:, None], 16, 1), atol=1e-5)
    np.testing.assert_allclose(labels.sum(1), 1, atol=1e-5)
    assert np.any((labels > 0.01) & (labels < 0.99))


def test_random_crop_takes_contiguous_windows(tmp_path):
    clips = [(f"r{i}", np.arange(100, dtype=np.int16) + 1000 * i, [i % 2]) for i in range(6)]
    pattern = write_tiny_shards(tmp_path, clips, 3, 2, manifest=True)
    ds = pipeline.train_dataset(pattern, 6, 2, crop_samples=10, seed=0)
    starts = set()
    for wave, _ in ds.take(5):
        pcm = np.round(wave.numpy() * 32768).astype(int)
        assert pcm.shape == (6, 10) and np.all(np.diff(pcm, axis=1) == 1)
        starts |= set(pcm[:, 0] % 1000)
    assert len(starts) > 5 and max(starts) <= 90
    with pytest.raises(ValueError, match="crop_samples"):
        pipeline.train_dataset(pattern, 6, 2, crop_samples=101)


def test_demo_train_batches(small_demo):  # noqa: F811
    ds = pipeline.train_dataset(small_demo["train"], 4, 10, seed=0, shuffle_buffer=16)
    assert ds.element_spec[0].shape == (4, 320000) and ds.element_spec[1].shape == (4, 10)
    wave, labels = next(iter(ds))
    assert wave.dtype == tf.float32 and -1 <= wave.numpy().min() and wave.numpy().max() < 1
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0} and labels.numpy().sum(1).min() >= 1


def test_eval_yields_every_clip_exactly_once_in_order(small_demo):  # noqa: F811
    runs = []
    for _ in range(2):
        ids, sizes = [], []
        for wave, labels, batch_ids in pipeline.eval_dataset(small_demo["eval"], 5, 10, with_ids=True):
            ids += [i.decode() for i in batch_ids.numpy()]
            sizes.append(wave.shape[0])
            assert wave.shape[1] == 320000 and labels.shape[1] == 10
        runs.append(ids)
    assert sizes == [5, 5, 2]  # no dropped remainder
    assert runs[0] == runs[1] == sorted(set(runs[0])) and len(runs[0]) == 12
    for pipelines in (2, 3):  # 2 eval shards: split by file, then (3 > 2) by record
        parts = []
        for index in range(pipelines):
            context = tf.distribute.InputContext(pipelines, index, pipelines)
            parts += [i.decode() for *_, b in pipeline.eval_dataset(
                small_demo["eval"], 6, 10, with_ids=True, input_context=context) for i in b.numpy()]
        assert sorted(parts) == runs[0]


def test_input_context_gives_per_replica_batches(imbalanced):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    ds = pipeline.train_dataset(imbalanced, 8, len(COUNTS), seed=0, input_context=context)
    assert next(iter(ds))[0].shape == (4, 16)


def test_distribute_datasets_from_function(imbalanced):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.train_dataset(imbalanced, 8, len(COUNTS), seed=0, input_context=ctx))
    wave, labels = next(iter(dist))
    total = strategy.run(lambda w, y: tf.reduce_sum(y), args=(wave, labels))
    assert float(strategy.reduce("SUM", total, axis=None)) == 8.0


def test_read_manifest_and_bad_patterns(small_demo, tmp_path):  # noqa: F811
    manifest = pipeline.read_manifest(small_demo["train"])
    assert manifest["splits"]["eval"]["num_clips"] == 12
    assert pipeline.read_manifest(small_demo["shard_dir"]) == manifest
    with pytest.raises(ValueError, match="is a folder"):
        pipeline.eval_dataset(small_demo["shard_dir"], 4, 10)
    with pytest.raises(ValueError, match="no shard files"):
        pipeline.train_dataset(str(tmp_path / "nothing-*.tfrecord"), 4, 10)
    with pytest.raises(FileNotFoundError):
        pipeline.read_manifest(str(tmp_path))
    with pytest.raises(ValueError, match="num_classes"):
        pipeline.eval_dataset(small_demo["eval"], 4, 5)
