"""Export of a tiny GlatModel to a SavedModel and to every LiteRT variant, checked against Keras."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import acceptance, litert_convert
from export.saved_model import export_saved_model
from edge_runtime import Pipeline
from edge_runtime.contract import SavedModelFacts
from export.calibration import read_calibration
from export.tflite import VARIANTS, export_tflite
from glat_tf.data import schema
from glat_tf.data.labels import LabelMap
from glat_tf.model import GlatModel
from tests.harness import check

# Every test here shares one export of all four variants (about a minute on 2 free cores).
pytestmark = pytest.mark.slow

RATE = 32000
WINDOW = 48000  # 1.5 s: small enough for CPU tests, several crops of tau = 0.5 s
CLASSES = 4


def _clip(rng, samples):
    """A tone burst of random pitch, place and level over noise: audio the frontend sees as real."""
    t = np.arange(samples) / RATE
    start, length = rng.integers(0, samples // 2), rng.integers(samples // 8, samples // 2)
    burst = np.sin(2 * np.pi * rng.uniform(200, 6000) * t) * ((t * RATE >= start)
                                                              & (t * RATE < start + length))
    level = 10 ** rng.uniform(-2.5, -0.3)
    return (level * (burst + rng.uniform(0.02, 0.3) * rng.standard_normal(samples))).clip(-1, 1)


def write_shards(folder, count, samples=WINDOW, seed=0):
    """`count` clips as one TFRecord shard (no manifest: the pipeline does without); its glob."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / "clips-00000-of-00001.tfrecord")) as writer:
        for i in range(count):
            pcm = (_clip(rng, samples) * 32767).astype(np.int16)
            writer.write(schema.encode_example(f"clip{i:04d}", pcm, RATE, [i % CLASSES]))
    return str(folder / "*.tfrecord")


def tiny_model(**kwargs):
    keras.utils.set_random_seed(7)
    model = GlatModel("cnn10_tiny", num_classes=CLASSES, n_clips=2, tau=0.5, **kwargs)
    model(tf.zeros([1, WINDOW]))
    # An untrained head gives nearly flat frame activations, where any rounding moves the
    # argmax; a steeper head gives the distinct peaks a trained model has.
    for stream in (model.global_backbone, model.local_backbone):
        stream.head.fc.kernel.assign(stream.head.fc.kernel * 8.0)
    return model


