"""Ingest: AudioSet and list inputs, MP3, padding and resampling, rejects, resume, determinism."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.data_fixtures import R9_MP3, R9_WAV, small_demo  # noqa: F401 (fixture)
from glat_tf.data import ingest, pipeline, shard_writer
from glat_tf.data.labels import read_segments_csv


def _records(pattern):
    import tensorflow as tf

    from glat_tf.data import schema
    files = sorted(Path(p) for p in tf.io.gfile.glob(str(pattern)))
    return [schema.parse_single(r) for r in tf.data.TFRecordDataset([str(f) for f in files])]


def _rejects(out):
    with open(Path(out) / "rejects.csv", newline="") as f:
        return {r["audio_id"]: r["reason"] for r in csv.DictReader(f)}


def _ingest_list(tmp_path, rows, *extra, out="out"):
    listing = tmp_path / "list.csv"
    listing.write_text("path,labels\n" + "".join(f"{p},{l}\n" for p, l in rows))
    code = ingest.main(["--list", str(listing), "--out", str(tmp_path / out), "--split", "s",
                        "--workers", "1", *extra])
    return code, tmp_path / out


def test_demo_set_lands_with_manifest_and_labels(small_demo):  # noqa: F811
    manifest, shards = small_demo["manifest"], Path(small_demo["shard_dir"])
    train = manifest["splits"]["train"]
    assert (manifest["sample_rate"], manifest["clip_samples"], manifest["num_classes"]) == (32000, 320000, 10)
    assert train["num_clips"] == 24 and train["num_shards"] == 3 and train["num_rejects"] == 0
    assert [e["file"] for e in train["shards"]] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert (shards / "class_labels_indices.csv").read_text().startswith("index,mid,display_name\n")
    expected = {ytid: mids for ytid, mids, _ in
                read_segments_csv(Path(small_demo["raw_dir"]) / "balanced_train_segments.csv")}
    records = _records(small_demo["train"])
    assert [r["audio_id"] for r in records] == sorted(expected)  # shards hold sorted ids
    mids = [entry["mid"] for entry in manifest["labels"]]
    for r in records:
        assert [mids[i] for i in r["labels"]] == sorted(expected[r["audio_id"]], key=mids.index)
        assert r["pcm"].dtype == np.int16 and r["num_samples"] == 320000
    assert sum(train["class_counts"]) == sum(len(v) for v in expected.values())


def test_r9_wav_is_padded_to_10_s_unchanged(tmp_path):
    shutil.copy(R9_WAV, tmp_path / "r9.wav")
    code, out = _ingest_list(tmp_path, [("r9.wav", "Speech"), ("r9.wav", "Music")])
    assert code == 0
    [record] = _records(out / "s-*.tfrecord")
    original = sf.read(R9_WAV, dtype="int16")[0]
    assert record["num_samples"] == 320000 and record["labels"] == [0]
    assert np.array_equal(record["pcm"][:224000], original) and not record["pcm"][224000:].any()
    assert _rejects(out) == {"r9": "duplicate_id"}  # the second row names the same clip


def test_mp3_decodes_like_the_wav(tmp_path):
    shutil.copy(R9_MP3, tmp_path / "clip.mp3")
    code, out = _ingest_list(tmp_path, [("clip.mp3", '"/m/09x0r,Music"')])
    assert code == 0
    [record] = _records(out / "s-*.tfrecord")
    assert record["labels"] == [0, 137] and record["num_samples"] == 320000
    pcm = record["pcm"].astype(np.float64)
    original = sf.read(R9_WAV, dtype="int16")[0].astype(np.float64)
    assert not pcm[224000 + 2000:].any()  # decoder delay aside, the padding is silent
    assert abs(np.std(pcm[:224000]) / np.std(original) - 1) < 0.1


def test_resampled_waveform_matches_soxr_within_int16_quantisation(tmp_path):
    shutil.copy(R9_WAV, tmp_path / "r9.wav")
    code, out = _ingest_list(tmp_path, [("r9.wav", "Speech")], "--sample-rate", "16000",
                             "--clip-seconds", "8")
    assert code == 0
    wave, labels = next(iter(pipeline.eval_dataset(str(out / "s-*.tfrecord"), 4, 527)))
    original = sf.read(R9_WAV, dtype="float32")[0]
    reference = np.zeros(128000, np.float32)
    resampled = soxr.resample(original, 32000, 16000, quality="HQ")
    reference[:resampled.shape[0]] = resampled
    assert wave.shape == (1, 128000) and labels.numpy()[0, 0] == 1
    assert np.max(np.abs(wave.numpy()[0] - reference)) <= 0.5 / 32768 + 1e-7


def test_bad_inputs_end_in_rejects_and_the_rest_lands(tmp_path):
    rate = 32000
    tone = (0.1 * np.sin(np.arange(rate) * 0.05)).astype(np.float32)
    sf.write(tmp_path / "good.wav", tone, rate)
    sf.write(tmp_path / "stereo.flac", np.stack([tone, -tone * 0.5], 1), 48000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    (tmp_path / "empty.wav").write_bytes(b"")
    nan = tone.copy()
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, rate, subtype="FLOAT")
    sf.write(tmp_path / "cut.wav", tone, rate)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    rows = [("good.wav", "Speech"), ("stereo.flac", "Music;Speech"), ("corrupt.wav", "Speech"),
            ("missing.wav", "Speech"), ("empty.wav", "Speech"), ("nan.wav", "Speech"),
            ("cut.wav", "Speech"), ("good2.wav", "Not a class"), ("good3.wav", "")]
    code, out = _ingest_list(tmp_path, rows)
    assert code == 0
    assert _rejects(out) == {"corrupt": "unreadable", "missing": "missing_file",
                             "empty": "empty_file", "nan": "non_finite", "cut": "truncated",
                             "good2": "unknown_label", "good3": "no_labels"}
    assert sorted(r["audio_id"] for r in _records(out / "s-*.tfrecord")) == ["good", "stereo"]
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["s"]
    assert manifest["num_rejects"] == 7 and manifest["rejects"]["unreadable"] == 1
    assert _ingest_list(tmp_path, rows, "--strict", out="strict")[0] == 1
    assert _ingest_list(tmp_path, rows[2:], out="none")[0] == 1  # nothing could be ingested


def test_interrupted_ingest_resumes_without_duplicates(small_demo, tmp_path, monkeypatch):  # noqa: F811
    raw = Path(small_demo["raw_dir"])
    args = dict(out=str(tmp_path), split="train", segments_csv=str(raw / "balanced_train_segments.csv"),
                labels_csv=str(raw / "class_labels_indices.csv"), audio_dir=str(raw / "audio"),
                settings=ingest.Settings(shard_size=5), progress=False)
    real, calls = shard_writer.decode_clip, []

    def dies_on_the_12th(*a):
        calls.append(a)
        if len(calls) == 12:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(shard_writer, "decode_clip", dies_on_the_12th)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest(**args)
    monkeypatch.setattr(shard_writer, "decode_clip", real)
    done = sorted(tmp_path.glob("train-*.tfrecord"))
    assert [p.name for p in done] == ["train-00000-of-00005.tfrecord", "train-00001-of-00005.tfrecord"]
    assert not list(tmp_path.glob("*.tmp-*"))
    stamps = [p.stat().st_mtime_ns for p in done]
    summary = ingest.ingest(**args)
    assert (summary["shards_kept"], summary["shards_written"], summary["num_clips"]) == (2, 3, 24)
    assert [p.stat().st_mtime_ns for p in done] == stamps
    ids = [r["audio_id"] for r in _records(tmp_path / "train-*.tfrecord")]
    assert len(ids) == len(set(ids)) == 24
    # A damaged shard is rewritten; a smaller plan removes the shards it no longer names.
    with open(done[1], "r+b") as f:
        f.truncate(1000)
    assert ingest.ingest(**args)["shards_written"] == 1
    args["settings"] = ingest.Settings(shard_size=10)
    ingest.ingest(**args)
    assert len(list(tmp_path.glob("train-*.tfrecord"))) == 3


def test_parallel_and_gzip_output_is_deterministic(small_demo, tmp_path):  # noqa: F811
    raw = Path(small_demo["raw_dir"])
    common = ["--segments", str(raw / "eval_segments.csv"), "--labels",
              str(raw / "class_labels_indices.csv"), "--audio-dir", str(raw / "audio"),
              "--shard-size", "5"]
    assert ingest.main([*common, "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert ingest.main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "one").glob("eval-*.tfrecord"))
    assert len(names) == 3
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert ingest.main([*common, "--out", str(tmp_path / "gz"), "--workers", "1", "--gzip"]) == 0
    first = tmp_path / "gz" / names[0]
    assert gzip.decompress(first.read_bytes()) == (tmp_path / "one" / names[0]).read_bytes()
    plain = [r["audio_id"] for r in _records(tmp_path / "one" / "eval-*.tfrecord")]
    zipped = [i.decode() for _, _, ids in pipeline.eval_dataset(
        str(tmp_path / "gz" / "eval-*.tfrecord"), 4, 10, with_ids=True) for i in ids.numpy()]
    assert zipped == plain


def outputs(folder: Path) -> dict:
    """Every file an ingest leaves (shards, manifest, rejects, labels) by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()
            and not p.name.startswith(".")}


