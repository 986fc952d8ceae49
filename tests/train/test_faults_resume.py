"""Kill and resume, exactly; runs that go wrong (NaN, a full disk): glat-fit in subprocesses."""

from __future__ import annotations

import json
import os
import resource
import signal
import zipfile

import numpy as np
import pytest

from tests.train.test_faults_data import TIMEOUT, TINY, error_line, make_set, run_cli

# Kills the process at the GLAT_KILL_AT="<point>:<n>"-th time it reaches <point>, as a kill -9
# there would: mid-step (the step ran, nothing recorded it), mid-evaluation, half-way through
# a checkpoint's data or a .keras file. "sigterm-eval" sends SIGTERM mid-evaluation instead.
KILLER = '''
import os, signal
point, _, nth = os.environ.get("GLAT_KILL_AT", ":0").partition(":")
reached = [0]
def due():
    reached[0] += 1
    return reached[0] == int(nth)
def die():
    os.kill(os.getpid(), signal.SIGKILL)
import keras, tensorflow as tf
import train.loop as loop
if point == "step":
    make = loop.make_train_step
    def make_killing(*a, **k):
        step = make(*a, **k)
        def killing(iterator):
            out = step(iterator)
            if due():
                die()
            return out
        return killing
    loop.make_train_step = make_killing
elif point in ("eval", "sigterm-eval"):
    predict = loop.predict
    def predict_killing(model, dataset, **k):
        def batches():
            for i, batch in enumerate(dataset):
                if i == 1 and due():
                    os.kill(os.getpid(), signal.SIGTERM) if point == "sigterm-eval" else die()
                yield batch
        return predict(model, batches(), **k)
    loop.predict = predict_killing
elif point == "checkpoint":
    save = tf.train.CheckpointManager.save
    def save_killing(self, checkpoint_number=None, **k):
        if due():
            prefix = os.path.join(self.directory, f"ckpt-{checkpoint_number}")
            self._checkpoint.write(prefix)
            with open(prefix + ".data-00000-of-00001", "r+b") as f:
                f.truncate(os.path.getsize(f.name) // 2)
            die()
        return save(self, checkpoint_number=checkpoint_number, **k)
    tf.train.CheckpointManager.save = save_killing
elif point in ("best", "final"):
    model_save = keras.Model.save
    def save_killing(self, path, *a, **k):
        model_save(self, path, *a, **k)
        if os.path.basename(str(path)) == point + ".keras" and due():
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
            die()
    keras.Model.save = save_killing
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_set(tmp_path_factory.mktemp("resume"), n_train=32, n_eval=16)
    return ["--train", root / "train" / "train-*.tfrecord", "--eval",
            root / "eval" / "eval-*.tfrecord"]


def assert_nothing_half_written(out):
    """Every file a user would load is whole: the .keras zips, the latest checkpoint."""
    import tensorflow as tf

    for name in ("best.keras", "final.keras"):
        if (out / name).exists():
            with zipfile.ZipFile(out / name) as archive:
                assert archive.testzip() is None, name
    assert {p.name for p in out.glob("*.keras")} <= {"best.keras", "final.keras"}
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    if latest is not None:
        tf.train.load_checkpoint(latest).get_variable_to_shape_map()


def max_abs_diff(a, b) -> float:
    import keras

    first, second = keras.saving.load_model(a), keras.saving.load_model(b)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) if np.size(x) else 0.0
               for x, y in zip(first.weights, second.weights, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(12 * TIMEOUT)
def test_killed_anywhere_and_resumed_ends_with_the_uninterrupted_weights(data, tmp_path):
    common = [*data, *TINY, "--steps", "6", "--eval-every", "3", "--checkpoint-every", "2"]
    whole, _ = run_cli([*common, "--out", tmp_path / "whole"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    # In order: the first evaluation (step 3, checkpoint 2 on disk), best.keras of that
    # evaluation, SIGTERM in it, the checkpoint of step 4, step 5, final.keras.
    for point, code in (("eval:1", -9), ("best:1", -9), ("sigterm-eval:1", 128 + 15),
                        ("checkpoint:1", -9), ("step:2", -9), ("final:1", -9), (":0", 0)):
        resume = ["--resume"] if (out / "checkpoints").exists() else []
        proc, _ = run_cli([*common, "--out", out, *resume], prelude=KILLER,
                          env={"GLAT_KILL_AT": point})
        assert proc.returncode == code, (point, proc.stderr[-3000:])
        assert_nothing_half_written(out)
        if point.startswith("sigterm"):
            assert "continue with --resume" in proc.stdout
    diff = max_abs_diff(whole_out := tmp_path / "whole" / "final.keras", out / "final.keras")
    if os.environ.get("GLAT_FAULT_TIMES"):
        with open(os.environ["GLAT_FAULT_TIMES"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": "resume max |diff|", "value": diff}) + "\n")
    assert diff == 0.0  # bit-identical: one machine, one seed
    assert max_abs_diff(whole_out.with_name("best.keras"), out / "best.keras") == 0.0
    logs = [[json.loads(line) for line in (folder / "eval_log.jsonl").read_text().splitlines()]
            for folder in (tmp_path / "whole", out)]
    assert logs[0] == logs[1]  # each evaluation once, with the same numbers


@pytest.mark.timeout(2 * TIMEOUT)
def test_a_diverging_run_stops_naming_the_step_and_saves_nothing_from_it(data, tmp_path):
    out = tmp_path / "run"
    # lr 1e3 saturates this model without overflowing (its loss stays finite); 1e30 overflows
    proc, _ = run_cli([*data, *TINY, "--steps", "6", "--eval-every", "1",
                       "--checkpoint-every", "1", "--lr", "1e30", "--out", out])
    line = error_line(proc)
    assert "non-finite" in line and "step" in line, line
    step = int(line.split("step ")[1].split()[0].rstrip(";:,"))
    assert not (out / "final.keras").exists()
    saved = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("*.index"))
    assert saved and max(saved) < step, (saved, line)
    assert f"checkpoint of step {max(saved)} is kept" in line
    if (out / "best.keras").exists():
        import keras
        model = keras.saving.load_model(out / "best.keras")
        assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)


@pytest.mark.timeout(3 * TIMEOUT)
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    common = [data[0], data[1], *TINY, "--checkpoint-every", "2", "--out", out]
    first, _ = run_cli([*common, "--steps", "2"])
    assert first.returncode == 0, first.stderr[-3000:]
    size = (out / "checkpoints" / "ckpt-2.data-00000-of-00001").stat().st_size

    def small_disk():  # no file may grow past half a checkpoint (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    proc, _ = run_cli([*common, "--steps", "4", "--resume"], preexec_fn=small_disk)
    line = error_line(proc)
    assert "could not write the checkpoint of step 4" in line, line
    assert "the checkpoint of step 2 is intact" in line, line
    assert not list((out / "checkpoints").glob("ckpt-4*"))
    assert_nothing_half_written(out)
    again, _ = run_cli([*common, "--steps", "4", "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed" in again.stdout and "at step 2" in again.stdout


@pytest.mark.parametrize("index", (True, False), ids=("indexed", "streaming"))
def test_a_seeded_stream_started_at_batch_k_is_the_tail_of_the_whole_stream(tmp_path, index):
    from glat_tf.data import pipeline

    root = make_set(tmp_path, n_train=24, n_eval=8, index=index)
    pattern = str(root / "train" / "train-*.tfrecord")

    def batches(start, n):
        ds = pipeline.train_dataset(pattern, 4, 4, seed=3, mixup_alpha=0.4, crop_samples=16000,
                                    shuffle_buffer=16, start_batch=start)
        return [(w.numpy(), y.numpy()) for w, y in ds.take(n)]

    whole, tail = batches(0, 7), batches(4, 3)
    for (w1, y1), (w2, y2) in zip(whole[4:], tail, strict=True):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(y1, y2)
