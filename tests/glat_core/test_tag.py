"""glat-tag and the Tagger: files and folders of any format, rate, channels, length."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import soxr

import glat_tf
from export.saved_model import export_saved_model
from export.tflite import export_tflite
from glat_tf import GlatModel
from glat_tf.data.labels import LabelMap
from glat_tf.data.synthetic import make_clip
from tests.harness import check

NAMES = ("alpha", "beta", "gamma")
NOISE = ("oneDNN", "cpu_feature_guard", "cuda", "absl::InitializeLog", "I0000", "E0000")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    model = GlatModel.from_preset("cnn10_tiny", num_classes=3, n_clips=2, tau=1.0,
                                  class_names=NAMES, class_mids=tuple(f"/m/{n}" for n in NAMES))
    model(np.zeros([1, 320000], np.float32))
    model.save(root / "model.keras")
    labels = LabelMap(tuple(f"/m/{n}" for n in NAMES), NAMES)
    export_saved_model(model, root / "serving", labels)
    export_tflite(model, root / "lite", labels, variants=("f32",), window_samples=320000)
    return model, root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("audio")
    long = np.concatenate([make_clip(rng)[0], make_clip(rng)[0], make_clip(rng)[0][:5 * 32000]])
    stereo = soxr.resample(np.stack([long, long[::-1]], axis=1), 32000, 44100)
    soundfile.write(folder / "long_stereo.flac", stereo, 44100)  # 25 s, 2 ch, 44.1 kHz
    soundfile.write(folder / "short.ogg", make_clip(rng)[0][:3 * 32000], 32000)
    (folder / "sub").mkdir()
    soundfile.write(folder / "sub" / "clip16k.wav", soxr.resample(make_clip(rng)[0], 32000, 16000),
                    16000)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return folder


def run_cli(*args, module="glat_core.tag"):
    # As a user runs it: without the test suite's own TF_CPP_MIN_LOG_LEVEL.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_cli_tags_a_folder_skips_bad_files_and_stays_quiet(models, folder, tmp_path, clip_path):
    model, root = models
    out = tmp_path / "tags.jsonl"
    done = run_cli(root / "model.keras", folder, clip_path.with_suffix(".mp3"), "--out", out,
                   "--timeline", tmp_path / "timeline.png", "--top-k", "2")
    assert done.returncode == 1, done.stderr  # one file skipped
    assert "skipped" in done.stderr and "broken.wav" in done.stderr
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)], \
        done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"].rsplit("/", 1)[-1], []).append(row)
    assert sorted(by_file) == ["R9_ZSCveAHg_7s.mp3", "clip16k.wav", "long_stereo.flac",
                               "short.ogg"]
    assert [(r["start_seconds"], r["end_seconds"]) for r in by_file["long_stereo.flac"]] == [
        (0, 10), (5, 15), (10, 20), (15, 25)]
    assert [(r["start_seconds"], r["end_seconds"]) for r in by_file["short.ogg"]] == [(0, 3)]
    # A 7 s file is one 7 s window; its clips lie inside it.
    real = by_file["R9_ZSCveAHg_7s.mp3"]
    assert len(real) == 1 and real[0]["end_seconds"] == pytest.approx(7.0, abs=0.01)
    assert all(0 <= c["start_seconds"] < c["end_seconds"] <= 7.0 for c in real[0]["clips"])
    first = by_file["long_stereo.flac"][1]
    assert len(first["top"]) == 2 and {t["label"] for t in first["top"]} <= set(NAMES)
    assert {t["mid"] for t in first["top"]} <= {f"/m/{n}" for n in NAMES}
    assert all(5 <= c["start_seconds"] and c["end_seconds"] <= 15 + 1e-6 for c in first["clips"])
    # The record is the model's answer on that window (mixed to mono, resampled).
    audio, rate = soundfile.read(folder / "long_stereo.flac", dtype="float32")
    mono = soxr.resample(audio.mean(axis=1), rate, 32000).astype(np.float32)
    fused = model(mono[None, 5 * 32000:15 * 32000], training=False)["fused"].numpy()[0]
    for item in first["top"]:
        assert abs(item["fused"] - fused[NAMES.index(item["label"])]) < 1e-4
    assert (tmp_path / "timeline.png").stat().st_size > 10_000

    csv_out = tmp_path / "tags.csv"
    done = run_cli(root / "model.keras", folder / "short.ogg", "--out", csv_out, "--verbose")
    assert done.returncode == 0
    assert any(n in done.stderr for n in NOISE)  # --verbose shows TensorFlow's start-up
    header = csv_out.read_text().splitlines()[0]
    assert header.startswith("file,start_seconds,end_seconds,label_1,mid_1,fused_1,global_1,"
                             "local_1")


@pytest.mark.slow
def test_python_tagger_same_from_every_model_kind(models, clip_path):
    model, root = models
    stereo, _ = soundfile.read(clip_path, dtype="float32")
    keras_tags = glat_tf.Tagger.load(root / "model.keras").tag(clip_path)
    assert keras_tags.names == list(NAMES)
    expected = model(stereo[None], training=False)
    np.testing.assert_allclose(keras_tags.fused[0], expected["fused"][0], atol=1e-5)
    # clip_starts are int samples, as the model's own output.
    np.testing.assert_array_equal(keras_tags.clip_starts[0], expected["clip_starts"][0])
    saved = glat_tf.Tagger.load(root / "serving").tag(clip_path)
    check.assert_outputs_close({"fused": saved.fused}, {"fused": keras_tags.fused}, "glat_model")
    # LiteRT tags the 7 s clip at its own length too: no padding to the 10 s window.
    lite = glat_tf.Tagger.load(root / "lite").tag(clip_path)
    check.assert_outputs_close({"fused": lite.fused}, {"fused": keras_tags.fused}, "tagger")
    np.testing.assert_array_equal(lite.clip_starts, keras_tags.clip_starts)
    # A waveform at another rate, with channels, is resampled and mixed like a file.
    at_16k = soxr.resample(np.stack([stereo, stereo], axis=1), 32000, 16000)
    again = glat_tf.Tagger.load(root / "model.keras").tag(at_16k, sample_rate=16000)
    assert again.fused.shape == (1, 3)


@pytest.mark.parametrize("module", ["glat_tf.data.ingest", "train.fit", "train.evaluate",
                                    "export.cli"])
def test_other_clis_start_quietly(module, tmp_path):
    # An error after TensorFlow is loaded: the CLI ran its imports and parsed arguments.
    done = run_cli("--no-such-flag", module=module)
    assert done.returncode == 2 and "error:" in done.stderr
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)], \
        done.stderr


def test_progress_writes_plain_lines_when_not_a_terminal():
    import io
    from glat_core.console import Progress
    stream = io.StringIO()
    with Progress(total=200, file=stream, desc="work") as bar:
        for _ in range(200):
            bar.update(1)
            bar.set_postfix(loss=0.5)  # shown with the next line, not a line of its own
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 15 <= len(lines) <= 25, lines  # one line per 5 %, not one per item
    assert lines[-1].startswith("work: 100%") and "loss=0.5" in lines[-1]
