"""glat-ingest --runner beam: the DirectRunner writes what the local runner writes; resume after a failed bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.data_fixtures import small_demo  # noqa: F401 (fixture)
from glat_tf.data import ingest, shard_writer
from tests.glat_tf.test_ingest import kill_mid_ingest_and_rerun, outputs as _outputs

pytest.importorskip("apache_beam")


def _raw_with_a_bad_clip(small_demo, tmp_path):  # noqa: F811
    """The demo's eval clips with one clip's audio replaced by garbage."""
    raw = Path(small_demo["raw_dir"])
    audio = tmp_path / "audio"
    shutil.copytree(raw / "audio", audio)
    victim = sorted(audio.iterdir())[3]
    victim.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    return raw, audio, victim.stem.removeprefix("Y")




@pytest.mark.slow
def test_beam_direct_runner_writes_what_the_local_runner_writes(small_demo, tmp_path):  # noqa: F811
    raw, audio, bad = _raw_with_a_bad_clip(small_demo, tmp_path)
    common = ["--segments", str(raw / "eval_segments.csv"), "--labels",
              str(raw / "class_labels_indices.csv"), "--audio-dir", str(audio), "--shard-size", "5"]
    assert ingest.main([*common, "--out", str(tmp_path / "local"), "--workers", "1"]) == 0
    assert ingest.main([*common, "--out", str(tmp_path / "beam"), "--workers", "2",
                        "--runner", "beam"]) == 0
    local, beam = _outputs(tmp_path / "local"), _outputs(tmp_path / "beam")
    assert sorted(local) == sorted(beam) and len([n for n in local if n.endswith(".tfrecord")]) == 3
    for name in local:  # same audio bytes, labels, manifest and rejects, file for file
        assert local[name] == beam[name], name
    assert f"{bad},".encode() in local["rejects.csv"] and b",unreadable," in local["rejects.csv"]
    assert not list((tmp_path / "beam").glob("*.tmp-*"))


def test_beam_resume_after_a_failed_bundle_keeps_finished_shards(small_demo, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    raw = Path(small_demo["raw_dir"])
    args = dict(split="train", segments_csv=str(raw / "balanced_train_segments.csv"),
                labels_csv=str(raw / "class_labels_indices.csv"), audio_dir=str(raw / "audio"),
                settings=ingest.Settings(shard_size=5), progress=False)
    real, calls = shard_writer.decode_clip, []

    def fails_on_the_12th(*a):  # not a ClipError: the worker's bundle fails, then the pipeline
        calls.append(a)
        if len(calls) == 12:
            raise RuntimeError("worker lost")
        return real(*a)

    out = tmp_path / "beam"
    monkeypatch.setattr(shard_writer, "decode_clip", fails_on_the_12th)
    with pytest.raises(Exception, match="worker lost"):
        ingest.ingest(out=str(out), runner="beam", workers=1, **args)  # in-process DirectRunner
    monkeypatch.setattr(shard_writer, "decode_clip", real)
    done = sorted(out.glob("train-*.tfrecord"))
    assert len(done) >= 2  # 11 clips decoded: at least two 5-clip shards finished
    assert not list(out.glob("*.tmp-*"))
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    summary = ingest.ingest(out=str(out), runner="beam", workers=1, **args)
    assert (summary["shards_kept"], summary["shards_written"]) == (len(done), 5 - len(done))
    assert {p.name: p.stat().st_mtime_ns for p in done} == stamps
    assert summary["num_clips"] == 24 and summary["complete"]
    ingest.ingest(out=str(tmp_path / "local"), **args)
    assert _outputs(out) == _outputs(tmp_path / "local")  # no duplicate, nothing missing
    assert not list((out / ".ingest").iterdir())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_beam_ingest_rerun_writes_the_uninterrupted_bytes(small_demo, tmp_path):  # noqa: F811
    raw = Path(small_demo["raw_dir"])
    args = kill_mid_ingest_and_rerun(raw, tmp_path / "killed", "--runner", "beam")
    assert ingest.main([*args[:-2], "--out", str(tmp_path / "whole")]) == 0  # the local runner
    assert _outputs(tmp_path / "killed") == _outputs(tmp_path / "whole")
    assert not list((tmp_path / "killed").glob("*.tmp-*"))
