"""tf.data from shard globs: a class-balanced training stream and an exactly-once evaluation stream.

Memory bound and sampling design: see the notes above `_balanced_copies`.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import tensorflow as tf

from glat_tf.data import sampler, schema, verify
from glat_tf.data.damage import DAMAGE, ShardDamage, fail_on, plain_message  # noqa: F401 (pipeline.DAMAGE)

_CHUNK = 64  # records parsed together: batched parsing is ~10x cheaper per record
_READ_BUFFER = 1 << 20


def _patterns(file_pattern) -> list[str]:
    if isinstance(file_pattern, (str, os.PathLike)):
        return [os.fspath(file_pattern)]
    return [os.fspath(p) for p in file_pattern]


def read_manifest(shard_dir_or_glob) -> dict:
    """The manifest.json that ingest wrote beside the shards (a folder, a glob or a file list)."""
    first = _patterns(shard_dir_or_glob)[0]
    folder = first if tf.io.gfile.isdir(first) else os.path.dirname(first)
    if any(c in folder for c in "*?["):  # "demo_data/*/shards/train-*": the matches' folder
        folders = sorted({os.path.dirname(f) for f in tf.io.gfile.glob(first)})
        if len(folders) > 1:
            raise ValueError(f"{first!r} matches shards in {len(folders)} folders ({folders[0]}, "
                             f"{folders[1]}, ...), each with its own manifest.json: give one")
        folder = folders[0] if folders else folder
    path = os.path.join(folder, "manifest.json")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no manifest.json beside {first!r} (looked for {path})")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)




# What a damaged shard raises from an iterator: DataLossError from a reader itself, or
# InvalidArgumentError from the assertion that a reader's damage report turns into.
READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.UnknownError,
               tf.errors.NotFoundError)


def is_damage(exc: Exception) -> bool:
    """A read error of damaged input (not some other failure that came out of an iterator)."""
    return isinstance(exc, tf.errors.DataLossError) or DAMAGE.line_in(str(exc)) is not None


def input_error_line(exc: Exception) -> str:
    """One line for a read error of the input: the damaged file when a reader named it."""
    line = DAMAGE.line_in(str(exc))
    if line is not None:
        return line
    text = plain_message(exc)
    return (f"unreadable training or evaluation data ({text}); no manifest.json lists these "
            "files, so the file is unknown: check the folder with glat-ingest --verify")


def _checked_reader(compression: str, skip: bool):
    """file, expected records -> its records; a file ending early is reported (or skipped).

    Needs the manifest's record counts: without them a damaged end looks like a clean one.
    """
    def read(file, expected):
        records = tf.data.TFRecordDataset(file, compression, buffer_size=_READ_BUFFER)
        marked = records.ignore_errors().map(lambda r: (r, False)).concatenate(
            tf.data.Dataset.from_tensors((tf.constant(b""), True)))  # end-of-file mark
        counted = marked.scan(tf.constant(0, tf.int64),
                              lambda n, e: (n + 1, (e[0], e[1], n)))

        def report(f, n, m):  # never raises: see damage.ShardDamage
            return DAMAGE.report(f"damaged shard {f.numpy().decode()}: read {int(n)} of its "
                                 f"{int(m)} records (record {int(n)} is truncated or corrupt, "
                                 "the rest of the file is lost)", int(m - n))

        def keep(record, end, n):
            line = tf.cond(tf.logical_and(end, n < expected),
                           lambda: tf.py_function(report, [file, n, expected], tf.string),
                           lambda: tf.constant(""))
            check = fail_on(line, skip)
            with tf.control_dependencies([] if check is None else [check]):
                return tf.logical_not(end)

        return counted.filter(keep).map(lambda record, end, n: record)

    return read


def _files_and_reader(files: list[str], info: dict, skip_corrupt: bool):
    """Dataset of (file, expected records) and the reader of one such pair."""
    records = info["records"]
    if records is None:
        if skip_corrupt:
            raise ValueError("skip_corrupt needs the record counts of manifest.json, and no "
                             "manifest lists these shards")
        counts = [-1] * len(files)

        def reader(file, expected):
            return tf.data.TFRecordDataset(file, info["compression"], buffer_size=_READ_BUFFER)
    else:
        counts = [records[f] for f in files]
        reader = _checked_reader(info["compression"], skip_corrupt)
    return tf.data.Dataset.from_tensor_slices((files, tf.constant(counts, tf.int64))), reader


def _list_files(file_pattern) -> list[str]:
    files = []
    for pattern in _patterns(file_pattern):
        if tf.io.gfile.isdir(pattern):  # a folder holds every split: training on eval is silent
            raise ValueError(f"file_pattern={pattern!r} is a folder; give a glob such as "
                             f"{os.path.join(pattern, 'train-*.tfrecord')!r}")
        files += tf.io.gfile.glob(pattern)
    if not files:
        raise ValueError(f"no shard files match file_pattern={file_pattern!r}")
    return sorted(set(files))


def _manifests(files: list[str]) -> dict:
    """{folder: its manifest.json or None} for the folders of `files`."""
    found = {}
    for path in files:
        folder = os.path.dirname(path)
        if folder not in found:
            try:
                found[folder] = read_manifest(path)
            except FileNotFoundError:
                found[folder] = None
    return found


def _describe(file_pattern, num_classes: int, skip_corrupt: bool = False) -> tuple[list, dict]:
    """The shards of `file_pattern` that can be read and what the manifests say of them:
    compression, clip length, per-class counts, record counts, the index.

    With manifests, every shard is checked against them before any is read (listed,
    present, of the listed size): a damaged shard raises DamagedShardsError naming it, or
    with `skip_corrupt` is left out and its records counted in DAMAGE.
    """
    files = _list_files(file_pattern)
    manifests = _manifests(files)
    info = {"compression": None, "clip_samples": None, "class_counts": None, "num_clips": None,
            "records": None, "index": None}
    if manifests and all(m is not None for m in manifests.values()):
        first = next(iter(manifests.values()))
        if first["num_classes"] > num_classes:
            raise ValueError(f"num_classes={num_classes} but the shards have "
                             f"{first['num_classes']} classes")
        files, found = verify.shards_before_reading(files, manifests, _patterns(file_pattern),
                                                    skip_corrupt)
        info["clip_samples"] = first["clip_samples"]
        counts = np.zeros(num_classes, np.int64)
        for _, entry in found:
            for index, n in entry["class_counts"].items():
                counts[int(index)] += n
        info["class_counts"] = counts
        info["num_clips"] = sum(entry["num_records"] for _, entry in found)
        info["records"] = {f: entry["num_records"] for f, (_, entry) in zip(files, found)}
        info["compression"] = found[0][0]
        if not info["compression"] and all("offsets" in e for _, e in found):
            info["index"] = [e for _, e in found]  # record offsets: balanced draws by index
    elif manifests and any(m is not None for m in manifests.values()):
        info["clip_samples"] = next(m for m in manifests.values() if m)["clip_samples"]
    if info["compression"] is None:  # no manifest: look at the gzip magic number
        with tf.io.gfile.GFile(files[0], "rb") as f:
            info["compression"] = "GZIP" if f.read(2) == b"\x1f\x8b" else ""
    return files, info


def check_shards(file_pattern, num_classes: int, skip_corrupt: bool = False) -> list[str]:
    """The readable shards of a glob, checked against their manifests (see `_describe`)."""
    return _describe(file_pattern, num_classes, skip_corrupt)[0]


def _shard(files: list[str], input_context) -> tuple[list[str], tuple[int, int] | None]:
    """Files of this input pipeline; record-level (count, index) when there are too few files."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files, None
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) >= count:
        return files[index::count], None
    return files, (count, index)