# glat-ingest slowed to ~0.1 s a clip, so that a kill lands between two finished shards.
_SLOW_INGEST = ("import time\nfrom glat_tf.data import shard_writer\nreal = shard_writer.decode_clip\n"
                "def slow(*a):\n    time.sleep(0.1)\n    return real(*a)\n"
                "shard_writer.decode_clip = slow\n")


def kill_mid_ingest_and_rerun(raw: Path, out: Path, *extra) -> list[str]:
    """kill -9 a glat-ingest subprocess once its first shard is written, rerun it to the end;
    returns the arguments (for the uninterrupted run to compare with)."""
    import os
    import subprocess
    import sys
    import time

    args = ["--segments", str(raw / "balanced_train_segments.csv"), "--labels",
            str(raw / "class_labels_indices.csv"), "--audio-dir", str(raw / "audio"),
            "--split", "train", "--shard-size", "3", "--workers", "1", *extra]
    command = [sys.executable, "-c", "import sys\nfrom glat_tf.data.ingest import main\n"
               "sys.exit(main())", *args, "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([command[0], "-c", _SLOW_INGEST + command[2], *command[3:]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("train-*.tfrecord")):  # one shard finished: the run is mid-way
        assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
        time.sleep(0.02)
    proc.kill()
    assert proc.wait(timeout=60) == -9
    assert len(list(out.glob("train-*.tfrecord"))) < 8  # killed before the end
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return args


@pytest.mark.timeout(600)
def test_killed_ingest_rerun_writes_the_uninterrupted_bytes(small_demo, tmp_path):  # noqa: F811
    raw = Path(small_demo["raw_dir"])
    args = kill_mid_ingest_and_rerun(raw, tmp_path / "killed")
    assert ingest.main([*args, "--out", str(tmp_path / "whole")]) == 0
    killed, whole = outputs(tmp_path / "killed"), outputs(tmp_path / "whole")
    assert sorted(killed) == sorted(whole) and len([n for n in whole if ".tfrecord" in n]) == 8
    for name in whole:
        assert killed[name] == whole[name], name
