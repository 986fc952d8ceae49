"""Object storage: ingest from and to tf.io.gfile URLs (ram://, file://), glat-fit and glat-eval on URL globs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.data_fixtures import small_demo  # noqa: F401 (fixture)
from glat_tf.data import ingest, pipeline, storage


def _copy_tree(src: Path, dst: str) -> None:
    tf.io.gfile.makedirs(dst)
    for path in src.iterdir():
        if path.is_file():
            tf.io.gfile.copy(str(path), f"{dst}/{path.name}", overwrite=True)


def _shard_bytes(glob: str) -> dict:
    return {storage.basename(p): storage.read_bytes(p) for p in storage.glob(glob)}


def _segments_args(raw: Path, audio: str, out: str) -> dict:
    return dict(out=out, split="eval", segments_csv=str(raw / "eval_segments.csv"),
                labels_csv=str(raw / "class_labels_indices.csv"), audio_dir=audio,
                settings=ingest.Settings(shard_size=5), progress=False)


def test_ingest_from_and_to_an_in_memory_store_and_a_file_url(small_demo, tmp_path):  # noqa: F811
    raw = Path(small_demo["raw_dir"])
    local = ingest.ingest(**_segments_args(raw, str(raw / "audio"), str(tmp_path / "local")))
    ram = f"ram://glat-{uuid.uuid4().hex}"
    _copy_tree(raw / "audio", f"{ram}/audio")  # the clips live only in the store
    summary = ingest.ingest(**_segments_args(raw, f"{ram}/audio", f"{ram}/shards"))
    assert summary["num_clips"] == local["num_clips"] == 12 and summary["num_rejects"] == 0
    expected = _shard_bytes(str(tmp_path / "local" / "eval-*.tfrecord"))
    assert _shard_bytes(f"{ram}/shards/eval-*.tfrecord") == expected
    entries = json.loads(storage.read_text(f"{ram}/shards/manifest.json"))["splits"]["eval"]["shards"]
    drop = lambda e: {k: v for k, v in e.items() if k != "fingerprint"}  # (file mtimes differ)
    assert [drop(e) for e in entries] == [drop(e) for e in local["shards"]]
    again = ingest.ingest(**_segments_args(raw, f"{ram}/audio", f"{ram}/shards"))
    assert again["shards_kept"] == 3  # resume works on the store too
    # file:// URLs, with a process pool
    url = f"file://{tmp_path}/fileurl"
    args = _segments_args(raw, f"file://{raw / 'audio'}", url)
    assert ingest.ingest(**args, workers=2)["num_clips"] == 12
    assert _shard_bytes(str(tmp_path / "fileurl" / "eval-*.tfrecord")) == expected
    # and the pipeline reads the shards from both
    for glob in (f"{ram}/shards/eval-*.tfrecord", f"{url}/eval-*.tfrecord"):
        ids = [i.decode() for *_, b in pipeline.eval_dataset(glob, 5, 10, with_ids=True)
               for i in b.numpy()]
        assert len(ids) == 12 and ids == sorted(ids)
        wave, labels = next(iter(pipeline.train_dataset(glob, 4, 10, seed=0)))
        assert wave.shape == (4, 320000) and np.all(labels.numpy().sum(1) >= 1)


@pytest.mark.slow
def test_glat_fit_and_glat_eval_read_shard_globs_from_a_url(tmp_path):
    from tests.train.test_train import TINY, make_tone_shards
    from train import evaluate, fit

    local = make_tone_shards(tmp_path / "tones", n_train=16, n_eval=8)
    ram = f"ram://tones-{uuid.uuid4().hex}"
    for split in ("train", "eval"):
        _copy_tree(tmp_path / "tones" / split, f"{ram}/{split}")
    out = tmp_path / "run"
    assert fit.main(["--train", f"{ram}/train/train-*.tfrecord", "--eval",
                     f"{ram}/eval/eval-*.tfrecord", *TINY, "--backbone-only", "--steps", "2",
                     "--eval-every", "2", "--out", str(out)]) == 0
    assert (out / "final.keras").exists() and local["train"].startswith(str(tmp_path))
    assert evaluate.main(["--model", str(out / "final.keras"), "--eval",
                          f"{ram}/eval/eval-*.tfrecord", "--out", str(tmp_path / "ev"),
                          "--no-progress"]) == 0
    assert "global" in json.loads((tmp_path / "ev" / "summary.json").read_text())