# Balanced sampling has the marginal of PANNs' BalancedTrainSampler (draw a class uniformly, then
# a clip that contains it): clip x is drawn with probability w(x) = sum_{c in x} 1 / (L * n_c).
# Shards are not random-access, so rather than seeking to clips the stream reads every clip once
# per pass and emits it N * w(x) times (stochastic rounding: the mean is exact); a shuffle buffer
# spreads the copies. One read per emitted clip, where one filtered reader per class would read
# N / n_c records per draw (20,000 for a class of 100 clips among AudioSet's 2M) and keep L
# readers open. Memory is bounded, independent of the number of clips and classes:
#     shuffle_buffer * clip bytes (int16: 640 kB per 10 s at 32 kHz; 1024 -> 0.66 GB)
#   + up to 8 open readers with 1 MB buffers + a few batches in prefetch.
# The price: the copies of a rare clip (N / (L * n_c): 38 for that class of 100) enter the
# buffer together, and a buffer of B spreads them over about B draws.
#
# Throughput: start TensorFlow with TF_CPU_ALLOCATOR_USE_BFC=true. A batch of 32 10-s clips is
# 41 MB of float32 and the default CPU allocator maps fresh pages for each such buffer:
# bench/input_pipeline.py measured 3-4x fewer clips per CPU-second without it.
def _balanced_copies(labels, class_counts: np.ndarray, num_clips: int, seed):
    """Copies of each clip in one pass: stochastic rounding of N * sum_{c in x} 1 / (L * n_c)."""
    counts = np.asarray(class_counts, np.float64)
    present = counts > 0
    per_label = np.where(present, num_clips / (present.sum() * np.maximum(counts, 1)), 0.0)
    expected = tf.linalg.matvec(labels, tf.constant(per_label, tf.float32))  # (chunk,)
    jitter = tf.random.stateless_uniform(tf.shape(expected), seed=seed)
    return tf.cast(tf.floor(expected + jitter), tf.int32)


