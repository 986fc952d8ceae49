"""edge_runtime: ring buffer, streaming, JSON lines, CLI and robustness (issue 7); the audio
sources and conditioning it reads through are tested in tests/glat_core/test_audio_sources.py."""

import dataclasses
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile
import soxr

from edge_runtime import (ArraySource, FileSource, RingBuffer, StreamRunner, Pipeline,
                          read_metadata)
from edge_runtime import pipeline as pipeline_module
from edge_runtime.contract import ContractError
from tests.harness import check
from tests.paths import ROOT
from tests.edge_runtime.test_edge_equivalence import CLIP, build_pair, stream_cli_without_tensorflow

RATE = 32000


# ---------------------------------------------------------------- pieces without models

def test_ring_buffer_keeps_the_last_samples_zero_padded():
    rng = np.random.default_rng(0)
    ring, stream = RingBuffer(1000), np.zeros(0, np.float32)
    for size in [0, 1, 300, 999, 1000, 2500, 7, 0, 1234]:
        block = rng.standard_normal(size).astype(np.float32)
        ring.push(block)
        stream = np.concatenate([stream, block])
        expected = np.concatenate([np.zeros(1000, np.float32), stream])[-1000:]
        np.testing.assert_array_equal(ring.window(), expected)
        assert ring.total == len(stream) and ring.full == (len(stream) >= 1000)
    with pytest.raises(ValueError, match="mono"):
        ring.push(np.zeros((3, 2)))


# ---------------------------------------------------------------- streaming with stub models

LABELS = [{"index": i, "mid": f"/s/{i}", "display_name": f"stub {i}"} for i in range(4)]
STUB_META = {"format": "glat-tf-litert/3", "backbone": "stub", "sample_rate": RATE,
             "window_samples": 2 * RATE, "crop_samples": RATE // 2, "n_clips": 2, "tau": 0.5,
             "num_classes": 4, "frames": 8, "suppress_overlap": True, "labels": LABELS,
             "variants": {"f32": {"global": "g", "local": "l"}}, "fusion": "max_mean",
             "clip_starts_unit": "int32 samples"}


STUB_GLOBAL = np.array([[0.1, 0.7, 0.4, 0.2]], np.float32)
# Class 1 peaks in frame 0 (its window clamps to the window's start), class 2 in frame 6:
# the window centred on 6.5 * 8000 samples starts at 44000.
STUB_FRAMEWISE = np.zeros((1, 8, 4), np.float32)
STUB_FRAMEWISE[0, 0, 1] = STUB_FRAMEWISE[0, 6, 2] = 0.9


class StubModel:
    """Stands in for a LiteRT model: scores from the input's statistics, inputs recorded."""

    seen: list = []

    def __init__(self, model, threads, expect_shape, outputs, what):
        self.what, self.shape = what, tuple(expect_shape)

    def __call__(self, x):
        # -1: the global model takes any length (at least one crop).
        assert all(want in (-1, got) for want, got in zip(self.shape, x.shape)), (x.shape, self.shape)
        assert x.ndim == len(self.shape) and x.dtype == np.float32 and np.isfinite(x).all()
        assert self.what == "local" or x.shape[1] >= STUB_META["crop_samples"]
        if self.what == "local":
            level = np.abs(x).mean(axis=1, keepdims=True)  # (N, 1)
            return {"per_clip": 1 / (1 + np.exp(-(level + np.arange(4)))).astype(np.float32)}
        if StubModel.seen is not None:
            StubModel.seen.append(x[0].copy())
        clipwise = STUB_GLOBAL * np.float32(1 + 0.2 * np.abs(x).mean())
        return {"global": clipwise, "framewise": STUB_FRAMEWISE}


@pytest.fixture
def stub_tagger(monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline_module, "LiteModel", StubModel)
    StubModel.seen = []
    (tmp_path / "metadata.json").write_text(json.dumps(STUB_META))
    return Pipeline.from_export(tmp_path, "f32", "exact")


