"""glat-export tflite --single-file, loaded by MediaPipe Tasks' AudioClassifier as is."""

import numpy as np
import pytest
import soundfile

pytest.importorskip("mediapipe.tasks.python.audio")

from mediapipe.tasks.python import audio  # noqa: E402
from mediapipe.tasks.python.components.containers import audio_data  # noqa: E402
from mediapipe.tasks.python.core import base_options  # noqa: E402

from edge_runtime.contract import SingleFileRecord  # noqa: E402
from export import litert_convert, single_file  # noqa: E402
from export.calibration import streaming_variety  # noqa: E402
from export.acceptance import TOLERANCES  # noqa: E402
from glat_tf import GlatModel  # noqa: E402
from glat_tf.data.labels import LabelMap  # noqa: E402
from glat_tf.data.synthetic import make_clip  # noqa: E402
from glat_core.audio import pad_to  # noqa: E402
from tests.harness import check  # noqa: E402

NAMES = ("alpha", "beta", "gamma", "delta")
WINDOW_SECONDS = 8


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    model = GlatModel.from_preset("cnn10_tiny", num_classes=4, n_clips=2, tau=2.0,
                                  class_names=NAMES)
    window = WINDOW_SECONDS * model.sample_rate
    rng = np.random.default_rng(0)
    # As glat-export reads calibration: real-like clips, some front-padded, some quieter.
    calibration = streaming_variety(np.stack([make_clip(rng)[0] for _ in range(24)]))
    out = tmp_path_factory.mktemp("single")
    labels = LabelMap(tuple(f"/m/{n}" for n in NAMES), NAMES)
    record = single_file.export_single_file(model, out, labels, variants=("f32", "int8"),
                                            window_samples=window, calibration=calibration)
    return model, out, record, window


def classifier(path, mode, callback=None):
    options = audio.AudioClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(path)),
        running_mode=mode, max_results=-1, result_callback=callback)
    return audio.AudioClassifier.create_from_options(options)


def heads(result):
    """{head name: (L,) scores by class index} and the fused head's names by index."""
    scores, names = {}, {}
    for head in result.classifications:
        values = np.zeros(len(head.categories), np.float32)
        for c in head.categories:
            values[c.index] = c.score
            if head.head_name == "fused":
                names[c.index] = c.category_name
        scores[head.head_name] = values
    return scores, names


def keras_windows(model, clip, window):
    """Keras outputs of each window-long chunk of `clip` at its own length without trailing
    exact zeros (MediaPipe pads the last chunk with zeros; the model drops them, and with
    them a chunk's own trailing digital silence), shorter than a crop end-padded to one:
    {output: [one array per chunk]}."""
    outs = [model(pad_to(np.trim_zeros(clip[s:s + window], "b"), model.crop_samples)[None],
                  training=False) for s in range(0, len(clip), window)]
    return {k: [np.asarray(o[k][0]) for o in outs] for k in outs[0]}


def clip_starts_by_class(reference, k, num_classes):
    """Keras' clips of chunk k as the file's clip_start_seconds head: start s per class."""
    want = np.full(num_classes, -1.0, np.float32)
    for cls, start in zip(reference["selected_classes"][k], reference["clip_starts"][k]):
        want[cls] = start / 32000
    return want


def clips():
    real, rate = soundfile.read("tests/data/R9_ZSCveAHg_7s.wav", dtype="float32")
    assert rate == 32000
    rng = np.random.default_rng(5)
    return [real, make_clip(rng)[0], make_clip(rng)[0][:5 * 32000], real[:9600],
            np.zeros(3 * 32000, np.float32)]