def train_dataset(file_pattern, batch_size: int, num_classes: int, *, balanced: bool = True,
                  mixup_alpha: float = 0.0, crop_samples: int | None = None,
                  shuffle_buffer: int = 1024, seed: int | None = None, input_context=None,
                  class_counts=None, skip_corrupt: bool = False,
                  start_batch: int = 0) -> tf.data.Dataset:
    """Infinite ((B, S) float32 waveform in [-1, 1), (B, L) float32 labels) batches.

    class_counts (clips per class of these shards) defaults to the manifest's; balanced
    sampling needs them. With input_context, files are split across input pipelines and
    batch_size is the global batch. A shard ending before its manifest count raises
    error naming it (InvalidArgumentError: see `input_error_line`); with skip_corrupt its
    lost records are counted in DAMAGE and training goes on. The stream of a seeded call
    is a function of the seed: `start_batch=k` starts it at its k-th batch (a resumed run
    sees the batches it would have seen). Example:
        ds = train_dataset("shards/train-*.tfrecord", 32, 527, mixup_alpha=0.5)
        waveform, labels = next(iter(ds))
    """
    if batch_size <= 0 or mixup_alpha < 0 or (crop_samples is not None and crop_samples <= 0):
        raise ValueError(f"need batch_size > 0, mixup_alpha >= 0, crop_samples > 0; got "
                         f"{batch_size=}, {mixup_alpha=}, {crop_samples=}")
    files, info = _describe(file_pattern, num_classes, skip_corrupt)
    all_files = files
    explicit_counts = class_counts
    if balanced:
        class_counts = info["class_counts"] if class_counts is None else np.asarray(class_counts)
        if class_counts is None:
            raise ValueError("balanced=True needs class_counts: no manifest.json lists these shards")
        if len(class_counts) != num_classes or not np.any(class_counts):
            raise ValueError(f"class_counts must hold {num_classes} counts, not all zero")
        # Only the copies per pass depend on N; without a manifest, sum(n_c) bounds it from above.
        num_clips = info["num_clips"] or int(np.sum(class_counts))
    clip_samples = info["clip_samples"]
    if crop_samples is not None and clip_samples is not None and crop_samples > clip_samples:
        raise ValueError(f"crop_samples={crop_samples} exceeds the clips' {clip_samples} samples")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    files, record_shard = _shard(files, input_context)
    deterministic = seed is not None
    seed = random.SystemRandom().randrange(2 ** 31) if seed is None else int(seed)
    if input_context is not None:
        seed += 7919 * input_context.input_pipeline_id  # different streams per pipeline
    if balanced and explicit_counts is None and info["index"] is not None:
        # Exact BalancedTrainSampler draws over the record index (see sampler.py); every
        # pipeline draws from all files with its own seed, as PANNs' samplers per worker do.
        ds = sampler.draw_records(sampler.RecordIndex(all_files, info["index"]), num_classes,
                                  seed, _CHUNK, skip_corrupt, start_batch * batch_size)
        ds = ds.map(lambda serialized: schema.parse_batch(serialized, num_classes),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.unbatch().map(lambda e: {"pcm": e["pcm"], "labels": e["labels"]})
        return _finish(ds, batch_size, seed, clip_samples, crop_samples, mixup_alpha,
                       deterministic, start_batch)

    ds, reader = _files_and_reader(files, info, skip_corrupt)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(
        reader, cycle_length=min(len(files), 8), block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic)
    if record_shard is not None:
        ds = ds.shard(*record_shard)
    ds = ds.batch(_CHUNK).enumerate()

    def parse(step, serialized):
        parsed = schema.parse_batch(serialized, num_classes)
        del parsed["audio_id"]  # training never needs it: one string less per element
        if balanced:
            parsed["copies"] = _balanced_copies(parsed["labels"], class_counts, num_clips,
                                                tf.stack([seed, step]))
        return parsed

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic).unbatch()
    if balanced:
        # Copies by reference, one at a time: a gather would materialise all copies of a chunk
        # at once (a clip of a 1-in-2M class: 3,800 copies, 2.4 GB).
        ds = ds.flat_map(lambda e: tf.data.Dataset.from_tensors(
            {"pcm": e["pcm"], "labels": e["labels"]}).repeat(tf.cast(e["copies"], tf.int64)))
    ds = ds.shuffle(shuffle_buffer, seed=seed).skip(start_batch * batch_size)  # read, not trained
    return _finish(ds, batch_size, seed, clip_samples, crop_samples, mixup_alpha, deterministic,
                   start_batch)


