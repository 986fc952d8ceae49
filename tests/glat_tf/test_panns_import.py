"""PANNs importer: torch-written checkpoints, NumPy reference outputs, refusals, unsafe pickles."""

import collections
import os
import pickle
import zipfile

import keras
import numpy as np
import pytest

from glat_tf import backbones
from glat_tf.convert import panns
from glat_tf.convert.torch_zip import UnsafeCheckpointError, load_torch_file

CNN10_CHANNELS = (1, 64, 128, 256, 512)


def bn_state(rng, prefix, n):
    return {f"{prefix}.weight": rng.uniform(0.5, 1.5, n), f"{prefix}.bias": rng.normal(0, 0.1, n),
            f"{prefix}.running_mean": rng.normal(0, 0.1, n),
            f"{prefix}.running_var": rng.uniform(0.5, 2.0, n),
            f"{prefix}.num_batches_tracked": np.array(1000, np.int64)}


def panns_cnn10_state(rng):
    """PANNs Cnn10's state dict: its exact key names and shapes, random values (Hann STFT)."""
    k, n = np.arange(513)[:, None], np.arange(1024)[None, :]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    state = {"spectrogram_extractor.stft.conv_real.weight": (np.cos(2 * np.pi * k * n / 1024)
                                                             * hann)[:, None, :],
             "spectrogram_extractor.stft.conv_imag.weight": (-np.sin(2 * np.pi * k * n / 1024)
                                                             * hann)[:, None, :],
             "logmel_extractor.melW": rng.uniform(0, 0.02, (513, 64)), **bn_state(rng, "bn0", 64)}
    for b, (c_in, c_out) in enumerate(zip(CNN10_CHANNELS, CNN10_CHANNELS[1:])):
        for j, fan_in in ((1, c_in), (2, c_out)):
            state[f"conv_block{b + 1}.conv{j}.weight"] = rng.normal(
                0, np.sqrt(2 / (9 * fan_in)), (c_out, fan_in, 3, 3))
            state.update(bn_state(rng, f"conv_block{b + 1}.bn{j}", c_out))
    state.update({"fc1.weight": rng.normal(0, 0.05, (512, 512)),
                  "fc1.bias": rng.normal(0, 0.1, 512),
                  "fc_audioset.weight": rng.normal(0, 0.05, (527, 512)),
                  "fc_audioset.bias": rng.normal(0, 0.1, 527)})
    return {key: value if value.dtype == np.int64 else value.astype(np.float32)
            for key, value in state.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    state = panns_cnn10_state(np.random.default_rng(0))
    path = tmp_path_factory.mktemp("ckpt") / "Cnn10_mAP=0.380.pth"
    # As PANNs' main.py saves it: the model plus the sampler's NumPy state.
    model = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state.items())
    torch.save({"iteration": 100000, "sampler": {"indexes_per_class": [np.arange(4)]},
                "model": model}, path)
    return path, state


@pytest.fixture(scope="module")
def imported(checkpoint):
    net = backbones.build("cnn10", num_classes=527)
    report = panns.import_into_backbone(net, panns.load_panns_checkpoint(checkpoint[0]))
    return net, report


def bn(x, state, prefix):
    return ((x - state[f"{prefix}.running_mean"]) / np.sqrt(state[f"{prefix}.running_var"] + 1e-5)
            * state[f"{prefix}.weight"] + state[f"{prefix}.bias"])


def conv3x3(x, weight):
    """'same' 3x3 convolution of (batch, T, F, C_in) with a PyTorch (out, in, 3, 3) kernel."""
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    return np.einsum("btfcij,ocij->btfo", windows, weight)


