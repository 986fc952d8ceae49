"""The consistency matrix: a GL-AT model and a baseline tag a fixed audio set (the real
clip, 0.3 s to 30 s, stereo 48 kHz, digital silence) alike through every path: Keras, the
SavedModel in a fresh process, the TF Serving protocol answerer, LiteRT f32 and int8, the
single-file model in MediaPipe, the Python Tagger and glat-tag (CSV) on every model kind,
and the edge CLI. Each answer is compared with Keras on exactly the audio it covers."""

import csv
import json
import pathlib
import subprocess
import sys
from functools import partial

import numpy as np
import pytest

from export import consistency
from export.acceptance import TOLERANCES
from export.consistency import answer_from, record_answer
from tests.parallel import in_pairs

pytestmark = pytest.mark.slow
NAMES = ("alpha", "beta", "gamma", "delta")
RATE = 32000
F32 = 1e-4  # every float path: fused, global and local within this of Keras


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import keras
    from export.saved_model import export_saved_model
    from export.tflite import export_tflite
    from glat_tf import Baseline, GlatModel
    from glat_tf.data.labels import LabelMap
    root = tmp_path_factory.mktemp("consistency")
    keras.utils.set_random_seed(11)
    mids = tuple(f"/m/{n}" for n in NAMES)
    glat = GlatModel.from_preset("cnn10_tiny", num_classes=4, n_clips=2, tau=1.0,
                                 class_names=NAMES, class_mids=mids)
    base = Baseline(backbone="cnn10_tiny", num_classes=4, class_names=NAMES,
                          class_mids=mids)
    labels = LabelMap(mids, NAMES)
    files = consistency.write_audio_set(root / "audio")
    calibration = np.stack([consistency.read_audio(files[c], RATE)[0][:RATE * 3]
                            for c in ("3 s", "7 s", "10 s", "30 s", "real clip 7 s")])
    out = {}
    for name, model in (("glat", glat), ("baseline", base)):
        model(np.zeros([1, 10 * RATE], np.float32))
        model.save(root / f"{name}.keras")
        export_saved_model(model, root / f"{name}_serving", labels)
        variants = ("f32", "int8") if name == "glat" else ("f32",)
        export_tflite(model, root / f"{name}_lite", labels, variants=variants,
                      window_samples=10 * RATE, calibration=calibration)
        out[name] = model
    # The streaming models (f32) of GL-AT: the edge runtime's default mode.
    export_tflite(glat, root / "glat_stream", labels, variants=("f32",),
                  window_samples=10 * RATE, streaming=True)
    single = None
    try:
        from export.single_file import export_single_file
        export_single_file(glat, root / "mediapipe", labels, variants=("f32",),
                           window_samples=10 * RATE)
        single = root / "mediapipe" / "glat_f32.tflite"
    except ImportError:  # the mediapipe extra is not installed: its row is skipped
        pass
    return root, out, files, single


