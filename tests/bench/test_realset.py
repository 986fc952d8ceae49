"""bench/realset.py's mixing, without the Debian packages: clips, labels, disjoint sources."""

import numpy as np
import pytest

from tests.harness import bench_module


@pytest.fixture(scope="module")
def realset():
    return bench_module("realset")


def fake_sources(realset, rng):
    """One list of 'recordings' per class: noise bursts of each group's typical length."""
    lengths = {"short": 0.2, "medium": 1.2, "long": 1.5}  # long ones shorter: must be looped
    return [[rng.standard_normal(int(lengths[c[2]] * realset.SAMPLE_RATE)).astype(np.float32)
             for _ in range(2)] for c in realset.CLASSES]


def test_clip_events_are_labelled_where_they_are(realset):
    rng = np.random.default_rng(0)
    sources = fake_sources(realset, rng)
    noise = [0.1 * rng.standard_normal(realset.SAMPLE_RATE).astype(np.float32)]
    groups = {c[0]: c[2] for c in realset.CLASSES}
    seen = set()
    for seed in range(30):
        audio, events = realset.make_clip(sources, noise, np.random.default_rng(seed))
        assert audio.shape == (realset.SAMPLE_RATE * 10,) and np.abs(audio).max() <= 0.95 + 1e-6
        assert 1 <= len(events) <= 3 and len({m for m, _, _ in events}) == len(events)
        for mid, onset, offset in events:
            assert 0 <= onset < offset <= 10.0
            lo, hi = realset.DURATIONS[groups[mid]]
            length = offset - onset
            if groups[mid] == "short":
                assert length < 0.5
            else:
                assert lo - 1e-3 <= length <= hi + 1e-3  # long events looped up to length
            seen.add(groups[mid])
    assert seen == {"short", "medium", "long"}


def test_midi_file_has_one_track_with_every_note(realset):
    data = realset.midi_file(40, [(0.5, 1.0, 60), (3.0, 0.25, 72)])
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    track = data[22:]
    assert track.count(bytes([0x90])) == 2 and track.count(bytes([0x80])) == 2
    assert bytes([0xC0, 40]) in track and track.endswith(b"\xff\x2f\x00")
    assert realset._vlq(960) == bytes([0x87, 0x40])  # 960 = 7 * 128 + 64