def test_reader_returns_every_tensor_unchanged(checkpoint):
    path, state = checkpoint
    got = panns.load_panns_checkpoint(path)
    assert got.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_every_variable_is_filled(checkpoint, imported):
    net, report = imported
    assert report.arch == "cnn10"
    assert (report.missing, report.unexpected, report.warnings) == ([], [], [])
    # Every number in the model came from the checkpoint, minus what is knowingly unused.
    _, state = checkpoint
    used = sum(v.size for k, v in state.items()
               if "num_batches_tracked" not in k and "spectrogram_extractor" not in k)
    assert sum(int(np.prod(w.shape)) for w in net.weights) == used
    assert len(report.ignored) == 2 + 9  # two STFT kernels, nine BN batch counters


def test_frontend_uses_checkpoint_mel_matrix_and_bn0(checkpoint, imported):
    (_, state), (net, _) = checkpoint, imported
    wave = np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32)
    padded = np.pad(wave.astype(np.float64), 512, mode="reflect")
    frames = np.stack([padded[i:i + 1024] for i in range(0, wave.size + 1, 320)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(frames * hann)) ** 2
    log_mel = 10 * np.log10(np.maximum(power @ state["logmel_extractor.melW"], 1e-10))
    expected = bn(log_mel, state, "bn0")
    got = net.frontend(wave[None], training=False).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3)