def _finish(ds, batch_size: int, seed: int, clip_samples, crop_samples, mixup_alpha: float,
            deterministic: bool, start_batch: int = 0) -> tf.data.Dataset:
    """{"pcm", "labels"} clips -> (waveform, labels) batches: crop, decode, mixup."""
    ds = ds.batch(batch_size, drop_remainder=True).enumerate(start=start_batch)

    def finish(step, batch):
        pcm, length = batch["pcm"], clip_samples
        step_seed = tf.stack([seed + 1, step])
        if crop_samples is not None:
            # Cropping the int16 bytes before decoding: no float copy of the discarded audio.
            room = tf.strings.length(pcm) // 2 - crop_samples + 1
            start = tf.cast(tf.random.stateless_uniform([batch_size], step_seed) *
                            tf.cast(tf.maximum(room, 1), tf.float32), tf.int32)
            pcm = tf.strings.substr(pcm, 2 * start, tf.fill([batch_size], 2 * crop_samples))
            length = crop_samples
        wave, labels = schema.decode_pcm(pcm, length), batch["labels"]
        if mixup_alpha > 0:
            # PANNs-style mixup with the batch's mirror image; lambda ~ Beta(alpha, alpha).
            g1 = tf.random.stateless_gamma([batch_size], step_seed + 2, alpha=mixup_alpha)
            g2 = tf.random.stateless_gamma([batch_size], step_seed + 3, alpha=mixup_alpha)
            lam = (g1 / (g1 + g2))[:, None]
            wave = lam * wave + (1 - lam) * tf.reverse(wave, [0])
            labels = lam * labels + (1 - lam) * tf.reverse(labels, [0])
        return wave, labels

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def eval_dataset(file_pattern, batch_size: int, num_classes: int, *, with_ids: bool = False,
                 input_context=None, skip_corrupt: bool = False) -> tf.data.Dataset:
    """Every clip exactly once, in shard order (sorted audio ids), last batch kept.

    A damaged shard raises an error naming it (see `input_error_line`); with skip_corrupt
    its unreadable records are left out and counted in DAMAGE.

    Yields (waveform, labels) or, with with_ids, (waveform, labels, audio_id string).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size=}")
    files, info = _describe(file_pattern, num_classes, skip_corrupt)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    files, record_shard = _shard(files, input_context)
    files_ds, reader = _files_and_reader(files, info, skip_corrupt)
    ds = files_ds.flat_map(reader)
    if record_shard is not None:
        ds = ds.shard(*record_shard)

    def parse(serialized):
        parsed = schema.parse_batch(serialized, num_classes)
        wave = schema.decode_pcm(parsed["pcm"], info["clip_samples"])
        if with_ids:
            return wave, parsed["labels"], parsed["audio_id"]
        return wave, parsed["labels"]

    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