def test_each_hop_sees_exactly_the_stream_window(stub_tagger):
    audio = np.random.default_rng(4).standard_normal(int(5.3 * RATE)).astype(np.float32) * 0.1
    blocks = (audio[i:i + 777] for i in range(0, len(audio), 777))
    events = list(StreamRunner(stub_tagger, hop_seconds=0.75).run(ArraySource(blocks, RATE)))
    ends = [int(round(e.time * RATE)) for e in events]
    assert ends == list(range(24000, len(audio), 24000)) + [len(audio)]  # last: stream end
    assert [e.partial for e in events] == [end < 2 * RATE for end in ends]
    # A window the stream has not filled yet is the audio heard so far, at its own length.
    for end, seen, event in zip(ends, StubModel.seen, events):
        np.testing.assert_array_equal(seen, audio[max(0, end - 2 * RATE):end])
        assert (event.result.start, event.result.end) == (max(0, end - 2 * RATE), end)


def test_json_line_format(stub_tagger):
    result = stub_tagger(np.full(2 * RATE, 0.5, np.float32))
    line = json.loads(stub_tagger.json_line(result, top_k=3, partial=True))
    assert list(line) == ["start_seconds", "end_seconds", "top", "clips", "partial"]
    assert (line["start_seconds"], line["end_seconds"]) == (0.0, 2.0) and line["partial"] is True
    g = STUB_GLOBAL[0] * 1.1
    l = 1 / (1 + np.exp(-(0.5 + np.arange(4))))  # every crop is 0.5: max = mean
    fused = (np.maximum(g, l) + (g + l) / 2) / 2
    assert [t["label"] for t in line["top"]] == [f"stub {i}" for i in np.argsort(-fused)[:3]]
    assert all(list(t) == ["label", "mid", "fused", "global", "local"] for t in line["top"])
    for t in line["top"]:
        i = int(t["label"].split()[1])
        assert t["mid"] == f"/s/{i}"
        assert (t["fused"], t["global"], t["local"]) == pytest.approx((fused[i], g[i], l[i]), abs=1e-5)
    # Class 1's clip clamps to the window's start, class 2's is centred on frame 6.5.
    assert line["clips"] == [
        {"class": "stub 1", "mid": "/s/1", "start_seconds": 0.0, "end_seconds": 0.5},
        {"class": "stub 2", "mid": "/s/2", "start_seconds": 1.375, "end_seconds": 1.875}]
    # A window reaching before the stream began (streaming mode's zero history): clips are
    # cut to the audio heard; one wholly before it is not listed (never zero-length).
    early = dataclasses.replace(result, start=-RATE, end=RATE)
    line = json.loads(stub_tagger.json_line(early, top_k=1))
    assert (line["start_seconds"], line["end_seconds"]) == (0.0, 1.0)
    assert line["clips"] == [{"class": "stub 2", "mid": "/s/2", "start_seconds": 0.375,
                              "end_seconds": 0.875}]
    flagged = json.loads(stub_tagger.json_line(result, top_k=1, nan_samples=7))
    assert flagged["nan_samples"] == 7 and len(flagged["top"]) == 1


