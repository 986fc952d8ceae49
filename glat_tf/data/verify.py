"""glat-ingest --verify DIR: every shard the manifest lists is there, whole, parses, and holds its count.

    glat-ingest --verify shards/        # one line per problem; exit 1 if there is any
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys

from tqdm import tqdm

from glat_tf.data import storage

_SHARD = re.compile(r"^(?P<split>.+)-\d{5}-of-\d{5}\.tfrecord$")


def check_shard(path: str, entry: dict, compression: str, clip_samples: int,
                num_classes: int) -> list[str]:
    """Problems of one shard against its manifest entry (empty: the shard is sound)."""
    import tensorflow as tf

    from glat_tf.data import schema

    if not storage.exists(path):
        return ["missing"]
    problems, size = [], storage.size(path)
    if size != entry["bytes"]:
        problems.append(f"{size} bytes, the manifest says {entry['bytes']}")
    count = 0
    try:
        for record in tf.data.TFRecordDataset(path, compression):
            try:
                example = schema.parse_single(record)
            except tf.errors.InvalidArgumentError:
                problems.append(f"record {count} is not a glat_tf Example")
                break
            if example["num_samples"] != clip_samples or len(example["pcm"]) != clip_samples:
                problems.append(f"record {count} ({example['audio_id']}) holds "
                                f"{len(example['pcm'])} samples, not {clip_samples}")
                break
            if any(not 0 <= i < num_classes for i in example["labels"]):
                problems.append(f"record {count} ({example['audio_id']}) has a label outside "
                                f"0..{num_classes - 1}")
                break
            count += 1
    except tf.errors.DataLossError as exc:
        problems.append(f"unreadable after record {count}: {exc.message.split(' [Op:')[0]}")
    if count != entry["num_records"] and not problems:
        problems.append(f"holds {count} records, the manifest says {entry['num_records']}")
    elif count != entry["num_records"]:
        problems.append(f"{count} of {entry['num_records']} records readable")
    return problems


class DamagedShardsError(ValueError):
    """Shards of a glob that do not match their manifest, found before any was read."""


def _problems(files: list[str], manifests: dict, patterns: list[str]) -> list[tuple]:
    """(shard, one line naming it, records it holds) for every shard that is not as listed."""
    first_folder, first = next(iter(manifests.items()))
    shape = ("num_classes", "sample_rate", "clip_samples")
    problems, present = [], set(files)
    for path in files:
        folder = os.path.dirname(path)
        manifest = manifests[folder]
        if any(manifest.get(k) != first.get(k) for k in shape):
            problems.append((path, f"shard {path} is of another dataset: its manifest.json has "
                             + ", ".join(f"{k} {manifest.get(k)}" for k in shape)
                             + f"; {first_folder}'s has "
                             + ", ".join(f"{k} {first.get(k)}" for k in shape), 0))
            continue
        entry = _entries(manifest).get(storage.basename(path))
        if entry is None:
            problems.append((path, f"shard {path} is not listed in the manifest.json beside it (a "
                             "shard of another ingest or dataset?)", 0))
        elif "bytes" in entry and storage.size(path) != entry["bytes"]:
            problems.append((path, f"damaged shard {path}: {storage.size(path)} bytes, its "
                             f"manifest.json says {entry['bytes']} (truncated, empty or "
                             "replaced)", entry["num_records"]))
    for folder, manifest in manifests.items():
        for name, entry in _entries(manifest).items():
            path = storage.join(folder, name)
            if path not in present and any(fnmatch.fnmatchcase(path, p) for p in patterns):
                problems.append((path, f"damaged shard {path}: listed in manifest.json but missing",
                                 entry["num_records"]))
    return problems


def _entries(manifest: dict) -> dict:
    """{shard file name: its manifest entry, with its split's compression}."""
    return {e["file"]: {**e, "compression": section.get("compression", "")}
            for section in manifest["splits"].values() for e in section["shards"]}


def shards_before_reading(files: list[str], manifests: dict, patterns: list[str],
                          skip: bool) -> tuple[list[str], list[tuple[str, dict]]]:
    """The shards fit to read and their (compression, manifest entry), checked by listing and
    size alone (no shard is opened): a truncated shard costs no training. A damaged one raises
    DamagedShardsError, or with `skip` is left out and its records counted in DAMAGE."""
    from glat_tf.data.damage import DAMAGE

    problems = _problems(files, manifests, patterns)
    if problems and not skip:
        more = f" (and {len(problems) - 1} more: glat-ingest --verify lists them)" \
            if len(problems) > 1 else ""
        raise DamagedShardsError(problems[0][1] + more)
    for _, line, lost in problems:
        DAMAGE.report(line, lost)
    bad = {path for path, _, _ in problems}
    kept = [f for f in files if f not in bad]
    if not kept:
        raise DamagedShardsError(f"no readable shard left: {problems[0][1]}")
    found = []
    for path in kept:
        folder = os.path.dirname(path)
        entry = _entries(manifests[folder])[storage.basename(path)]
        found.append((entry["compression"], entry))
    return kept, found


def verify(shard_dir: str, progress: bool = True) -> tuple[list[str], dict]:
    """(["<file>: <problem>", ...], totals) for a folder that glat-ingest wrote."""
    manifest_path = storage.join(shard_dir, "manifest.json")
    if not storage.exists(manifest_path):
        return [f"{manifest_path}: missing (not a glat-ingest folder?)"], {}
    manifest = json.loads(storage.read_text(manifest_path))
    problems, listed, totals = [], set(), {"shards": 0, "records": 0}
    jobs = [(split, section, entry) for split, section in manifest["splits"].items()
            for entry in section["shards"]]
    for split, section in manifest["splits"].items():
        if not section.get("complete", True):
            problems.append(f"split {split}: incomplete (ingest did not finish; rerun it)")
    for split, section, entry in tqdm(jobs, unit="shard", desc="verify", disable=not progress,
                                      file=sys.stderr):
        listed.add(entry["file"])
        found = check_shard(storage.join(shard_dir, entry["file"]), entry,
                            section.get("compression", ""), manifest["clip_samples"],
                            manifest["num_classes"])
        problems += [f"{entry['file']}: {p}" for p in found]
        totals["shards"] += 1
        totals["records"] += entry["num_records"]
    for name in sorted(storage.listdir(shard_dir)):
        match = _SHARD.match(name)
        if match and name not in listed:
            problems.append(f"{name}: not in the manifest (a glob over split "
                            f"{match['split']} would read it)")
    return problems, totals


def main(shard_dir: str) -> int:
    problems, totals = verify(shard_dir)
    for line in problems:
        print(line)
    if problems:
        print(f"verify: {len(problems)} problem(s) in {shard_dir}; delete the damaged shards "
              "and rerun the same glat-ingest command: it writes the missing ones", file=sys.stderr)
        return 1
    print(f"verify: ok, {totals['shards']} shards, {totals['records']} records match "
          f"{storage.join(shard_dir, 'manifest.json')}")
    return 0
