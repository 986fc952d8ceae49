"""Audio files listed in an AudioSet segments CSV (or a `path,labels` list) -> int16 TFRecord shards.

    glat-ingest --segments eval_segments.csv --audio-dir clips --out shards --split eval
    glat-ingest ... --runner beam [-- <Beam pipeline options, e.g. --runner=DataflowRunner>]
    glat-ingest --verify shards          # every record parses, counts equal the manifest

Paths may be local or any tf.io.gfile URL (gs://..., ram://...): see storage.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

try:
    import fcntl
except ImportError:  # Windows: no lock, ingest one split per folder at a time
    fcntl = None

import numpy as np
from glat_core.console import Progress as tqdm  # plain lines in logs

from glat_core import console
from glat_core.cli_errors import add_debug_flag, one_line_errors
from glat_tf.data import storage
from glat_tf.data.labels import LabelMap, audioset_labels_csv, read_list_csv, read_segments_csv
# Row, Settings, write_shard: the rows, settings and writer of both runners (ingest.Row, ...).
from glat_tf.data.shard_writer import Row, Settings, clip_task, decode_task, write_shard

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # preference order when several exist
FORMAT = "glat_tf.shards/1"


def _find_audio(audio_dir: str) -> dict[str, str]:
    """File stem -> file name from one directory scan (not 4 stats per row); .wav before .mp3."""
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    found: dict[str, str] = {}
    for _, name in sorted((rank[os.path.splitext(n)[1].lower()], n) for n in storage.listdir(audio_dir)
                          if os.path.splitext(n)[1].lower() in rank):
        found.setdefault(os.path.splitext(name)[0], name)
    return found


def plan_rows(label_map: LabelMap, segments_csv: str | None = None, list_csv: str | None = None,
              audio_dir: str | None = None) -> tuple[list[Row], list[tuple]]:
    """Valid rows sorted by audio_id, and (audio_id, path, reason, detail) rejects found before decoding."""
    rejects, entries = [], []  # entries: (audio_id, path, label keys or field, is_list)
    if segments_csv:
        files = _find_audio(audio_dir) if storage.isdir(audio_dir) else {}
        for ytid, mids, _ in read_segments_csv(_local_copy(segments_csv)):
            name = files.get(f"Y{ytid}") or files.get(ytid)  # AudioSet downloads are Y<YTID>.<ext>
            entries.append((ytid, storage.join(audio_dir, name or f"Y{ytid}.wav"), mids, False))
    else:
        base = audio_dir or os.path.dirname(storage.local(list_csv))
        for path, field, _ in read_list_csv(_local_copy(list_csv)):
            entries.append((os.path.splitext(path)[0], storage.join(base, path), field, True))
    candidates, seen = [], set()
    for audio_id, path, labels, is_list in entries:
        indices, unknown = label_map.split_labels(labels) if is_list else (
            [label_map.lookup(m) for m in labels], [m for m in labels if label_map.lookup(m) is None])
        if audio_id in seen:
            rejects.append((audio_id, path, "duplicate_id", "id seen earlier in the CSV"))
        elif unknown:
            rejects.append((audio_id, path, "unknown_label", ";".join(unknown)))
        elif not indices:
            rejects.append((audio_id, path, "no_labels", ""))
        else:
            candidates.append((audio_id, path, tuple(sorted(set(indices)))))
        seen.add(audio_id)
    # One stat per clip: threads hide an object store's round trips.
    with ThreadPoolExecutor(32 if any(storage.is_url(c[1]) for c in candidates[:1]) else 1) as pool:
        stamps = list(pool.map(_stamp_or_none, (c[1] for c in candidates)))
    rows = []
    for (audio_id, path, labels), stamp in zip(candidates, stamps):
        if stamp is None:
            rejects.append((audio_id, path, "missing_file", ""))
        else:
            rows.append(Row(audio_id, path, labels, stamp))
    return sorted(rows, key=lambda r: r.audio_id), rejects


def _stamp_or_none(path: str):
    try:
        return storage.stamp(path)
    except Exception as exc:  # FileNotFoundError here, tf.errors.NotFoundError from gfile
        if isinstance(exc, OSError) or type(exc).__name__ == "NotFoundError":
            return None
        raise


def _local_copy(path: str) -> str:
    """CSV readers take local files: a URL is copied to a temporary file first."""
    if not storage.is_url(path):
        return storage.local(path)
    import tempfile
    handle, tmp = tempfile.mkstemp(suffix=os.path.basename(path))
    with os.fdopen(handle, "wb") as f:
        f.write(storage.read_bytes(path))
    return tmp


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
            yield decode_task(task)
            continue
        pending.append(pool.apply_async(decode_task, (task,)))
        if len(pending) >= max_in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _make_pool(workers: int):
    if workers <= 1:
        return None
    # forkserver: workers start from a clean interpreter (no TensorFlow threads to fork),
    # preloading the per-clip step's module once instead of once per worker.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([decode_task.__module__])
    return context.Pool(workers)


MANIFEST, REJECTS, LABELS_NAME = "manifest.json", "rejects.csv", "class_labels_indices.csv"
_FLUSH_SECONDS = 30.0  # a killed run redoes at most this much finished work


@contextlib.contextmanager
def _locked(out_dir: str):
    """Serialise manifest updates when several splits are ingested into one folder at once.

    Object stores have no lock: ingest one split per folder at a time there.
    """
    if storage.is_url(out_dir) or fcntl is None:
        yield
        return
    with open(storage.join(out_dir, ".manifest.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class SplitBook:
    """One split's part of manifest.json and rejects.csv, in step with the shards on disk."""

    def __init__(self, out_dir: str, split: str, settings: Settings, labels_csv: str,
                 label_map: LabelMap, pre_decode_rejects: list, source: str):
        self.out_dir, self.split, self.settings, self.source = out_dir, split, settings, source
        self.pre_decode_rejects, self.planned = pre_decode_rejects, None
        self.header = {"format": FORMAT, "sample_rate": settings.sample_rate,
                       "clip_seconds": settings.clip_seconds, "clip_samples": settings.clip_samples,
                       "num_classes": len(label_map), "labels_csv": LABELS_NAME,
                       "labels": [{"index": i, "mid": m, "display_name": n}
                                  for i, (m, n) in enumerate(zip(label_map.mids, label_map.names))]}
        storage.makedirs(out_dir)
        with _locked(out_dir):
            manifest = self._load()
            for key in ("format", "sample_rate", "clip_samples", "labels"):
                if key in manifest and manifest[key] != self.header[key]:
                    raise ValueError(f"{out_dir} holds shards made with another {key}; "
                                     "ingest into a new --out folder")
            copy = self.path(LABELS_NAME)
            if not storage.exists(copy):
                storage.copy(labels_csv, copy)
            elif LabelMap.from_csv(_local_copy(copy)) != label_map:
                raise ValueError(f"{copy} differs from {labels_csv}; ingest into a new --out folder")
        section = manifest.get("splits", {}).get(split, {})
        self.shards = {entry["file"]: entry for entry in section.get("shards", [])}
        self.last_flush = time.monotonic()

    def path(self, name: str) -> str:
        return storage.join(self.out_dir, name)

    def _load(self) -> dict:
        path = self.path(MANIFEST)
        return json.loads(storage.read_text(path)) if storage.exists(path) else {}

    def prune(self, names: set) -> None:
        """Delete this split's shards outside the plan: a glob over the split must not see them."""
        self.planned = len(names)
        for path in storage.glob(self.path(f"{self.split}-?????-of-?????.tfrecord*")):
            if storage.basename(path) not in names:
                storage.remove(path)
        self.shards = {k: v for k, v in self.shards.items() if k in names}

    def is_complete(self, name: str, fingerprint: str) -> bool:
        entry, path = self.shards.get(name), self.path(name)
        return (entry is not None and entry["fingerprint"] == fingerprint and storage.exists(path)
                and storage.size(path) == entry["bytes"])

    def adopt(self, entry: dict) -> None:
        """Add a finished shard's entry (from this process or a Beam worker)."""
        self.shards[entry["file"]] = entry
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
            storage.write_atomic(self.path(MANIFEST), json.dumps(manifest, indent=1))
            path, lines = self.path(REJECTS), [["split", "audio_id", "path", "reason", "detail"]]
            if storage.exists(path):  # other splits' rows stay
                lines += [r for r in list(csv.reader(io.StringIO(storage.read_text(path))))[1:]
                          if r and r[0] != self.split]
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(
                lines + [[self.split, *r] for r in self._all_rejects()])
            storage.write_atomic(path, buffer.getvalue())
        self.last_flush = time.monotonic()


