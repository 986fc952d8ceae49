"""glat-ingest --runner beam: the local runner's shard plan, per-clip step and shard writer on Apache Beam.

One Beam element is one shard (its rows as a JSON line): a worker decodes its clips with the
same `shard_writer.decode_task` as the process pool, writes the shard with
`shard_writer.write_shard` under a temporary name, renames it and leaves its manifest entry
in `<out>/.ingest/`. The driver (ingest.py: the plan and the manifest book) merges those
entries into manifest.json and rejects.csv, so a failed or killed pipeline keeps every
finished shard, and a rerun writes only the rest. Shards rather than clips are the elements:
a clip-level shuffle would move every decoded clip (1.2 TB for AudioSet) through Beam's
shuffle. The plan goes to files, not into the pipeline graph:
2M rows would exceed Dataflow's job-graph limit.

Beam's own options pick the engine: none gives the DirectRunner with `workers` processes;
`--runner=DataflowRunner --project=... --region=... --temp_location=gs://...` (or Flink,
Spark) runs the same pipeline there.
"""

from __future__ import annotations

import json
import threading
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from tqdm import tqdm

from glat_tf.data import storage
from glat_tf.data.shard_writer import Row, Settings, clip_task, decode_task, write_shard

STATE = ".ingest"  # beside the shards: plan files and the entries of finished shards
_SHARDS_PER_PLAN_FILE = 64


class WriteShard(beam.DoFn):
    """A plan line -> the written shard; its manifest entry goes to <out>/.ingest/<file>.json."""

    def __init__(self, out_dir: str, settings: Settings):
        self.out_dir, self.settings = out_dir, settings

    def process(self, line: str):
        job = json.loads(line)
        rows = [Row(a, p, tuple(labels), tuple(stamp)) for a, p, labels, stamp in job["rows"]]
        path = storage.join(self.out_dir, job["file"])
        results = (decode_task(clip_task(r, self.settings)) for r in rows)
        # A retried bundle rewrites the same bytes under its own temporary name.
        entry = write_shard(path, f"{path}.tmp-beam-{uuid.uuid4().hex}", rows, results,
                            self.settings, job["fingerprint"])
        storage.write_atomic(storage.join(self.out_dir, STATE, f"{job['file']}.json"),
                             json.dumps(entry))
        yield job["file"]


def _read_lines(path: str):
    return storage.read_text(path).splitlines()


def _entries(book) -> list[str]:
    return storage.glob(storage.join(book.path(STATE), f"{book.split}-*.tfrecord.json"))


def _adopt(book, fingerprints: dict) -> set:
    """Entries of shards that workers finished (this run or a failed one) -> the book."""
    adopted = set()
    for path in _entries(book):
        entry = json.loads(storage.read_text(path))
        name = entry["file"]
        shard = book.path(name)
        if (fingerprints.get(name) == entry["fingerprint"] and storage.exists(shard)
                and storage.size(shard) == entry["bytes"]):
            book.adopt(entry)
            adopted.add(name)
        storage.remove(path)  # in the manifest now, or stale
    return adopted


def _options(workers: int, beam_args: list[str] | None) -> PipelineOptions:
    if beam_args:
        return PipelineOptions(beam_args)
    mode = "multi_processing" if workers > 1 else "in_memory"
    return PipelineOptions([f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"])


def _watch(book, total: int, done: threading.Event, progress: bool) -> None:
    """Progress bar from the entries the workers leave (the driver sees nothing else)."""
    with tqdm(total=total, unit="shard", desc=f"ingest {book.split} (beam)",
              disable=not progress) as bar:
        while not done.wait(1.0):
            bar.update(min(total, len(_entries(book))) - bar.n)
        bar.update(min(total, len(_entries(book))) - bar.n)


def run(book, plan, fingerprints: dict, *, workers: int = 1, beam_args=None,
        progress: bool = True) -> int:
    """Writes the plan's missing shards with Beam; returns how many were written."""
    state = book.path(STATE)
    storage.makedirs(state)
    _adopt(book, fingerprints)
    todo = [(name, rows) for name, rows in plan if not book.is_complete(name, fingerprints[name])]
    if not todo:
        book.flush()
        return 0
    parts = []
    for i in range(0, len(todo), _SHARDS_PER_PLAN_FILE):
        part = storage.join(state, f"{book.split}-plan-{len(parts):05d}.jsonl")
        storage.write_atomic(part, "".join(json.dumps({
            "file": name, "fingerprint": fingerprints[name],
            "rows": [[r.audio_id, r.path, list(r.labels), list(r.stamp)] for r in rows]}) + "\n"
            for name, rows in todo[i:i + _SHARDS_PER_PLAN_FILE]))
        parts.append(part)
    done, written = threading.Event(), set()
    watcher = threading.Thread(target=_watch, args=(book, len(todo), done, progress), daemon=True)
    watcher.start()
    try:
        with beam.Pipeline(options=_options(workers, beam_args)) as pipeline:
            _ = (pipeline
                 | "Plan" >> beam.Create(parts)
                 | "ReadPlan" >> beam.FlatMap(_read_lines)
                 | "Spread" >> beam.Reshuffle()  # no fusion: shards go to every worker
                 | "WriteShard" >> beam.ParDo(WriteShard(book.out_dir, book.settings)))
    finally:
        done.set()
        watcher.join()
        for stale in storage.glob(book.path(f"{book.split}-*.tmp-beam-*")):
            storage.remove(stale)
        for part in parts:
            storage.remove(part)
        written = _adopt(book, fingerprints)
        book.flush()
    return len(written)
