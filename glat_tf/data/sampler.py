"""Balanced draws by index: PANNs' BalancedTrainSampler over the manifest's record index, random-access reads.

Why not the streaming sampler (pipeline.py): it reads each clip once per pass and emits
N w(x) copies, so in a window of D draws it has read only D of the N clips: at AudioSet's
2M clips, 100,000 draws see ~3 of a 60-clip class's clips, and such a class's share of the
draws scatters by +-60 %. Drawing by index has the sampler's exact round-robin: every round
of L draws picks each class once (then one of its clips, each class's clips in a shuffled
cycle), at one ranged read per draw. The index (byte offset and labels of every record)
is what glat-ingest writes into manifest.json for uncompressed shards.
"""

from __future__ import annotations

import google_crc32c
import numpy as np
import tensorflow as tf

from glat_tf.data import storage

_BLOCK = 1024  # draws per generator call


class RecordIndex:
    """Every record of a list of shards: file number, byte offset, framed length, labels (CSR)."""

    def __init__(self, files: list[str], entries: list[dict]):
        self.files = list(files)
        sizes = [len(e["offsets"]) for e in entries]
        self.file_of = np.repeat(np.arange(len(files), dtype=np.int32), sizes)
        self.offset = np.concatenate([np.asarray(e["offsets"], np.int64) for e in entries])
        ends = np.concatenate([np.append(np.asarray(e["offsets"][1:], np.int64), e["bytes"])
                               for e in entries])
        self.length = ends - self.offset  # 16 bytes of framing + the serialised Example
        self.first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)  # per file
        flat = [label for e in entries for labels in e["labels"] for label in labels]
        self.classes = np.asarray(flat, np.int32)
        per_clip = [len(labels) for e in entries for labels in e["labels"]]
        self.indptr = np.concatenate([[0], np.cumsum(per_clip)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.offset)


class BalancedTrainSampler:
    """PANNs' BalancedTrainSampler: a shuffled queue of the classes, one clip of each in turn.

    Every class with clips is drawn once per round; its clips come in a shuffled cycle,
    reshuffled when used up. Example:
        clips = BalancedTrainSampler(index.indptr, index.classes, 527, seed=0).draws(1024)
    """

    def __init__(self, indptr: np.ndarray, classes: np.ndarray, num_classes: int, seed: int):
        self.rng = np.random.default_rng(seed)
        clip_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        order = np.argsort(classes, kind="stable")
        counts = np.bincount(classes, minlength=num_classes)
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.present = np.flatnonzero(counts)
        self.clips = {c: self.rng.permutation(clip_of[order[starts[c]:starts[c + 1]]])
                      for c in self.present}
        self.pointer = dict.fromkeys(self.present, 0)
        self.queue: list[int] = []

    def draws(self, n: int) -> np.ndarray:
        out = np.empty(n, np.int64)
        for i in range(n):
            if not self.queue:
                self.queue = list(self.rng.permutation(self.present))
            c = self.queue.pop()
            clips, p = self.clips[c], self.pointer[c]
            out[i] = clips[p]
            if p + 1 == len(clips):
                self.rng.shuffle(clips)
                p = -1
            self.pointer[c] = p + 1
        return out


_MASK_DELTA = 0xA282EAD8  # TFRecord's CRC mask


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unframe(framed: bytes, length: int) -> tuple[bytes, str | None]:
    """One TFRecord as read from its shard (`length` bytes: the index's framed length) ->
    (its data, None), or (b"", what is wrong). Both CRCs are checked, as TF's reader does."""
    if len(framed) != length:
        return b"", "the shard ends inside it"
    size = int.from_bytes(framed[:8], "little")
    if size != length - 16:
        return b"", "framing differs from the index"
    if int.from_bytes(framed[8:12], "little") != _masked_crc(framed[:8]):
        return b"", "length CRC mismatch"
    data = framed[12:12 + size]
    if int.from_bytes(framed[12 + size:], "little") != _masked_crc(data):
        return b"", "data CRC mismatch"
    return data, None


def _read_records(index: RecordIndex):
    """(chunk,) clip numbers -> (their serialised Examples, b"" for each damaged one;
    the first damage's line, b"" if none). Never raises (see damage.ShardDamage)."""
    from glat_tf.data.damage import DAMAGE

    def read(clips: np.ndarray):
        out, first = [], b""
        for clip in clips:
            path = index.files[index.file_of[clip]]
            offset, length = int(index.offset[clip]), int(index.length[clip])
            # One ranged read and the CRC checks: about 0.1 ms CPU per 640 KB clip here. TF's
            # RandomRecordReader took 0.5 ms reused and 2.8 ms opened anew, which at
            # AudioSet's thousands of shards is nearly every read (3x the sampler's cost).
            try:
                with storage.open_file(path, "rb") as f:
                    f.seek(offset)
                    record, problem = unframe(f.read(length), length)
            except (FileNotFoundError, tf.errors.NotFoundError):
                record, problem = b"", "the file is missing"
            except (tf.errors.OpError, OSError) as exc:
                record, problem = b"", str(exc).split("\n")[0] or type(exc).__name__
            if problem is not None:
                number = clip - index.first[index.file_of[clip]]
                line = DAMAGE.report(f"damaged shard {path}: record {number} (byte {offset}) "
                                     f"is unreadable ({problem})", 1)
                first = first or line.encode()
            out.append(record)
        return np.asarray(out, dtype=object), np.asarray(first, dtype=object)

    return read


def draw_records(index: RecordIndex, num_classes: int, seed: int, chunk: int,
                 skip_corrupt: bool, skip_draws: int = 0) -> tf.data.Dataset:
    """Infinite batches of up to `chunk` serialised Examples in BalancedTrainSampler order,
    from draw number `skip_draws` on (a resumed run continues where its checkpoint was)."""
    from glat_tf.data.damage import fail_on

    sampler = BalancedTrainSampler(index.indptr, index.classes, num_classes, seed)
    for _ in range(skip_draws // _BLOCK):
        sampler.draws(_BLOCK)
    sampler.draws(skip_draws % _BLOCK)

    def blocks():
        while True:
            yield sampler.draws(_BLOCK)

    ds = tf.data.Dataset.from_generator(blocks, output_signature=tf.TensorSpec([_BLOCK], tf.int64))
    reader = _read_records(index)

    def read(clips):
        records, line = tf.numpy_function(reader, [clips], (tf.string, tf.string))
        check = fail_on(line, skip_corrupt)
        with tf.control_dependencies([] if check is None else [check]):
            records = tf.ensure_shape(tf.identity(records), [chunk])
        return tf.boolean_mask(records, tf.strings.length(records) > 0)  # skipped: b""

    return ds.unbatch().batch(chunk).map(read, num_parallel_calls=tf.data.AUTOTUNE,
                                         deterministic=True)
