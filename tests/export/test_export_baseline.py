"""The baseline (a backbone alone) exports: SavedModel with `global`, one LiteRT global model,
and the edge runtime tags with it (issue 16 item 3)."""

import numpy as np
import pytest
import tensorflow as tf

from edge_runtime import ExportMetadata, Pipeline
from edge_runtime.contract import SavedModelFacts
from export.saved_model import export_saved_model
from export.tflite import export_tflite
from glat_tf import Baseline
from glat_tf.data.labels import LabelMap
from tests.harness import check

RATE, WINDOW = 32000, 64000
LABELS = LabelMap(tuple(f"/m/b{i}" for i in range(3)), ("one", "two", "three"))


@pytest.fixture(scope="module")
def baseline():
    model = Baseline("cnn6_tiny", num_classes=3, class_names=LABELS.names,
                           class_mids=LABELS.mids,
                           backbone_kwargs={"n_mels": 32, "hop_length": 640})
    model(tf.zeros([1, WINDOW]))
    return model


def test_the_baseline_exports_to_litert_and_the_edge_runtime_tags_with_it(baseline, tmp_path):
    export_tflite(baseline, tmp_path, LABELS, variants=("f32",), window_samples=WINDOW)
    meta = ExportMetadata.read(tmp_path)
    assert meta.n_clips == 0 and meta.crop_samples == 0
    assert sorted(p.name for p in tmp_path.glob("*.tflite")) == ["global_f32.tflite"]
    wave = np.random.default_rng(0).normal(0, 0.1, WINDOW).astype(np.float32)
    result = Pipeline.from_export(tmp_path, "f32", mode="exact")(wave)
    expected = baseline(wave[None])["global"][0].numpy()
    check.assert_outputs_close({"global": result.global_}, {"global": expected}, "baseline")
    np.testing.assert_array_equal(result.fused, result.global_)  # nothing to fuse with
    assert len(result.clip_starts) == 0
    with pytest.raises(ValueError, match="backbone-only"):
        export_tflite(baseline, tmp_path / "s", LABELS, window_samples=WINDOW, streaming=True)


def test_the_baseline_exports_to_a_saved_model_with_global_and_frames_only(baseline, tmp_path):
    path = export_saved_model(baseline, tmp_path / "serving", LABELS)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    wave = np.random.default_rng(1).normal(0, 0.1, (2, WINDOW)).astype(np.float32)
    out = serve(waveform=tf.constant(wave))
    assert sorted(out) == ["framewise", "global"]
    facts = SavedModelFacts.read(path / "assets")
    assert (facts.n_clips, facts.crop_samples, facts.min_samples) == (0, 0, 32000)
    assert sorted(facts.outputs) == sorted(out)
    check.assert_outputs_close(out, baseline(wave), "baseline")
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 32000 samples"):
        serve(waveform=tf.zeros([1, 100]))