@pytest.mark.slow
def test_one_hour_generator_stream_keeps_memory_flat(stub_tagger):
    """3600 hops of a 16 kHz stereo stream through the conditioner, ring buffer and tagger."""
    block = np.random.default_rng(5).standard_normal((8000, 2)).astype(np.float32) * 0.1
    hour = ArraySource((block for _ in range(2 * 3600)), 16000)
    stream = StreamRunner(stub_tagger, hop_seconds=1.0)
    StubModel.seen = None  # keeping every window would be the test's own leak
    tracemalloc.start()
    try:
        usage, count = [], 0
        for event in stream.run(hour):
            count += 1
            if count % 300 == 0:
                usage.append(tracemalloc.get_traced_memory()[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 3600 and event.time == pytest.approx(3600, abs=0.01)
    # After the first 5 minutes nothing grows: the last reading is within 64 kB of the first.
    assert max(usage) - usage[0] < 64 * 1024, usage
    assert peak < 8 * 2**20



# ---------------------------------------------------------------- the real exported pair

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_pair(tmp_path_factory, "f32")


@pytest.fixture(scope="module")
def pair(built):
    """The exported tiny model's folder, variant f32."""
    return built.dir


@pytest.fixture(scope="module")
def clip():
    audio, rate = soundfile.read(CLIP, dtype="float32")
    assert rate == RATE
    return audio


def _run(pair, source, hop=1.0, final=False):
    tagger = Pipeline.from_export(pair, "f32", "exact")
    return list(StreamRunner(tagger, hop).run(source, final=final))


def _cli(pair, *args, stdin=None, timeout=120, variant="f32"):
    command = [sys.executable, "-m", "edge_runtime.stream", "--export", str(pair),
               "--variant", variant, "--exact", *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout)


def test_runtime_loads_no_tensorflow(pair, tmp_path):
    lines, report = stream_cli_without_tensorflow(
        ["--export", pair, "--variant", "f32", "--exact", "--input", CLIP, "--offline"], tmp_path)
    assert (report["code"], report["heavy"]) == (0, []), report["stderr"]
    assert len(lines) == 7 and all(json.loads(line)["top"] for line in lines)


def test_stdin_pcm_equals_the_same_audio_from_a_file(pair, clip, tmp_path):
    """16 kHz stereo s16le on stdin, cut mid-frame, tags as the same samples in a WAV."""
    stereo = np.stack([soxr.resample(clip, RATE, 16000), np.zeros(len(clip) // 2)], axis=1)
    ints = np.round(np.clip(stereo, -1, 32767 / 32768) * 32768).astype("<i2")
    wav = tmp_path / "stereo16k.wav"
    soundfile.write(wav, ints, 16000, subtype="PCM_16")
    done = _cli(pair, "--input", "-", "--rate", "16000", "--channels", "2", "--format", "s16le",
                stdin=ints.tobytes() + b"\x00\x01\x02")
    assert done.returncode == 0, done.stderr
    assert b"dropped 3 trailing bytes" in done.stderr
    from_file = _cli(pair, "--input", str(wav), "--offline")
    assert from_file.returncode == 0

    def without_file(out):  # the records name their input: "-" or the WAV's path
        return [{k: v for k, v in json.loads(line).items() if k != "file"}
                for line in out.splitlines()]
    assert without_file(done.stdout) == without_file(from_file.stdout)
    assert json.loads(done.stdout.splitlines()[0])["file"] == "-"
    assert len(done.stdout.splitlines()) == 7


def test_stereo_is_mixed_down_by_the_mean(pair, clip):
    stereo = _run(pair, ArraySource([np.stack([clip, np.zeros_like(clip)], axis=1)], RATE))
    mono = _run(pair, ArraySource([clip / 2], RATE))
    for a, b in zip(stereo, mono):
        np.testing.assert_allclose(a.result.fused, b.result.fused, atol=1e-6)
    assert len(stereo) == len(mono) == 7


@pytest.mark.parametrize("rate,subtype,atol", [(44100, "PCM_24", 0.01), (16000, "PCM_16", 0.03),
                                               (RATE, "PCM_U8", 0.05)])
def test_other_rates_and_bit_depths_tag_like_the_original(pair, clip, tmp_path, rate, subtype,
                                                          atol):
    path = tmp_path / f"clip_{rate}_{subtype}.wav"
    soundfile.write(path, soxr.resample(clip, RATE, rate) if rate != RATE else clip, rate,
                    subtype=subtype)
    events = _run(pair, FileSource(path))
    reference = _run(pair, ArraySource([clip], RATE))
    assert [round(e.time, 2) for e in events] == [round(e.time, 2) for e in reference]
    for a, b in zip(events, reference):
        assert np.isfinite(a.result.fused).all()
        np.testing.assert_allclose(a.result.fused, b.result.fused, atol=atol)


def test_nan_samples_are_zeroed_and_flagged(pair, clip):
    dirty = clip.copy()
    dirty[int(2.5 * RATE):int(2.5 * RATE) + 100] = np.nan
    tagger = Pipeline.from_export(pair, "f32", "exact")
    events = list(StreamRunner(tagger, 1.0).run(ArraySource([dirty], RATE)))
    assert [e.nan_samples for e in events] == [0, 0, 100, 0, 0, 0, 0]
    assert all(np.isfinite(e.result.fused).all() for e in events)
    zeroed = np.nan_to_num(dirty, nan=0.0)
    for a, b in zip(events, _run(pair, ArraySource([zeroed], RATE))):
        np.testing.assert_array_equal(a.result.fused, b.result.fused)
    line = json.loads(tagger.json_line(events[2].result, partial=events[2].partial,
                                       nan_samples=events[2].nan_samples))
    assert line["nan_samples"] == 100 and "nan_samples" not in json.loads(
        tagger.json_line(events[3].result, partial=events[3].partial))


def test_long_silence_gives_finite_steady_scores(pair):
    silence = ArraySource((np.zeros(RATE, np.float32) for _ in range(60)), RATE)
    events = _run(pair, silence, hop=2.0)
    assert len(events) == 30
    full = np.stack([e.result.fused for e in events if not e.partial])
    assert np.isfinite(full).all() and (full == full[0]).all()


def test_streams_shorter_than_a_hop_and_empty_streams(pair, clip):
    short = _run(pair, ArraySource([clip[:9600]], RATE))
    assert [(e.time, e.partial) for e in short] == [(0.3, True)]
    assert _run(pair, ArraySource([], RATE)) == []
    done = _cli(pair, "--input", "-", stdin=b"")
    assert done.returncode == 0 and done.stdout == b""


def _export_copy(pair, folder, **changes):
    """A copy of the f32 export's folder with metadata fields changed."""
    import shutil
    shutil.copytree(pair, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(changes)
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_bad_input_gives_clear_errors(pair, tmp_path):
    files = read_metadata(pair).variants["f32"]
    swapped = _export_copy(pair, tmp_path / "swapped", variants={
        "f32": {**files, "global": files["local"], "local": files["global"]}})
    done = _cli(swapped, "--input", str(CLIP), "--offline")
    assert done.returncode == 2 and b"metadata.json says" in done.stderr
    missing = _cli(pair, "--input", str(tmp_path / "nope.wav"), "--offline")
    assert missing.returncode == 2 and b"cannot read audio file" in missing.stderr
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "g.tflite").write_bytes((pair / files["global"]).read_bytes())
    no_meta = _cli(lonely, "--input", str(CLIP))
    assert no_meta.returncode == 2 and b"no metadata.json" in no_meta.stderr
    other = _cli(pair, "--input", str(CLIP), variant="int8")
    assert other.returncode == 2 and b"not 'int8'" in other.stderr
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        mic = _cli(pair, "--input", "mic")
        assert mic.returncode == 2 and b"pip install sounddevice" in mic.stderr


def test_a_file_that_is_not_a_litert_model_is_named(pair, tmp_path):
    import pathlib
    readme = ROOT / "README.md"
    folder = _export_copy(pair, tmp_path / "readme", variants={
        "f32": {**read_metadata(pair).variants["f32"], "global": "README.md"}})
    (folder / "README.md").write_bytes(readme.read_bytes())
    done = _cli(folder, "--input", str(CLIP), "--offline")
    assert done.returncode == 2
    assert b"global model" in done.stderr and b"README.md is not a LiteRT model" in done.stderr
    not_a_folder = _cli(readme, "--input", str(CLIP), "--offline")
    assert not_a_folder.returncode == 2 and b"not valid JSON" in not_a_folder.stderr


def test_an_older_export_is_refused_with_re_export(pair, tmp_path):
    old = _export_copy(pair, tmp_path / "old", format="glat-tf-litert/1")
    with pytest.raises(ContractError, match="re-export"):
        Pipeline.from_export(old, "f32", "exact")


def test_short_file_is_answered_at_its_own_length(built, clip, tmp_path):
    """A 2.5 s file in a 4 s window: each hop answers the audio heard so far at its own
    length, the last one (final) is the Keras model on the whole file, unpadded, and no
    clip is zero-length or outside the file."""
    from tests.edge_runtime.test_edge_equivalence import keras_windows
    pair = built.dir
    short = clip[:int(2.5 * RATE)]
    path = tmp_path / "short.wav"
    soundfile.write(path, short, RATE, subtype="FLOAT")
    done = _cli(pair, "--input", str(path), "--offline")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["start_seconds"], line["end_seconds"], line.get("partial", False),
             line.get("final", False)) for line in lines] == [
        (0.0, 1.0, True, False), (0.0, 2.0, True, False), (0.0, 2.5, False, True)]
    tagger = Pipeline.from_export(pair, "f32", "exact")
    want = tagger.exact(short)
    final = lines[-1]
    names = [row["display_name"] for row in built.labels]
    keras = keras_windows(built.model, short[None])
    check.assert_outputs_close({"fused": want.fused}, {"fused": keras["fused"][0]}, "glat_model")
    for entry in final["top"]:
        assert entry["fused"] == pytest.approx(float(keras["fused"][0][names.index(entry["label"])]),
                                               abs=2e-5)
    for line in lines:
        for c in line["clips"]:
            assert 0 <= c["start_seconds"] < c["end_seconds"] <= line["end_seconds"] + 1e-9
    for c, start in zip(final["clips"], keras["clip_starts"][0]):
        assert c["start_seconds"] == pytest.approx(start / RATE, abs=1e-3)


def test_a_global_only_export_fuses_to_the_global_score(pair, clip, tmp_path):
    """A backbone-only export (n_clips 0, no local parts): fused = global, no windows."""
    import shutil
    folder = tmp_path / "global_only"
    folder.mkdir()
    meta = json.loads((pair / "metadata.json").read_text())
    shutil.copy(pair / meta["variants"]["f32"]["global"], folder / "global_f32.tflite")
    meta.update(n_clips=0, crop_samples=0, variants={"f32": {"global": "global_f32.tflite"}})
    meta.pop("streaming")
    (folder / "metadata.json").write_text(json.dumps(meta))
    tagger = Pipeline.from_export(folder, "f32")  # auto: no streaming models, so exact
    assert tagger.mode == "exact"
    events = list(StreamRunner(tagger, 1.0).run(ArraySource([clip], RATE)))
    full = Pipeline.from_export(pair, "f32", "exact")
    for event in events:
        np.testing.assert_array_equal(event.result.fused, event.result.global_)
        line = tagger.record(event.result, partial=event.partial)
        assert line["clips"] == [] and all("local" not in t for t in line["top"])
    window = clip[-4 * RATE:]
    np.testing.assert_allclose(tagger(window).global_, full(window).global_, atol=0)


def test_one_hour_with_the_real_models_keeps_memory_flat(pair):
    """One hour from a generator, real interpreters, a large hop: resident memory stays put."""
    second = np.random.default_rng(6).standard_normal(RATE).astype(np.float32) * 0.05
    rss = []
    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    hour = ArraySource((second for _ in range(3600)), RATE)
    for k, event in enumerate(_run(pair, hour, hop=30.0)):
        rss.append(resident())
    assert len(rss) == 120 and event.time == 3600.0
    assert rss[-1] - rss[19] < 4 * 2**20, [r // 2**20 for r in rss[::10]]