def plan_split(*, out: str, split: str, segments_csv: str | None, list_csv: str | None,
               labels_csv: str | None, audio_dir: str | None, settings: Settings):
    """Rows, rejects and shard plan; the SplitBook; and the shards still to write, for any runner."""
    if (segments_csv is None) == (list_csv is None):
        raise ValueError("give exactly one of segments_csv= or list_csv=")
    if segments_csv and not audio_dir:
        raise ValueError("segments_csv= needs audio_dir= (the folder of Y<YTID>.<ext> files)")
    labels_csv = labels_csv or audioset_labels_csv()
    label_map = LabelMap.from_csv(_local_copy(labels_csv))
    rows, rejects = plan_rows(label_map, segments_csv, list_csv, audio_dir)
    count = max(1, -(-len(rows) // settings.shard_size))
    plan = [(f"{split}-{i:05d}-of-{count:05d}.tfrecord",
             rows[i * settings.shard_size:(i + 1) * settings.shard_size]) for i in range(count)]
    book = SplitBook(storage.local(out), split, settings, labels_csv, label_map, rejects,
                     source=storage.basename(segments_csv or list_csv))
    book.prune({name for name, _ in plan})
    fingerprints = {name: _fingerprint(shard_rows, settings, label_map) for name, shard_rows in plan}
    return book, plan, fingerprints


def _remove_orphans(book, split: str) -> None:
    """Half-written shards of a local run that was killed (kill -9 skips its own clean-up)."""
    for stale in storage.glob(book.path(f"{split}-*.tmp-*")):
        pid = stale.rsplit(".tmp-", 1)[1]
        if pid.isdigit() and not storage.is_url(stale) and not _alive(int(pid)):
            storage.remove(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ingest(*, out: str, split: str, segments_csv: str | None = None, list_csv: str | None = None,
           labels_csv: str | None = None, audio_dir: str | None = None, workers: int = 1,
           settings: Settings = Settings(), progress: bool = True, runner: str = "local",
           beam_args: list[str] | None = None) -> dict:
    """Write <out>/<split>-NNNNN-of-NNNNN.tfrecord shards; returns the split's summary.

    Shards already complete and consistent with manifest.json are kept, not rewritten.
    runner="beam" runs the per-shard step as an Apache Beam pipeline (beam_args: Beam's
    pipeline options; default the DirectRunner with `workers` processes).
    """
    book, plan, fingerprints = plan_split(out=out, split=split, segments_csv=segments_csv,
                                          list_csv=list_csv, labels_csv=labels_csv,
                                          audio_dir=audio_dir, settings=settings)
    if not any(rows for _, rows in plan) and not book.summary()["num_rejects"]:
        # Before any worker starts: an empty CSV would otherwise leave an empty shard.
        raise ValueError(f"{segments_csv or list_csv} has no clip rows (an empty CSV)")
    if runner == "beam":
        from glat_tf.data import beam_ingest  # here: apache-beam is an optional extra
        written = beam_ingest.run(book, plan, fingerprints, workers=workers, beam_args=beam_args,
                                  progress=progress)
        return dict(book.summary(), shards_written=written, shards_kept=len(plan) - written)
    if runner != "local":
        raise ValueError(f"runner must be 'local' or 'beam', got {runner!r}")
    _remove_orphans(book, split)
    todo = [(name, shard_rows) for name, shard_rows in plan
            if not book.is_complete(name, fingerprints[name])]
    tasks = (clip_task(r, settings) for _, shard_rows in todo for r in shard_rows)
    pool = _make_pool(workers)
    written = 0
    try:
        results = _ordered_results(pool, tasks, max_in_flight=8 * workers)
        with tqdm(total=sum(len(r) for _, r in todo), unit="clip", disable=not progress,
                  desc=f"ingest {split}", file=sys.stderr) as bar:
            def counted():
                for result in results:
                    bar.update(1)
                    yield result

            clips = counted()
            for name, shard_rows in todo:
                path = book.path(name)
                book.adopt(write_shard(path, f"{path}.tmp-{os.getpid()}", shard_rows, clips,
                                       settings, fingerprints[name]))
                written += 1
    finally:
        if pool is not None:
            pool.terminate()
        for stale in storage.glob(book.path(f"{split}-*.tmp-{os.getpid()}")):
            storage.remove(stale)
        book.flush()
    return dict(book.summary(), shards_written=written, shards_kept=len(plan) - written)


@one_line_errors("glat-ingest")
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is Beam's (its own --runner=DataflowRunner, --project, ...).
    beam_args = argv[argv.index("--") + 1:] if "--" in argv else None
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="glat-ingest", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--segments", help="AudioSet segments CSV (three '#' header lines)")
    source.add_argument("--list", help="CSV of path,labels (labels by MID or display name)")
    source.add_argument("--verify", metavar="DIR", help="check a shard folder against its "
                        "manifest (every record parses, counts equal) and exit")
    parser.add_argument("--labels", help="class_labels_indices.csv (default: AudioSet's 527)")
    parser.add_argument("--audio-dir", help="folder of Y<YTID>.<ext> clips; base of --list paths")
    parser.add_argument("--out", help="folder for the shards and manifest.json")
    parser.add_argument("--split", help="shard name prefix (default: from the CSV file name)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runner", choices=("local", "beam"), default="local",
                        help="local: a process pool; beam: an Apache Beam pipeline (options "
                             "after --, default the DirectRunner with --workers processes)")
    parser.add_argument("--sample-rate", type=int, default=32000)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard")
    parser.add_argument("--gzip", action="store_true", help="GZIP-compress the shards")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any row is rejected")
    console.add_verbose(parser)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.verify:
        from glat_tf.data import verify
        return verify.main(args.verify)
    if not (args.segments or args.list) or not args.out:
        parser.error("give --segments or --list, and --out (or --verify DIR)")
    if beam_args is not None and args.runner != "beam":
        parser.error("options after -- are Beam's: give --runner beam")
    if args.sample_rate <= 0 or args.clip_seconds <= 0 or args.shard_size <= 0 or args.workers <= 0:
        parser.error("--sample-rate, --clip-seconds, --shard-size and --workers must be positive")
    stem = os.path.splitext(storage.basename(args.segments or args.list))[0]
    split = args.split or stem.removesuffix("_segments")
    settings = Settings(args.sample_rate, args.clip_seconds, args.shard_size, args.gzip)
    # Bad label CSV, unreadable list, mismatched out dir: one line from one_line_errors.
    summary = ingest(out=args.out, split=split, segments_csv=args.segments,
                     list_csv=args.list, labels_csv=args.labels, audio_dir=args.audio_dir,
                     workers=args.workers, settings=settings, runner=args.runner,
                     beam_args=beam_args)
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
