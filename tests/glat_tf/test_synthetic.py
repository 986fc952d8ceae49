"""The synthetic demo set: AudioSet's file formats, determinism by seed, event durations."""

from __future__ import annotations

import csv
import filecmp
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from glat_tf.data import synthetic
from glat_tf.data.labels import LabelMap, read_segments_csv


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    return synthetic.make_demo_set(tmp_path_factory.mktemp("syn"), seed=3, n_train=16, n_eval=6)


def _strong(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synthetic.make_demo_set(tmp_path / "a", seed=5, n_train=3, n_eval=2)
    b = synthetic.make_demo_set(tmp_path / "b", seed=5, n_train=3, n_eval=2)
    c = synthetic.make_demo_set(tmp_path / "c", seed=6, n_train=3, n_eval=2)
    names = sorted(p.name for p in Path(a["audio_dir"]).iterdir())
    assert len(names) == 5
    match, mismatch, errors = filecmp.cmpfiles(a["audio_dir"], b["audio_dir"], names, shallow=False)
    assert match == names and not mismatch and not errors
    for key in ("train_segments", "eval_segments", "labels_csv", "strong_labels"):
        assert Path(a[key]).read_bytes() == Path(b[key]).read_bytes(), key
    assert Path(a["train_segments"]).read_bytes() != Path(c["train_segments"]).read_bytes()


def test_segments_csv_has_audiosets_header_and_rows(demo_set):
    lines = Path(demo_set["train_segments"]).read_text().splitlines()
    assert re.fullmatch(r"# Segments csv created \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", lines[0])
    counts = re.fullmatch(r"# num_ytids=(\d+), num_segs=(\d+), num_unique_labels=(\d+), "
                          r"num_positive_labels=(\d+)", lines[1])
    assert counts, lines[1]
    assert lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    rows = lines[3:]
    assert len(rows) == 16 and int(counts[1]) == int(counts[2]) == 16
    row = re.compile(r'[A-Za-z0-9_-]{11}, \d+\.000, \d+\.000, "/m/glat_\w+(,/m/glat_\w+)*"')
    assert all(row.fullmatch(r) for r in rows), rows[:3]
    parsed = read_segments_csv(demo_set["train_segments"])
    assert int(counts[4]) == sum(len(mids) for _, mids, _ in parsed)
    labels = LabelMap.from_csv(demo_set["labels_csv"])
    assert 8 <= len(labels) <= 12
    assert all(labels.lookup(m) is not None for _, mids, _ in parsed for m in mids)
    assert Path(demo_set["labels_csv"]).read_text().splitlines()[1] == '0,/m/glat_click,"Click"'


def test_audio_is_32k_10s_int16_mono(demo_set):
    files = sorted(Path(demo_set["audio_dir"]).glob("Y*.wav"))
    assert len(files) == 22
    ids = {ytid for ytid, _, _ in read_segments_csv(demo_set["train_segments"])}
    assert {p.stem[1:] for p in files} >= ids
    info = sf.info(files[0])
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (32000, 320000, 1, "PCM_16")


def test_event_durations_per_class_group(demo_set):
    group = {c.mid: c.group for c in synthetic.CLASSES}
    assert {"short", "medium", "long"} == set(group.values())
    for row in _strong(demo_set["strong_labels"]):
        duration = float(row["offset"]) - float(row["onset"])
        assert 0 <= float(row["onset"]) < float(row["offset"]) <= 10.0
        bounds = {"short": (0, 0.3), "medium": (0.5, 2.0), "long": (3.0, 10.0)}[group[row["mid"]]]
        assert bounds[0] <= duration <= bounds[1], row


def test_weak_labels_equal_strong_label_classes(demo_set):
    events = defaultdict(list)
    for row in _strong(demo_set["strong_labels"]):
        events[row["segment_id"]].append(row["mid"])
    for csv_key in ("train_segments", "eval_segments"):
        for ytid, mids, _ in read_segments_csv(demo_set[csv_key]):
            assert sorted(set(events[ytid])) == mids
            assert 1 <= len(events[ytid]) <= 3 and len(set(events[ytid])) == len(events[ytid])


def test_events_are_audible_above_the_background(demo_set):
    """Energy inside event windows vs where no event sounds: SNR is -6..9 dB (median 1.5 dB).

    Local background level varies (brown noise), so the check is statistical, not per event.
    """
    events = defaultdict(list)
    for row in _strong(demo_set["strong_labels"]):
        events[row["segment_id"]].append((float(row["onset"]), float(row["offset"])))
    ratios = []
    for ytid, spans in events.items():
        audio, rate = sf.read(Path(demo_set["audio_dir"]) / f"Y{ytid}.wav", dtype="float32")
        quiet = np.ones(audio.shape[0], bool)
        for onset, offset in spans:
            quiet[int(onset * rate):int(offset * rate)] = False
        if quiet.sum() < rate:  # long events may leave too little background to compare with
            continue
        floor = np.mean(audio[quiet] ** 2)
        ratios += [np.mean(audio[int(a * rate):int(b * rate)] ** 2) / floor for a, b in spans]
    assert len(ratios) >= 10
    assert np.median(ratios) > 1.8 and np.mean(np.array(ratios) > 1.1) >= 0.8, sorted(ratios)


def test_command_line_writes_the_set(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--n-train", "2", "--n-eval", "1"]) == 0
    assert len(list((tmp_path / "audio").glob("Y*.wav"))) == 3
    assert "eval_segments" in capsys.readouterr().out
