"""Audio files listed in an AudioSet segments CSV (or a `path,labels` list) -> int16 TFRecord shards.

    glat-ingest --segments eval_segments.csv --audio-dir clips --out shards --split eval
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock, ingest one split per folder at a time
    fcntl = None

import numpy as np
import soundfile as sf
import soxr
from glat_tf.console import Progress as tqdm  # plain lines in logs

from glat_tf import console
from glat_tf.data.labels import LabelMap, audioset_labels_csv, read_list_csv, read_segments_csv

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # preference order when several exist
FORMAT = "glat_tf.shards/1"


class ClipError(Exception):
    """A clip that cannot be ingested; `reason` is one of the rejects.csv reason codes."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


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


def _wav_truncated(path: str) -> bool:
    """A RIFF header promising more data than the file holds (libsndfile reads what is there)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        file_size = os.fstat(f.fileno()).st_size
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return False
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return size not in (0, 0xFFFFFFFF) and f.tell() + size > file_size
            f.seek(size + (size & 1), os.SEEK_CUR)


def decode_clip(path: str, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Decode, mix to mono, resample (soxr) and pad/trim to clip_samples; int16. Raises ClipError."""
    if not os.path.exists(path):
        raise ClipError("missing_file", path)
    if os.path.getsize(path) == 0:
        raise ClipError("empty_file", "0 bytes")
    try:
        info = sf.info(path)
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types for unreadable input
        raise ClipError("unreadable", str(exc).strip().replace("\n", " ")) from None
    if audio.shape[0] == 0:
        raise ClipError("empty_file", "no audio frames")
    # MP3 frame counts without a Xing header are estimates: allow 1 % slack there.
    if audio.shape[0] < info.frames - max(2048, info.frames // 100) or _wav_truncated(path):
        raise ClipError("truncated", f"header says {info.frames} frames, read {audio.shape[0]}")
    if not np.isfinite(audio).all():
        raise ClipError("non_finite", "NaN or inf samples")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    out = np.pad(mono[:clip_samples], (0, max(0, clip_samples - mono.shape[0])))
    return np.round(np.clip(out, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _decode_task(task):
    """Worker entry: (path, rate, samples) -> (int16 bytes | None, reason, detail)."""
    try:
        return decode_clip(*task).tobytes(), "", ""
    except ClipError as err:
        return None, err.reason, err.detail


def _find_audio(audio_dir: Path) -> dict[str, str]:
    """File stem -> file name from one directory scan (not 4 stats per row); .wav before .mp3."""
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    found: dict[str, str] = {}
    for _, name in sorted((rank[os.path.splitext(n)[1].lower()], n) for n in os.listdir(audio_dir)
                          if os.path.splitext(n)[1].lower() in rank):
        found.setdefault(os.path.splitext(name)[0], name)
    return found


def plan_rows(label_map: LabelMap, segments_csv: str | None = None, list_csv: str | None = None,
              audio_dir: str | None = None) -> tuple[list[Row], list[tuple]]:
    """Valid rows sorted by audio_id, and (audio_id, path, reason, detail) rejects found before decoding."""
    rejects, entries = [], []  # entries: (audio_id, path, label keys or field, is_list)
    if segments_csv:
        folder = Path(audio_dir)
        files = _find_audio(folder) if folder.is_dir() else {}
        for ytid, mids, _ in read_segments_csv(segments_csv):
            name = files.get(f"Y{ytid}") or files.get(ytid)  # AudioSet downloads are Y<YTID>.<ext>
            entries.append((ytid, str(folder / (name or f"Y{ytid}.wav")), mids, False))
    else:
        base = Path(audio_dir) if audio_dir else Path(list_csv).parent
        for path, field, _ in read_list_csv(list_csv):
            entries.append((os.path.splitext(path)[0], str(base / path), field, True))
    rows, seen = [], set()
    for audio_id, path, labels, is_list in entries:
        indices, unknown = label_map.split_labels(labels) if is_list else (
            [label_map.lookup(m) for m in labels], [m for m in labels if label_map.lookup(m) is None])
        if audio_id in seen:
            rejects.append((audio_id, path, "duplicate_id", "id seen earlier in the CSV"))
        elif unknown:
            rejects.append((audio_id, path, "unknown_label", ";".join(unknown)))
        elif not indices:
            rejects.append((audio_id, path, "no_labels", ""))
        elif not os.path.exists(path):
            rejects.append((audio_id, path, "missing_file", ""))
        else:
            stat = os.stat(path)
            rows.append(Row(audio_id, path, tuple(sorted(set(indices))), (stat.st_size, stat.st_mtime_ns)))
        seen.add(audio_id)
    return sorted(rows, key=lambda r: r.audio_id), rejects


def _fingerprint(rows: list[Row], settings: Settings, label_map: LabelMap) -> str:
    digest = hashlib.sha1(f"{FORMAT}|{settings}|{label_map.mids}".encode())
    for row in rows:
        # Not the path: moving the audio folder (or another working directory) keeps the shards.
        digest.update(f"\n{row.audio_id}|{row.labels}|{row.stamp}".encode())
    return digest.hexdigest()


def _ordered_results(pool, tasks, max_in_flight: int):
    """Results of `tasks` in order, with at most max_in_flight decoded clips held in memory.

    Pool.imap queues every task at once and keeps all finished results: 2M clips would not fit.
    """
    pending: collections.deque = collections.deque()
    for task in tasks:
        if pool is None:
            yield _decode_task(task)
            continue
        pending.append(pool.apply_async(_decode_task, (task,)))
        if len(pending) >= max_in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _make_pool(workers: int):
    if workers <= 1:
        return None
    # forkserver: workers start from a clean interpreter (no TensorFlow threads to fork),
    # preloading this module once instead of once per worker.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])
    return context.Pool(workers)


MANIFEST, REJECTS, LABELS_NAME = "manifest.json", "rejects.csv", "class_labels_indices.csv"
_FLUSH_SECONDS = 30.0  # a killed run redoes at most this much finished work


@contextlib.contextmanager
def _locked(out_dir: Path):
    """Serialise manifest updates when several splits are ingested into one folder at once."""
    with open(out_dir / ".manifest.lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SplitBook:
    """One split's part of manifest.json and rejects.csv, in step with the shards on disk."""

    def __init__(self, out_dir: Path, split: str, settings: Settings, labels_csv: str,
                 label_map: LabelMap, pre_decode_rejects: list, source: str):
        self.out_dir, self.split, self.settings, self.source = out_dir, split, settings, source
        self.pre_decode_rejects, self.planned = pre_decode_rejects, None
        self.header = {"format": FORMAT, "sample_rate": settings.sample_rate,
                       "clip_seconds": settings.clip_seconds, "clip_samples": settings.clip_samples,
                       "num_classes": len(label_map), "labels_csv": LABELS_NAME,
                       "labels": [{"index": i, "mid": m, "display_name": n}
                                  for i, (m, n) in enumerate(zip(label_map.mids, label_map.names))]}
        out_dir.mkdir(parents=True, exist_ok=True)
        with _locked(out_dir):
            manifest = self._load()
            for key in ("format", "sample_rate", "clip_samples", "labels"):
                if key in manifest and manifest[key] != self.header[key]:
                    raise ValueError(f"{out_dir} holds shards made with another {key}; "
                                     "ingest into a new --out folder")
            copy = out_dir / LABELS_NAME
            if not copy.exists():
                shutil.copyfile(labels_csv, copy)
            elif LabelMap.from_csv(copy) != label_map:
                raise ValueError(f"{copy} differs from {labels_csv}; ingest into a new --out folder")
        section = manifest.get("splits", {}).get(split, {})
        self.shards = {entry["file"]: entry for entry in section.get("shards", [])}
        self.last_flush = time.monotonic()

    def _load(self) -> dict:
        path = self.out_dir / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def prune(self, names: set) -> None:
        """Delete this split's shards outside the plan: a glob over the split must not see them."""
        self.planned = len(names)
        for path in self.out_dir.glob(f"{self.split}-?????-of-?????.tfrecord*"):
            if path.name not in names:
                path.unlink()
        self.shards = {k: v for k, v in self.shards.items() if k in names}

    def is_complete(self, name: str, fingerprint: str) -> bool:
        entry, path = self.shards.get(name), self.out_dir / name
        return (entry is not None and entry["fingerprint"] == fingerprint and path.exists()
                and path.stat().st_size == entry["bytes"])

    def record(self, name: str, fingerprint: str, num_records: int, class_counts, rejects) -> None:
        self.shards[name] = {
            "file": name, "fingerprint": fingerprint, "num_records": num_records,
            "bytes": (self.out_dir / name).stat().st_size,
            "class_counts": {str(k): v for k, v in sorted(class_counts.items())},
            "rejects": [list(r) for r in rejects]}
        if time.monotonic() - self.last_flush > _FLUSH_SECONDS:
            self.flush()

    def _all_rejects(self) -> list:
        shard_rejects = [tuple(r) for e in self.shards.values() for r in e["rejects"]]
        return sorted(self.pre_decode_rejects + shard_rejects)

    def summary(self) -> dict:
        counts = np.zeros(self.header["num_classes"], np.int64)
        for index, n in (kv for e in self.shards.values() for kv in e["class_counts"].items()):
            counts[int(index)] += n
        reasons = collections.Counter(r[2] for r in self._all_rejects())
        return {"source": self.source, "compression": "GZIP" if self.settings.gzip else "",
                "complete": len(self.shards) == self.planned,
                "num_clips": sum(e["num_records"] for e in self.shards.values()),
                "num_shards": len(self.shards), "class_counts": counts.tolist(),
                "num_rejects": sum(reasons.values()), "rejects": dict(sorted(reasons.items())),
                "shards": [self.shards[k] for k in sorted(self.shards)]}

    def flush(self) -> None:
        with _locked(self.out_dir):
            manifest = self._load()  # re-read: another split may have been written meanwhile
            manifest.update(self.header)
            manifest.setdefault("splits", {})[self.split] = self.summary()
            _write_atomic(self.out_dir / MANIFEST, json.dumps(manifest, indent=1))
            path, lines = self.out_dir / REJECTS, [["split", "audio_id", "path", "reason", "detail"]]
            if path.exists():  # other splits' rows stay
                with open(path, newline="", encoding="utf-8") as f:
                    lines += [r for r in list(csv.reader(f))[1:] if r and r[0] != self.split]
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(
                lines + [[self.split, *r] for r in self._all_rejects()])
            _write_atomic(path, buffer.getvalue())
        self.last_flush = time.monotonic()


def ingest(*, out: str, split: str, segments_csv: str | None = None, list_csv: str | None = None,
           labels_csv: str | None = None, audio_dir: str | None = None, workers: int = 1,
           settings: Settings = Settings(), progress: bool = True) -> dict:
    """Write <out>/<split>-NNNNN-of-NNNNN.tfrecord shards; returns the split's summary.

    Shards already complete and consistent with manifest.json are kept, not rewritten.
    """
    from glat_tf.data import schema  # TensorFlow only in the writing process

    if (segments_csv is None) == (list_csv is None):
        raise ValueError("give exactly one of segments_csv= or list_csv=")
    if segments_csv and not audio_dir:
        raise ValueError("segments_csv= needs audio_dir= (the folder of Y<YTID>.<ext> files)")
    labels_csv = labels_csv or audioset_labels_csv()
    label_map = LabelMap.from_csv(labels_csv)
    rows, rejects = plan_rows(label_map, segments_csv, list_csv, audio_dir)
    count = max(1, -(-len(rows) // settings.shard_size))
    plan = [(f"{split}-{i:05d}-of-{count:05d}.tfrecord",
             rows[i * settings.shard_size:(i + 1) * settings.shard_size]) for i in range(count)]
    book = SplitBook(Path(out), split, settings, labels_csv, label_map, rejects,
                     source=os.path.basename(segments_csv or list_csv))
    book.prune({name for name, _ in plan})
    todo = [(name, shard_rows, fingerprint) for name, shard_rows in plan
            if not book.is_complete(name, fingerprint := _fingerprint(shard_rows, settings, label_map))]
    tasks = ((r.path, settings.sample_rate, settings.clip_samples)
             for _, shard_rows, _ in todo for r in shard_rows)
    pool = _make_pool(workers)
    written = 0
    try:
        results = _ordered_results(pool, tasks, max_in_flight=8 * workers)
        with tqdm(total=sum(len(r) for _, r, _ in todo), unit="clip", disable=not progress,
                  desc=f"ingest {split}", file=sys.stderr) as bar:
            for name, shard_rows, fingerprint in todo:
                tmp = book.out_dir / f"{name}.tmp-{os.getpid()}"
                counts, shard_rejects = collections.Counter(), []
                with schema.tf.io.TFRecordWriter(str(tmp), "GZIP" if settings.gzip else "") as writer:
                    for row in shard_rows:
                        pcm, reason, detail = next(results)
                        bar.update(1)
                        if pcm is None:
                            shard_rejects.append((row.audio_id, row.path, reason, detail))
                            continue
                        writer.write(schema.encode_example(
                            row.audio_id, np.frombuffer(pcm, np.int16), settings.sample_rate,
                            row.labels))
                        counts.update(row.labels)
                os.replace(tmp, book.out_dir / name)  # under its final name a shard is complete
                book.record(name, fingerprint, len(shard_rows) - len(shard_rejects), counts,
                            shard_rejects)
                written += 1
    finally:
        if pool is not None:
            pool.terminate()
        for stale in book.out_dir.glob(f"{split}-*.tmp-{os.getpid()}"):
            stale.unlink()
        book.flush()
    return dict(book.summary(), shards_written=written, shards_kept=len(plan) - written)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--segments", help="AudioSet segments CSV (three '#' header lines)")
    source.add_argument("--list", help="CSV of path,labels (labels by MID or display name)")
    parser.add_argument("--labels", help="class_labels_indices.csv (default: AudioSet's 527)")
    parser.add_argument("--audio-dir", help="folder of Y<YTID>.<ext> clips; base of --list paths")
    parser.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    parser.add_argument("--split", help="shard name prefix (default: from the CSV file name)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample-rate", type=int, default=32000)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard")
    parser.add_argument("--gzip", action="store_true", help="GZIP-compress the shards")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any row is rejected")
    console.add_verbose(parser)
    args = parser.parse_args(argv)
    if args.sample_rate <= 0 or args.clip_seconds <= 0 or args.shard_size <= 0 or args.workers <= 0:
        parser.error("--sample-rate, --clip-seconds, --shard-size and --workers must be positive")
    split = args.split or Path(args.segments or args.list).stem.removesuffix("_segments")
    settings = Settings(args.sample_rate, args.clip_seconds, args.shard_size, args.gzip)
    try:
        summary = ingest(out=args.out, split=split, segments_csv=args.segments,
                         list_csv=args.list, labels_csv=args.labels, audio_dir=args.audio_dir,
                         workers=args.workers, settings=settings)
    except (ValueError, OSError) as exc:  # bad label CSV, unreadable list, mismatched out dir
        print(f"glat-ingest: error: {exc}", file=sys.stderr)
        return 2
    print(f"{split}: {summary['num_clips']} clips in {summary['num_shards']} shards "
          f"({summary['shards_written']} written, {summary['shards_kept']} kept) -> {args.out}")
    for reason, n in sorted(summary["rejects"].items()):
        print(f"  rejected {n:6d}  {reason}")
    if summary["num_clips"] == 0:
        print("glat-ingest: nothing could be ingested", file=sys.stderr)
        return 1
    return 1 if args.strict and summary["num_rejects"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