@pytest.mark.float_sensitive
def test_first_conv_block_equals_numpy(checkpoint, imported):
    (_, state), (net, _) = checkpoint, imported
    x = np.random.default_rng(2).normal(0, 1, (1, 12, 10, 1)).astype(np.float32)
    y = np.maximum(bn(conv3x3(x, state["conv_block1.conv1.weight"]), state, "conv_block1.bn1"), 0)
    y = np.maximum(bn(conv3x3(y, state["conv_block1.conv2.weight"]), state, "conv_block1.bn2"), 0)
    expected = y.reshape(1, 6, 2, 5, 2, 64).mean(axis=(2, 4))  # avg pool 2x2
    got = net.blocks[0](x, training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.float_sensitive
def test_head_equals_numpy(checkpoint, imported):
    (_, state), (net, _) = checkpoint, imported
    features = np.random.default_rng(3).normal(0, 1, (2, 7, 512)).astype(np.float32)
    fc1 = lambda h: np.maximum(h @ state["fc1.weight"].T + state["fc1.bias"], 0)  # noqa: E731
    fc = lambda h: h @ state["fc_audioset.weight"].T + state["fc_audioset.bias"]  # noqa: E731
    out = net.head(features, training=False)
    clip = fc(fc1(features.max(axis=1) + features.mean(axis=1)))
    np.testing.assert_allclose(out["clipwise_logits"], clip, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out["framewise_logits"], fc(fc1(features)), atol=1e-4, rtol=1e-4)


def test_cli_writes_a_keras_model_that_keeps_the_weights(checkpoint, imported, tmp_path, capsys):
    path, state = checkpoint
    out = tmp_path / "cnn10.keras"
    assert panns.main([str(path), "--arch", "cnn10", "--out", str(out)]) == 0
    assert "0 missing, 0 unexpected" in capsys.readouterr().out
    loaded = keras.models.load_model(out)
    np.testing.assert_array_equal(loaded.frontend._mel.numpy(), state["logmel_extractor.melW"])
    wave = np.random.default_rng(4).normal(0, 0.1, (1, 32000)).astype(np.float32)
    np.testing.assert_allclose(loaded(wave)["clipwise_logits"],
                               imported[0](wave)["clipwise_logits"], atol=1e-5)


def test_wrong_architecture_is_refused_naming_both(checkpoint, capsys):
    state = panns.load_panns_checkpoint(checkpoint[0])
    with pytest.raises(ValueError, match="PANNs cnn10.*PANNs mobilenetv1"):
        panns.import_into_backbone(backbones.build("mobilenetv1"), state)
    with pytest.raises(SystemExit):
        panns.main([str(checkpoint[0]), "--arch", "resnet38", "--out", "unused.keras"])
    assert "cnn10" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no PANNs checkpoint"):
        panns.import_into_backbone(backbones.build("talnet_tiny"), state)
    with pytest.raises(ValueError, match="shape mismatch"):
        panns.import_into_backbone(backbones.build("cnn10_tiny"), state)


def test_atsca_takes_the_cnn10_part_and_reports_its_attention_missing(checkpoint):
    state = panns.load_panns_checkpoint(checkpoint[0])
    net = backbones.build("atsca")
    with pytest.raises(ValueError, match="missing"):
        panns.import_into_backbone(net, state)
    report = panns.import_into_backbone(net, state, strict=False)
    # Per block: two SE kernels, kernel and bias of each mask conv.
    assert report.unexpected == [] and len(report.missing) == 4 * 6
    assert all("conv_block" in path for path in report.missing)


def test_import_into_one_glat_stream(checkpoint):
    from glat_tf.model import GlatModel
    state = panns.load_panns_checkpoint(checkpoint[0])
    model = GlatModel(backbone="cnn10", num_classes=527, n_clips=5, tau=3.0)
    reports = panns.import_into_glat(model, state, streams=("local",))
    assert list(reports) == ["local"] and reports["local"].missing == []
    expected = state["fc1.weight"].T
    np.testing.assert_array_equal(model.local_backbone.head.fc1.kernel.numpy(), expected)
    assert not np.allclose(model.global_backbone.head.fc1.kernel.numpy(), expected)


@pytest.fixture(scope="module")
def glat_keras(checkpoint, tmp_path_factory):
    """The converter's ready GL-AT (--glat) written from the torch checkpoint."""
    out = tmp_path_factory.mktemp("glat") / "glat_cnn10.keras"
    assert panns.main([str(checkpoint[0]), "--arch", "cnn10", "--glat", "--out", str(out)]) == 0
    return out


def test_glat_from_panns_shares_one_network_with_audioset_labels(checkpoint, imported):
    from glat_tf.data.labels import LabelMap
    model = panns.glat_from_panns(checkpoint[0], "cnn10")
    assert model.share_weights and model.local_backbone is model.global_backbone
    assert (model.n_clips, model.tau) == (5, 3.0)  # the paper's defaults (GLAT_SPEC.md)
    audioset = LabelMap.audioset()
    assert model.class_names == audioset.names and model.class_mids == audioset.mids
    np.testing.assert_array_equal(model.global_backbone.head.fc.kernel.numpy(),
                                  imported[0].head.fc.kernel.numpy())
    other = panns.glat_from_panns(checkpoint[0], n_clips=3, tau=2.0)  # arch detected
    assert (other.n_clips, other.tau, other.global_backbone.preset) == (3, 2.0, "cnn10")
    with pytest.raises(ValueError, match="PANNs cnn10.*PANNs resnet38"):
        panns.glat_from_panns(checkpoint[0], "resnet38")


def test_glat_keras_global_stream_is_the_plain_backbone(glat_keras, imported):
    import tensorflow as tf
    loaded = keras.models.load_model(glat_keras)
    assert loaded.share_weights and loaded.class_names[0] == "Speech"
    wave = np.random.default_rng(5).normal(0, 0.1, (1, 4 * 32000)).astype(np.float32)
    out = loaded(wave)
    plain = imported[0](wave)
    np.testing.assert_allclose(out["global"], tf.sigmoid(plain["clipwise_logits"]), atol=1e-5)
    # The local stream is the same network on each chosen window.
    crops = np.stack([wave[0, s:s + loaded.crop_samples] for s in out["clip_starts"][0].numpy()])
    np.testing.assert_allclose(out["per_clip"][0],
                               tf.sigmoid(imported[0](crops)["clipwise_logits"]), atol=1e-5)


def test_glat_keras_tags_the_real_clip_with_windows(glat_keras, clip_path):
    from glat_core.tagger import Tagger
    from glat_tf.data.labels import LabelMap
    tags = Tagger.load(glat_keras).tag(clip_path)
    assert tags.fused.shape == (1, 527) and tags.names == list(LabelMap.audioset().names)
    clips = tags.record(0)["clips"]
    assert len(clips) == 5
    # Every clip lies inside the 7 s file and is tau = 3 s long.
    assert all(0 <= c["start_seconds"] and c["end_seconds"] <= 7.0 + 1e-6 for c in clips)
    assert all(abs(c["end_seconds"] - c["start_seconds"] - 3.0) < 1e-3 for c in clips)
    assert all(c["class"] in tags.names for c in clips)
    assert np.isfinite(tags.fused).all() and tags.record(0, top_k=3)["top"][0]["fused"] > 0


def test_glat_tag_panns_flag_tags_with_audioset_names_in_one_command(checkpoint, glat_keras,
                                                                     clip_path, tmp_path):
    """`glat-tag --panns X.pth audio` gives what the converted .keras gives."""
    import json
    import subprocess
    import sys
    out = tmp_path / "tags.jsonl"
    done = subprocess.run([sys.executable, "-m", "glat_core.tag", "--panns", str(checkpoint[0]),
                           str(clip_path), "--out", str(out), "--top-k", "3"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    from glat_core.tagger import Tagger
    want = next(Tagger.load(glat_keras).tag(clip_path).records(top_k=3, file=clip_path))
    assert [t["mid"] for t in record["top"]] == [t["mid"] for t in want["top"]]
    assert record["clips"] == want["clips"] and len(record["clips"]) == 5
    for got, expected in zip(record["top"], want["top"]):
        assert got["fused"] == pytest.approx(expected["fused"], abs=1e-5)
    bad = subprocess.run([sys.executable, "-m", "glat_core.tag", "--panns",
                          str(tmp_path / "missing.pth"), str(clip_path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing.pth" in bad.stderr


def test_glat_flag_refuses_bad_window_settings(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        panns.main([str(checkpoint[0]), "--arch", "cnn10", "--glat", "--tau", "0",
                    "--out", str(tmp_path / "x.keras")])
    assert stop.value.code == 2 and "--tau" in capsys.readouterr().err
    assert not (tmp_path / "x.keras").exists()


def test_legacy_format_and_bfloat16(tmp_path):
    torch = pytest.importorskip("torch")
    weight = torch.randn(4, 3)
    torch.save({"model": {"w": weight.t(), "h": weight.to(torch.bfloat16)}}, tmp_path / "old.pth",
               _use_new_zipfile_serialization=False)
    got = load_torch_file(tmp_path / "old.pth")["model"]
    np.testing.assert_array_equal(got["w"], weight.t().numpy())
    np.testing.assert_array_equal(got["h"], weight.to(torch.bfloat16).float().numpy())


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_zip_checkpoint(path, payload: bytes, storages=()):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        for key, raw in storages:
            archive.writestr(f"archive/data/{key}", raw)


@pytest.mark.parametrize("layout", ["zip", "legacy", "nested"])
def test_malicious_pickle_is_refused_never_executed(tmp_path, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if layout == "legacy":
        path.write_bytes(pickle.dumps(Exploit(marker), protocol=2))
    else:
        obj = Exploit(marker) if layout == "zip" else {"model": {"w": Exploit(marker)}}
        write_zip_checkpoint(path, pickle.dumps(obj, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        panns.load_panns_checkpoint(path)
    assert not marker.exists()


def test_tensor_reading_past_its_storage_is_refused(tmp_path):
    # _rebuild_tensor_v2(storage of 2 floats, offset 0, size (100,), stride (1,), False, {})
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" b"(Vstorage\nctorch\nFloatStorage\n"
               b"V0\nVcpu\nK\x02tQ" b"K\x00(K\x64t(K\x01t\x89}tR.")
    write_zip_checkpoint(tmp_path / "bad.pth", payload, [("0", np.zeros(2, np.float32).tobytes())])
    with pytest.raises(pickle.UnpicklingError, match="element 99 of a 2-element storage"):
        load_torch_file(tmp_path / "bad.pth")