def tiny_labels():
    return LabelMap(tuple(f"/m/test{i}" for i in range(CLASSES)),
                    tuple(f"Class {i}" for i in range(CLASSES)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = tiny_model()
    calibration = read_calibration(write_shards(root / "shards", 100), CLASSES, WINDOW, 100)
    meta = export_tflite(model, root / "lite", tiny_labels(), variants=VARIANTS,
                         window_samples=WINDOW, calibration=calibration)
    waveforms = np.stack([_clip(np.random.default_rng(100 + i), WINDOW) for i in range(8)])
    waveforms = waveforms.astype(np.float32)
    return {"model": model, "root": root, "meta": meta, "waveforms": waveforms,
            "reference": acceptance.keras_outputs(model, waveforms)}


def test_metadata_is_complete(exported):
    meta = json.loads((exported["root"] / "lite" / "metadata.json").read_text())
    model = exported["model"]
    assert meta["format"] == "glat-tf-litert/3" and meta["clip_starts_unit"] == "int32 samples"
    assert (meta["backbone"], meta["sample_rate"], meta["num_classes"]) == ("cnn10_tiny", RATE, 4)
    assert (meta["window_samples"], meta["crop_samples"], meta["n_clips"]) == (WINDOW, 16000, 2)
    assert meta["tau"] == 0.5 and meta["suppress_overlap"] is True and meta["fusion"] == "max_mean"
    frames = model.global_backbone(tf.zeros([1, WINDOW]))["framewise_logits"].shape[1]
    assert meta["frames"] == frames == 9  # 151 STFT frames halved by 4 pools
    assert meta["labels"][3] == {"index": 3, "mid": "/m/test3", "display_name": "Class 3"}
    assert sorted(meta["variants"]) == sorted(VARIANTS)
    for variant, files in meta["variants"].items():
        assert files == {"global": f"global_{variant}.tflite", "local": f"local_{variant}.tflite"}
        assert all((exported["root"] / "lite" / f).is_file() for f in files.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_signatures_follow_the_contract(exported, variant):
    """Inputs as the signature declares them (-1: the global model takes any number of
    samples, resized per call); outputs as they come for the window and the crops."""
    lite = exported["root"] / "lite"
    frames = exported["meta"]["frames"]
    for stream, inputs, outputs in [
            ("global", {"waveform": ([1, -1], np.float32)},
             {"global": ((1, 4), np.float32), "framewise": ((1, frames, 4), np.float32),
              "clip_starts": ((1, 2), np.int32), "selected_classes": ((1, 2), np.int32)}),
            ("local", {"crops": ([2, 16000], np.float32)}, {"per_clip": ((2, 4), np.float32)})]:
        runner = litert_convert.signature_runner((lite / f"{stream}_{variant}.tflite").read_bytes())
        got_in = {k: (list(v["shape_signature"]), v["dtype"])
                  for k, v in runner.get_input_details().items()}
        assert got_in == inputs
        name, = inputs
        shape = [WINDOW if n == -1 else n for n in inputs[name][0]]
        out = runner(**{name: np.zeros(shape, np.float32)})
        assert {k: (v.shape, v.dtype) for k, v in out.items()} == outputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_builtin_ops_only_and_float_frontend(exported, variant):
    from ai_edge_litert.interpreter import Interpreter
    for stream in ("global", "local"):
        path = exported["root"] / "lite" / f"{stream}_{variant}.tflite"
        flatbuffer = path.read_bytes()
        ops = litert_convert.op_names(flatbuffer)
        assert not [op for op in ops if op.startswith("Flex")], ops
        assert "RFFT2D" in ops
        interpreter = Interpreter(model_path=str(path))
        dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        name = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
        kept_float = [op for op in interpreter._get_ops_details()
                      if any(f"/{scope}" in name[i] or name[i].startswith(scope)
                             for i in op["outputs"] for scope in ("frontend", "select_clips"))]
        assert len(kept_float) >= (40 if stream == "global" else 15)  # log-mel (+ selection)
        for op in kept_float:
            # Every value the log-mel and the selection read or write is float32 (or ints).
            used = [dtype[i] for i in (*op["inputs"], *op["outputs"]) if i >= 0]
            assert all(d in (np.float32, np.int32, np.complex64, np.bool_) for d in used), op
        if variant in ("dyn", "int8"):
            assert np.int8 in dtype.values(), "nothing was quantized"


@pytest.mark.parametrize("variant", VARIANTS)
def test_litert_pair_matches_keras_within_the_stage_tolerance(exported, variant):
    tagger = Pipeline.from_export(exported["root"] / "lite", variant, "exact")
    got = acceptance.litert_outputs(tagger, exported["waveforms"], exported["reference"])
    stats = acceptance.measure(variant, exported["reference"], got, WINDOW, 16000)
    acceptance.assert_accepted(variant, stats)
    if variant == "f32":
        assert stats["same_picks"] == 1.0  # the same arithmetic picks exactly Keras' windows


@pytest.mark.parametrize("variant", VARIANTS)
def test_digital_silence_gives_finite_scores(exported, variant):
    # Plain float16 conversion rounds the log's floor 1e-10 to 0: log(0) and NaN scores.
    out = Pipeline.from_export(exported["root"] / "lite", variant, "exact")(
        np.zeros(WINDOW, np.float32))
    assert all(np.isfinite(x).all() for x in (out.fused, out.global_, out.local))
    silent = exported["model"](np.zeros([1, WINDOW], np.float32))["fused"][0]
    np.testing.assert_allclose(out.fused, silent, atol=0.05)


def test_quantized_files_are_smaller(exported):
    size = {v: sum((exported["root"] / "lite" / f).stat().st_size
                   for f in exported["meta"]["variants"][v].values()) for v in VARIANTS}
    assert size["f16"] < size["f32"] and size["dyn"] < size["f16"]
    assert size["int8"] < size["f16"]


def test_acceptance_check_flags_drift(exported):
    reference = exported["reference"]
    drifted = {k: v.copy() for k, v in reference.items()}
    drifted["global"] += 1e-3
    # The first pick swapped for the class Keras scores lowest.
    drifted["selected_classes"][0, 0] = np.argmin(reference["global"][0])
    stats = acceptance.measure("f32", reference, drifted, WINDOW, 16000)
    problems = acceptance.check("f32", stats)
    assert any("global_max_abs" in p for p in problems) and any("picks" in p for p in problems)
    assert stats["selection"] == 1 - 1 / drifted["clip_starts"].size
    assert acceptance.check("int8", acceptance.measure("int8", reference, {
        **reference, "global": drifted["global"]}, WINDOW, 16000)) == []


def test_saved_model_reloads_without_glat_tf_and_matches_keras(exported, tmp_path):
    model, waveforms = exported["model"], exported["waveforms"]
    path = export_saved_model(model, tmp_path / "serving", tiny_labels(), version=3)
    assert path == tmp_path / "serving" / "3"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert LabelMap.from_csv(path / "assets" / "labels.csv") == tiny_labels()
    facts = SavedModelFacts.read(path / "assets")  # what glat-tag reads to cut audio
    assert (facts.n_clips, facts.crop_samples, facts.min_samples, facts.outputs) == (
        model.n_clips, model.crop_samples, model.crop_samples, model.output_keys)
    np.save(tmp_path / "waveforms.npy", waveforms)
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf
        serve = tf.saved_model.load({str(path)!r}).signatures["serving_default"]
        out = serve(waveform=tf.constant(np.load({str(tmp_path / 'waveforms.npy')!r})))
        np.savez({str(tmp_path / 'out.npz')!r}, **{{k: v.numpy() for k, v in out.items()}})
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("glat_tf", "export")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    got = dict(np.load(tmp_path / "out.npz"))
    reference = exported["reference"]
    assert got["clip_starts"].dtype == np.int32  # samples, as LiteRT's and Keras'
    # Scores within the stage's export tolerance; window starts and classes exactly.
    check.assert_outputs_close(got, reference, "glat_model",
                               keys=(*acceptance.SCORES, "clip_starts", "selected_classes"))
    stats = acceptance.measure("saved_model", reference,
                               acceptance.saved_model_outputs(path, waveforms, RATE), WINDOW, 16000)
    acceptance.assert_accepted("saved_model", stats)

    shown = subprocess.run(["saved_model_cli", "show", "--all", "--dir", str(path)],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    signature = shown.stdout.split("signature_def['serving_default']")[1]
    assert "inputs['waveform']" in signature and "shape: (-1, -1)" in signature
    for name in ("fused", "global", "local", "clip_starts", "selected_classes"):
        assert f"outputs['{name}']" in signature


def test_saved_model_refuses_bad_input(exported, tmp_path):
    model = exported["model"]
    path = export_saved_model(model, tmp_path / "serving", tiny_labels())
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 16000 samples"):
        serve(waveform=tf.zeros([1, 15999]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        serve(waveform=tf.constant(np.full([1, WINDOW], np.nan, np.float32)))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        serve(waveform=tf.zeros([WINDOW]))
    for wrong_rank in ([1, 1, WINDOW], [2, WINDOW, 1]):  # these pass the [None, None] spec
        with pytest.raises(tf.errors.InvalidArgumentError, match="rank 2"):
            serve(waveform=tf.zeros(wrong_rank))
    # The shortest accepted input still answers (any length from tau up).
    assert serve(waveform=tf.zeros([2, 16000]))["fused"].shape == (2, CLASSES)
    with pytest.raises(FileExistsError):
        export_saved_model(model, tmp_path / "serving", tiny_labels())
