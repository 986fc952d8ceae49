"""The edge runtime's NumPy glue and metadata contract against glat_tf (issue 11, items 2 and 4)."""

import json

import numpy as np
import pytest

from edge_runtime import glue
from edge_runtime.contract import ContractError, ExportMetadata

RATE = 32000


def _scene(rng, frames, classes, edge):
    clipwise = rng.uniform(size=classes).astype(np.float32)
    clipwise[4] = clipwise[2]  # a tie: the lower index goes first, as in top_k
    framewise = rng.uniform(size=(frames, classes)).astype(np.float32)
    framewise[:, 1] = framewise[:, 1].max()  # a tie in frames: the first one wins
    peak = {"left": 0, "right": frames - 1, "middle": frames // 2}[edge]
    framewise[peak, np.argsort(-clipwise, kind="stable")[0]] = 2.0  # clamped at an edge
    return clipwise, framewise


@pytest.mark.parametrize("edge", ["left", "right", "middle"])
@pytest.mark.parametrize("suppress", [True, False])
def test_select_is_select_clips(edge, suppress):
    """Same classes and sample starts as SelectClips, ties and clamping at both edges
    included, in sample units (the exact model) and on a grid (streaming)."""
    import tensorflow as tf
    from glat_tf.layers.select_clips import SelectClips
    rng = np.random.default_rng(0)
    for frames, samples, tau in ((31, 320000, 2.0), (25, 128000, 1.0), (62, 320000, 3.0)):
        clipwise, framewise = _scene(rng, frames, 7, edge)
        clipwise[1] = clipwise.max() + 0.01  # class 1 (flat frames) is picked
        select = SelectClips(n_clips=4, tau=tau, sample_rate=RATE, suppress_overlap=suppress)
        _, starts, classes = select(tf.zeros([1, samples]), clipwise[None], framewise[None])
        got_classes, got_starts = glue.select(clipwise, framewise, 4, int(tau * RATE), samples,
                                              suppress)
        np.testing.assert_array_equal(got_classes, classes.numpy()[0])
        np.testing.assert_array_equal(got_starts, starts.numpy()[0])
        assert got_starts.min() >= 0 and got_starts.max() <= samples - tau * RATE
        if edge != "middle":
            assert (0 if edge == "left" else samples - tau * RATE) in got_starts
        # The same picks on a grid of `stride` samples per frame (streaming's units).
        stride = 5120
        crop = 6
        select = SelectClips(n_clips=4, tau=crop * stride / RATE, sample_rate=RATE,
                             suppress_overlap=suppress)
        _, starts, classes = select(tf.zeros([1, frames * stride]), clipwise[None],
                                    framewise[None])
        grid_classes, grid_starts = glue.select(clipwise, framewise, 4, crop, frames, suppress)
        np.testing.assert_array_equal(grid_classes, classes.numpy()[0])
        np.testing.assert_array_equal(grid_starts, starts.numpy()[0] // stride)


def test_window_starts_and_crops():
    starts = glue.window_starts(9, 48000, 16000)
    assert starts[0] == 0 and starts[-1] == 32000 and (np.diff(starts) >= 0).all()
    audio = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(glue.cut_crops(audio, [0, 90], 10), [audio[:10], audio[90:]])
    with pytest.raises(ValueError, match="outside"):
        glue.cut_crops(audio, [95], 10)


def test_only_the_known_overlap_rules():
    with pytest.raises(NotImplementedError, match="suppress_overlap"):
        glue.select(np.ones(3), np.ones((4, 3)), 2, 2, 4, suppress_overlap="reference")


def test_glue_pipeline_is_glat_model():
    """Glue selection, crop cutting, the local backbone and glue fusion give GlatModel's
    classes, starts and fused scores."""
    import keras
    import tensorflow as tf
    from glat_tf.model import GlatModel
    keras.utils.set_random_seed(3)
    model = GlatModel(backbone="cnn10_tiny", num_classes=5, n_clips=3, tau=0.5)
    waveforms = np.random.default_rng(1).normal(0, 0.1, (3, 48000)).astype(np.float32)
    model(waveforms[:1])
    for stream in (model.global_backbone, model.local_backbone):
        stream.head.fc.kernel.assign(stream.head.fc.kernel * 8.0)  # distinct peaks
    out = {k: np.asarray(v) for k, v in model(waveforms, training=False).items()}
    for b, waveform in enumerate(waveforms):
        classes, starts = glue.select(out["global"][b], out["framewise"][b], 3, model.crop_samples,
                                      48000, model.suppress_overlap)
        np.testing.assert_array_equal(classes, out["selected_classes"][b])
        np.testing.assert_array_equal(starts, out["clip_starts"][b])
        crops = glue.cut_crops(waveform, starts, model.crop_samples)
        per_clip = tf.sigmoid(model.local_backbone(crops, training=False)["clipwise_logits"])
        fused, local = glue.fuse(out["global"][b], np.asarray(per_clip))
        np.testing.assert_allclose(local, out["local"][b], atol=1e-6)
        np.testing.assert_allclose(fused, out["fused"][b], atol=1e-6)
    fused, local = glue.fuse(out["global"][0], np.zeros((0, 5), np.float32))
    assert local is None and (fused == out["global"][0]).all()  # a backbone-only export


META = {"format": "glat-tf-litert/3", "backbone": "cnn10", "sample_rate": RATE,
        "window_samples": 320000, "crop_samples": 96000, "n_clips": 2, "tau": 3.0,
        "num_classes": 2, "frames": 62,
        "labels": [{"index": 0, "mid": "/m/a", "display_name": "A"},
                   {"index": 1, "mid": "/m/b", "display_name": "B"}],
        "variants": {"f32": {"global": "global_f32.tflite", "local": "local_f32.tflite"}},
        "streaming": {"stride_samples": 5120, "chunk_features": 11, "clean_left": 2,
                      "clean_right": 2, "window_features": 62, "crop_features": 18,
                      "channels": 512}}


def test_contract_round_trip_and_clear_errors():
    meta = ExportMetadata.from_json(json.dumps(META))
    again = ExportMetadata.from_json(meta.to_json())
    assert again == meta and again.clip_starts_unit == "int32 samples"
    assert meta.files("f32", ("global",)) == {"global": "global_f32.tflite"}
    with pytest.raises(ContractError, match="--streaming"):
        meta.files("f32", ("global_chunk",))
    for change, message in ((dict(format="glat-tf-litert/1"), "re-export"),
                            (dict(num_classes=3), "2 labels for num_classes=3"),
                            (dict(crop_samples=400000), "crop_samples <= window_samples"),
                            (dict(fusion="mean"), "unknown fusion"),
                            (dict(variants={"f32": {"global": "g"}}), "lacks parts"),
                            (dict(streaming={**META["streaming"], "clean_left": 9}), "no clean"),
                            (dict(n_clips=3), "n_clips")):
        with pytest.raises(ContractError, match=message):
            ExportMetadata.from_dict({**META, **change}, "m.json")
    with pytest.raises(ContractError, match="missing keys"):
        ExportMetadata.from_dict({k: v for k, v in META.items() if k != "labels"})
    with pytest.raises(ContractError, match="not valid JSON"):
        ExportMetadata.from_json("# README\n")
    only = {**META, "n_clips": 0, "crop_samples": 0, "variants": {"f32": {"global": "g"}}}
    assert ExportMetadata.from_dict(only).global_only
