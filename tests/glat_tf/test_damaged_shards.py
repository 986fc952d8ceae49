"""Damaged shards: one line naming the file, --skip-corrupt counts and goes on, a checkpoint first, --verify."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.data_fixtures import small_demo, write_tiny_shards  # noqa: F401 (fixture)
from glat_tf.data import ingest, pipeline, verify


def _truncate(path, keep: float = 0.5) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])


def _flip(path, at: float = 0.5) -> None:
    data = bytearray(Path(path).read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def _tiny(tmp_path, split="train", n=40, samples=8):
    clips = [(f"t{i:03d}", np.full(samples, i, np.int16), [i % 4]) for i in range(n)]
    pattern = write_tiny_shards(tmp_path / split, clips, 10, 4, manifest=True, split=split)
    return pattern, sorted(glob.glob(pattern))


def test_a_truncated_training_shard_is_named_or_skipped_and_counted(tmp_path):
    pattern, files = _tiny(tmp_path)
    _truncate(files[2])
    with pytest.raises(pipeline.READ_ERRORS) as info:
        for _ in pipeline.train_dataset(pattern, 8, 4, seed=0).take(50):
            pass
    assert pipeline.input_error_line(info.value).startswith(f"damaged shard {files[2]}: read ")
    before = pipeline.DAMAGE.skipped
    waves = [w for w, _ in pipeline.train_dataset(pattern, 8, 4, seed=0, skip_corrupt=True,
                                                  balanced=False).take(30)]
    assert len(waves) == 30  # went on, over several passes
    lost = pipeline.DAMAGE.skipped - before
    assert lost > 0 and lost % 5 in (0, 5 - 10 % 5)  # a whole tail of the file per pass
    assert files[2] in pipeline.DAMAGE.last


def test_a_corrupt_evaluation_record_is_named_and_clean_shards_pass(tmp_path):
    pattern, files = _tiny(tmp_path, "eval", n=30)
    assert sum(len(w) for w, _ in pipeline.eval_dataset(pattern, 7, 4)) == 30
    _flip(files[1])
    with pytest.raises(pipeline.READ_ERRORS) as info:
        list(pipeline.eval_dataset(pattern, 7, 4))
    assert pipeline.input_error_line(info.value).startswith(f"damaged shard {files[1]}")
    # without a manifest the file is unknown, but the line still says what to do
    (tmp_path / "eval" / "manifest.json").unlink()
    with pytest.raises(pipeline.READ_ERRORS) as info:
        list(pipeline.eval_dataset(pattern, 7, 4))
    line = pipeline.input_error_line(info.value)
    assert "corrupted record" in line and "glat-ingest --verify" in line and "\n" not in line
    with pytest.raises(ValueError, match="manifest"):
        pipeline.train_dataset(pattern, 4, 4, balanced=False, skip_corrupt=True)


def test_training_checkpoints_the_finished_steps_before_it_stops(tmp_path):
    from tests.train.test_train import CHEAP
    from glat_tf.baseline import Baseline
    from train.loop import DamagedInputError, LoopSettings, Trainer

    clean, _ = _tiny(tmp_path / "clean", samples=64000)
    damaged, files = _tiny(tmp_path / "damaged", samples=64000)
    _truncate(files[0], 0.3)

    def train_data(ctx, seed, start):  # 3 good batches, then the damaged shards
        return pipeline.train_dataset(clean, 4, 4, seed=0).take(3).concatenate(
            pipeline.train_dataset(damaged, 4, 4, seed=0, skip_corrupt=False))

    def build():
        model = Baseline("cnn6_tiny", 4, backbone_kwargs=CHEAP)
        model.build((None, 64000))
        return model

    out = tmp_path / "run"
    trainer = Trainer(tf.distribute.get_strategy(), build, train_data, None,
                      LoopSettings(steps=20, batch_size=4, seed=0, progress=False,
                                   checkpoint_every=100), str(out))
    with pytest.raises(DamagedInputError, match=f"damaged shard {files[0]}.*step 3"):
        trainer.run()
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-3")


@pytest.mark.slow
def test_glat_fit_names_the_file_or_skips_with_a_count_in_the_log_and_tensorboard(tmp_path):
    from tests.train.test_train import TINY, make_tone_shards, run_fit

    shards = make_tone_shards(tmp_path / "tones", n_train=32, n_eval=8)
    damaged = sorted(glob.glob(shards["train"]))[1]
    _truncate(damaged)
    common = ["--train", shards["train"], *TINY, "--backbone-only", "--steps", "6"]
    proc = run_fit([*common, "--out", str(tmp_path / "strict")])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    [line] = [l for l in proc.stderr.splitlines() if l.startswith("glat-fit: error:")]
    assert f"damaged shard {damaged}" in line and "--resume" in line

    proc = run_fit([*common, "--skip-corrupt", "--out", str(tmp_path / "skip")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "damaged records skipped so far" in proc.stdout and damaged in proc.stdout
    events = glob.glob(str(tmp_path / "skip" / "tensorboard" / "events.*"))
    tags = {v.tag: tf.make_ndarray(v.tensor) for e in tf.compat.v1.train.summary_iterator(events[0])
            for v in e.summary.value}
    assert tags["train/skipped_records"] > 0


def test_verify_names_every_damaged_missing_or_stray_shard(small_demo, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "shards"
    shutil.copytree(small_demo["shard_dir"], folder)
    assert ingest.main(["--verify", str(folder)]) == 0
    assert "verify: ok, 5 shards, 36 records" in capsys.readouterr().out
    names = sorted(p.name for p in folder.glob("*.tfrecord"))
    _truncate(folder / names[0])
    _flip(folder / names[1], 0.7)
    (folder / names[2]).unlink()
    shutil.copy(folder / names[3], folder / "train-00007-of-00009.tfrecord")
    assert ingest.main(["--verify", str(folder)]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = {line.split(":")[0] for line in out}
    assert problems == {names[0], names[1], names[2], "train-00007-of-00009.tfrecord"}, out
    assert any(l.startswith(f"{names[0]}: ") and "bytes, the manifest says" in l for l in out)
    assert any(l.startswith(f"{names[1]}: unreadable after record") for l in out)
    assert f"{names[2]}: missing" in out
    problems, _ = verify.verify(str(folder), progress=False)
    assert len(problems) == len(out)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["splits"]["train"]["num_shards"] == 3