@pytest.mark.slow
def test_metadata_and_output_order(export):
    model, out, record, window = export
    meta = SingleFileRecord.read(out)  # the contract's reader validates what export wrote
    assert meta.variants == {"f32": "glat_f32.tflite", "int8": "glat_int8.tflite"}
    assert (meta.outputs, meta.n_clips, meta.crop_samples) == (
        single_file.OUTPUTS, model.n_clips, model.crop_samples)
    assert meta.to_dict() == record  # what export returned is what the file says
    flatbuffer = (out / "glat_f32.tflite").read_bytes()
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=flatbuffer)
    details = interpreter.get_output_details()
    # Positional order is what task libraries read: fused first.
    by_index = {d["index"]: d["name"] for d in details}
    runner = interpreter.get_signature_runner()
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["inputs"] == ["waveform"]
    got = runner(waveform=np.zeros([1, window], np.float32))
    assert got["fused"].shape == got["clip_start_seconds"].shape == (1, 4)
    assert not [op for op in litert_convert.op_names(flatbuffer) if op.startswith("Flex")]
    assert len(by_index) == 4


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["f32", "int8"])
def test_audio_clips_mode_gives_keras_scores(export, variant):
    model, out, _, window = export
    path = out / f"glat_{variant}.tflite"
    direct = litert_convert.signature_runner(path.read_bytes())
    with classifier(path, audio.RunningMode.AUDIO_CLIPS) as c:
        for clip in clips():
            results = c.classify(audio_data.AudioData.create_from_array(clip, 32000))
            reference = keras_windows(model, clip, window)
            assert len(results) == len(reference["fused"])  # one result per window
            errors = []
            for k, result in enumerate(results):
                assert result.timestamp_ms == k * WINDOW_SECONDS * 1000
                scores, names = heads(result)
                assert [h.head_name for h in result.classifications] == list(single_file.OUTPUTS)
                assert names == dict(enumerate(NAMES))
                for head in result.classifications:  # every head is labelled
                    assert {c.category_name for c in head.categories} == set(NAMES)
                chunk = np.pad(clip[k * window:(k + 1) * window],
                               (0, max(0, (k + 1) * window - len(clip))))
                lite = direct(waveform=chunk[None].astype(np.float32))
                for name in ("fused", "global", "local"):
                    if variant == "f32":  # MediaPipe runs the file as LiteRT does ...
                        check.assert_outputs_close({name: scores[name]}, {name: lite[name][0]},
                                                   "mediapipe")
                    error = np.abs(scores[name] - reference[name][k])
                    errors.append(error)
                    # ... and that is Keras within the export's tolerance.
                    if variant == "f32":
                        assert error.max() <= check.tolerance("tagger", "export"), (name, error)
                    else:
                        bound = TOLERANCES["int8"]
                        limit = bound.global_max_abs if name == "global" else bound.local_max_abs
                        assert error.max() <= limit, (name, error)
                if variant == "f32":  # int8 may take a tied neighbour
                    np.testing.assert_allclose(scores["clip_start_seconds"],
                                               clip_starts_by_class(reference, k, len(NAMES)),
                                               atol=1e-6)
                # Every variant: N classes chose a clip, each inside the audio (an int8
                # padding trim once tagged the whole window: crops in the padding).
                chosen = scores["clip_start_seconds"][scores["clip_start_seconds"] >= 0]
                assert len(chosen) == model.n_clips, scores["clip_start_seconds"]
                heard = max(len(np.trim_zeros(chunk, "b")), model.crop_samples) / 32000
                assert chosen.max() + model.crop_samples / 32000 <= heard + 1e-4, (chosen, heard)
            if variant == "int8":
                print("int8 mean abs error", np.mean(errors))
                assert np.mean(errors) <= TOLERANCES["int8"].mean_abs


@pytest.mark.slow
def test_audio_stream_mode_in_one_second_blocks(export):
    model, out, _, window = export
    rng = np.random.default_rng(9)
    stream = np.concatenate([make_clip(rng)[0] for _ in range(2)])  # 20 s
    results = []
    with classifier(out / "glat_f32.tflite", audio.RunningMode.AUDIO_STREAM,
                    lambda result, ms: results.append((ms, result))) as c:
        for second in range(20):
            block = stream[second * 32000:(second + 1) * 32000]
            c.classify_async(audio_data.AudioData.create_from_array(block, 32000),
                             second * 1000)
    # Whole windows back to back (no hop), stamped with their first block's time; the
    # 4 s tail waits for audio and is classified zero-padded when the classifier closes,
    # stamped with the end of time (Timestamp::Max): the model drops the padding.
    reference = keras_windows(model, stream, window)
    assert [ms for ms, _ in results[:2]] == [0, 8000]
    assert len(results) == 3 and results[2][0] > 10 ** 15
    for k, (ms, result) in enumerate(results):
        scores, _ = heads(result)
        check.assert_outputs_close({"fused": scores["fused"]}, {"fused": reference["fused"][k]},
                                   "tagger")


@pytest.mark.slow
def test_glat_export_single_file_flag(tmp_path, capsys):
    from export import cli
    model = GlatModel.from_preset("cnn10_tiny", num_classes=3, n_clips=1, tau=1.0,
                                  class_names=NAMES[:3])
    model(np.zeros([1, 32000], np.float32))
    model.save(tmp_path / "m.keras")
    assert cli.main(["tflite", "--model", str(tmp_path / "m.keras"), "--out", str(tmp_path / "mp"),
                     "--single-file", "--variants", "f32", "--window-seconds", "2"]) == 0
    assert "single_file.json" in capsys.readouterr().out
    assert cli.main(["tflite", "--model", str(tmp_path / "m.keras"), "--out", str(tmp_path / "x"),
                     "--single-file", "--variants", "f16"]) == 2  # not a single-file variant
    with classifier(tmp_path / "mp" / "glat_f32.tflite", audio.RunningMode.AUDIO_CLIPS) as c:
        result = c.classify(audio_data.AudioData.create_from_array(
            np.zeros(64000, np.float32), 32000))
    assert len(result) == 1
    assert sorted(x.category_name for x in result[0].classifications[0].categories) == \
        sorted(NAMES[:3])
