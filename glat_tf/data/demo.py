"""The built-in demo data: the synthetic set, ingested into train and eval shards once, reused after."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from glat_tf.data import ingest, synthetic


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished folder into place; if another process got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp)


def _shards_ready(shard_dir: Path) -> dict | None:
    path = shard_dir / ingest.MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    splits = manifest.get("splits", {})
    for split in ("train", "eval"):
        section = splits.get(split)
        if not section or not section["complete"]:
            return None
        if not all((shard_dir / e["file"]).exists() for e in section["shards"]):
            return None
    return manifest


def ensure_demo_shards(root: str | os.PathLike = "demo_data", seed: int = 0, *, n_train: int = 400,
                       n_eval: int = 120, shard_size: int = 64, workers: int = 2) -> dict:
    """Make (if absent) and ingest (if absent) the synthetic demo set; quick when both exist.

    Returns train and eval shard globs, labels_csv, strong_labels, manifest, raw_dir, shard_dir.
    Each (generator version, seed, sizes) gets its own folder under root, written under a
    temporary name and renamed when complete: concurrent callers and interrupted runs never
    see half a set.
    Example:
        demo = ensure_demo_shards()
        ds = glat_tf.data.pipeline.train_dataset(demo["train"], 8, len(demo["manifest"]["labels"]))
    """
    base = Path(root) / f"synthetic-v{synthetic.VERSION}-seed{seed}-{n_train}x{n_eval}"
    base.mkdir(parents=True, exist_ok=True)
    raw, shard_dir = base / "raw", base / "shards"
    tag = f"tmp-{os.getpid()}"
    if not (raw / "strong_labels.csv").exists():
        tmp = base / f"raw.{tag}"
        synthetic.make_demo_set(tmp, seed=seed, n_train=n_train, n_eval=n_eval)
        _publish(tmp, raw)
    manifest = _shards_ready(shard_dir)
    if manifest is None:
        tmp = shard_dir if shard_dir.exists() else base / f"shards.{tag}"  # resume in place
        settings = ingest.Settings(synthetic.SAMPLE_RATE, synthetic.CLIP_SECONDS, shard_size)
        for split, csv_name in (("train", "balanced_train_segments.csv"),
                                ("eval", "eval_segments.csv")):
            summary = ingest.ingest(out=str(tmp), split=split, segments_csv=str(raw / csv_name),
                                    labels_csv=str(raw / "class_labels_indices.csv"),
                                    audio_dir=str(raw / "audio"), workers=workers,
                                    settings=settings, progress=False)
            if summary["num_rejects"]:
                raise RuntimeError(f"demo ingest rejected clips: {summary['rejects']} (see {tmp})")
        if tmp != shard_dir:
            _publish(tmp, shard_dir)
        manifest = _shards_ready(shard_dir)
    return {"train": str(shard_dir / "train-*-of-*.tfrecord"),
            "eval": str(shard_dir / "eval-*-of-*.tfrecord"),
            "labels_csv": str(shard_dir / ingest.LABELS_NAME),
            "strong_labels": str(raw / "strong_labels.csv"),
            "manifest": manifest, "raw_dir": str(raw), "shard_dir": str(shard_dir)}


if __name__ == "__main__":
    for key, value in ensure_demo_shards().items():
        print(f"{key:14s} {value if key != 'manifest' else '(manifest.json)'}")