def fresh_saved_model_path(root, name, files):
    """The SavedModel loaded in a fresh Python that never imports glat_tf."""
    def run_all():
        waves = {case: consistency.read_audio(f, RATE)[0] for case, f in files.items()}
        np.savez(root / "waves.npz", **{str(i): w for i, w in enumerate(waves.values())})
        script = (
            "import sys, numpy as np, tensorflow as tf\n"
            "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
            "waves = np.load(sys.argv[2])\n"
            "out = {}\n"
            "for key in waves.files:\n"
            "    w = waves[key]\n"
            "    w = np.pad(w, (0, max(0, 32000 - len(w))))[None]\n"
            "    for name, value in serve(waveform=tf.constant(w)).items():\n"
            "        out[key + '/' + name] = value.numpy()\n"
            "np.savez(sys.argv[3], **out)\n"
            "assert 'glat_tf' not in sys.modules\n")
        done = subprocess.run([sys.executable, "-c", script, str(root / f"{name}_serving" / "1"),
                               str(root / "waves.npz"), str(root / f"{name}_sm.npz")],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        got = np.load(root / f"{name}_sm.npz")
        return {files[case]: {k.split("/", 1)[1]: got[k] for k in got.files
                              if k.startswith(f"{i}/")} for i, case in enumerate(waves)}
    results = run_all()

    def run(waveform, file):
        return [answer_from(results[file], 0, len(waveform))]
    return run


def serving_protocol_path(root, name, files, tmp):
    """TF Serving's REST predict body answered by export/serving_answer in a fresh process
    (one for every file: its main() per request, as tests/export/test_serving_protocol.py)."""
    jobs = []
    for i, file in enumerate(files.values()):
        waveform = consistency.read_audio(file, RATE)[0]
        padded = np.pad(waveform, (0, max(0, RATE - len(waveform))))
        body = tmp / f"body{i}.json"
        body.write_text(json.dumps({"signature_name": "serving_default",
                                    "inputs": {"waveform": [padded.tolist()]}}))
        jobs.append([str(root / f"{name}_serving" / "1"), "rest", str(body),
                     str(tmp / f"response{i}.json")])
    script = ("import json, sys\nfrom export import serving_answer\n"
              "print(json.dumps([serving_answer.main(job) for job in json.loads(sys.argv[1])]))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1]) == [0] * len(jobs), (
        done.stderr[-2000:])
    answers = {file: json.loads(pathlib.Path(job[3]).read_text())["outputs"]
               for file, job in zip(files.values(), jobs)}

    def run(waveform, file):
        outputs = answers[file]
        return [answer_from({k: np.asarray(v) for k, v in outputs.items()}, 0, len(waveform))]
    return run


def glat_tag_path(model_path, files, tmp, labels, *flags):
    """glat-tag's CSV (every class listed) on a model file or folder, one answer per row."""
    out = tmp / f"{model_path.name}{len(flags)}.csv"
    done = subprocess.run([sys.executable, "-m", "glat_core.tag", str(model_path),
                           *map(str, files.values()), "--out", str(out), "--top-k",
                           str(len(NAMES)), *flags], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    by_file = {}
    for row in csv.DictReader(out.open()):
        record = {"start_seconds": float(row["start_seconds"]),
                  "end_seconds": float(row["end_seconds"]),
                  "top": [{k: (float(row[f"{k}_{r}"]) if k != "label" else row[f"label_{r}"])
                           for k in ("label", "fused", "global", "local") if row.get(f"{k}_{r}")}
                          for r in range(1, len(NAMES) + 1)],
                  "clips": [{"class": c.split(":", 1)[1], "start_seconds": float(c.split("-")[0])}
                            for c in row["clips"].split(";") if c]}
        by_file.setdefault(row["file"], []).append(record_answer(record, labels, RATE))
    return lambda waveform, file: by_file[str(file)]


def edge_cli_path(folder, files, labels, *flags):
    """The edge CLI's JSON lines on each file (each hop's window; the last one final): its
    main() on every file's command line, in one fresh Python."""
    argvs = [["--export", str(folder), "--variant", "f32", *flags, "--input", str(file),
              "--offline", "--top-k", str(len(NAMES))] for file in files.values()]
    script = ("import contextlib, io, json, sys\nfrom edge_runtime.stream import main\n"
              "runs = []\n"
              "for argv in json.loads(sys.argv[1]):\n"
              "    with contextlib.redirect_stdout(io.StringIO()) as printed:\n"
              "        code = main(argv)\n"
              "    runs.append([code, printed.getvalue()])\n"
              "print(json.dumps(runs))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(argvs)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(done.stdout.splitlines()[-1])
    by_file = {}
    for file, (code, printed) in zip(files.values(), runs):
        assert code == 0, (file, done.stderr[-2000:])
        lines = [json.loads(line) for line in printed.splitlines()]
        assert lines[-1]["final"] is True
        if "--exact" not in flags:
            # The streaming mode's partial windows hear zeros before the stream began (the
            # line's span is cut to the audio heard): not an answer for that audio alone.
            lines = [line for line in lines if not line.get("partial")]
        by_file[file] = [record_answer(line, labels, RATE) for line in lines]
    return lambda waveform, file: by_file[file]


@pytest.mark.parametrize("name", ["glat", "baseline"])
def test_every_path_gives_keras_answer_for_every_length(built, name, tmp_path):
    root, models, files, single = built
    model = models[name]
    labels = [(n, f"/m/{n}") for n in NAMES]
    lite = root / f"{name}_lite"
    # The paths answered by fresh processes, run two at a time (tests/parallel.py).
    spawned = {
        "SavedModel (fresh process)": partial(fresh_saved_model_path, root, name, files),
        "TF Serving protocol": partial(serving_protocol_path, root, name, files, tmp_path),
        **{f"glat-tag CSV ({kind})": partial(glat_tag_path, root / path, files, tmp_path, labels)
           for kind, path in ((".keras", f"{name}.keras"), ("SavedModel", f"{name}_serving"),
                              ("LiteRT", f"{name}_lite"))},
        "edge CLI (exact)": partial(edge_cli_path, lite, files, labels, "--exact"),
    }
    if name == "glat":
        # The streaming mode, the edge runtime's default, at a budget that scores every pick.
        from edge_runtime import ExportMetadata
        from edge_runtime.streaming import full_budget
        stream = root / "glat_stream"
        budget = str(full_budget(ExportMetadata.read(stream)))
        spawned["glat-tag CSV (LiteRT streaming)"] = partial(
            glat_tag_path, stream, files, tmp_path, labels, "--crop-budget", budget)
        spawned["edge CLI (streaming)"] = partial(edge_cli_path, stream, files, labels,
                                                  "--crop-budget", budget)
    spawned = dict(zip(spawned, in_pairs(list(spawned.values()))))
    paths = {
        "Keras": consistency.keras_path(model),
        "SavedModel (fresh process)": spawned["SavedModel (fresh process)"],
        "TF Serving protocol": spawned["TF Serving protocol"],
        "LiteRT f32": consistency.litert_exact_path(lite, "f32"),
        "Tagger .keras": consistency.tagger_path(root / f"{name}.keras"),
        "Tagger SavedModel": consistency.tagger_path(root / f"{name}_serving"),
        "Tagger LiteRT": consistency.tagger_path(lite),
        **{k: v for k, v in spawned.items() if k.startswith("glat-tag CSV (") and
           "streaming" not in k},
        "edge CLI (exact)": spawned["edge CLI (exact)"],
    }
    if name == "glat" and single is not None:
        paths["MediaPipe f32"] = consistency.mediapipe_path(single, RATE)
    if name == "glat":
        paths["Tagger LiteRT streaming"] = consistency.tagger_path(
            stream, mode="streaming", crop_budget=int(budget))
        paths["glat-tag CSV (LiteRT streaming)"] = spawned["glat-tag CSV (LiteRT streaming)"]
        paths["edge CLI (streaming)"] = spawned["edge CLI (streaming)"]
    int8 = {}
    if name == "glat":
        int8["LiteRT int8"] = consistency.litert_exact_path(lite, "int8")
    written = {p for p in paths if "CSV" in p or "CLI" in p}
    rows = consistency.matrix(model, files, {**paths, **int8},
                              ties={"LiteRT int8": TOLERANCES["int8"].tie},
                              start_tolerances={p: RATE // 1000 for p in written})
    print(f"\n{name}\n" + consistency.markdown(rows))
    for path, by_case in rows.items():
        for case, stats in by_case.items():
            assert stats["answers"] >= 1, (path, case)
            worst = max(stats[f"max_abs_{k}"] for k in consistency.SCORES)
            if path in int8:
                assert worst <= TOLERANCES["int8"].local_max_abs, (path, case, stats)
                assert stats["clips_as_good"] >= TOLERANCES["int8"].selection, (path, case, stats)
            else:
                limit = 2e-5 if path in written else F32  # records round to 5 digits
                assert worst <= limit, (path, case, stats)
                assert stats["clips_as_good"] == 1.0, (path, case, stats)
    # The clips a record lists always lie inside the audio, whatever its length.
    from glat_core.tagger import Tagger
    tagger = Tagger.load(lite)
    for case, file in files.items():
        tags = tagger.tag(file)
        length = tags.window_ends.max() / RATE
        for record in tags.records(top_k=1):
            assert all(0 <= c["start_seconds"] < c["end_seconds"] <= length + 1e-9
                       for c in record["clips"]), (case, record["clips"])


def test_answers_have_the_right_spans(built):
    """A 30 s file is answered per 10 s window by glat-tag (hop 5 s) and per chunk by
    MediaPipe; shorter files are one answer covering exactly the file."""
    root, models, files, single = built
    tagger = consistency.tagger_path(root / "glat_lite")
    spans = {case: [(a.start, a.end) for a in tagger(None, f)] for case, f in files.items()}
    assert spans["30 s"] == [(s * RATE, (s + 10) * RATE) for s in (0, 5, 10, 15, 20)]
    assert spans["0.3 s"] == [(0, int(0.3 * RATE))]
    assert spans["real clip 7 s"] == [(0, 7 * RATE)]
    if single is not None:
        waveform = consistency.read_audio(files["30 s"], RATE)[0]
        answers = consistency.mediapipe_path(single, RATE)(waveform, files["30 s"])
        assert [(a.start, a.end) for a in answers] == [(0, 10 * RATE), (10 * RATE, 20 * RATE),
                                                       (20 * RATE, 30 * RATE)]
