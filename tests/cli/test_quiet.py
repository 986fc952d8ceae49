"""Every CLI, run as a user runs it (a subprocess), writes only its own lines to stderr: no
TensorFlow, absl, oneDNN, CUDA, TFLite-converter, LiteRT or XNNPACK line unless --verbose.

The CLIs run in the order a user would (synthetic set -> ingest -> fit -> eval -> export ->
report -> tag -> edge runtime), each on the previous one's output, so the checks cost one
small pipeline. Set GLAT_STDERR_COUNTS=<file> to write each command's stderr line count there
(how the before/after figures of issue 21 were taken).
"""

import json
import os
import re
import subprocess
import sys
from functools import partial

import pytest

from tests.parallel import in_pairs
from tests.paths import ROOT

# What the libraries print; none of it is ours.
FOREIGN = re.compile(
    r"^[IWEF]\d{4} |All log messages before absl|oneDNN|cuInit|cuda|cpu_feature_guard|"
    r"To enable the following instructions|XNNPACK|TensorFlow Lite|fully_quantize|"
    r"inference_type|node_def_util|WARNING:tensorflow|WARNING:absl|Warning:|UserWarning|"
    r"warnings\.warn|Saved artifact at|Estimated count of arithmetic|tensorflow/|absl::|"
    r"^\s*(Args|Returns|Captures):|TensorSpec|^\s*\d{9,}: ")
TINY = {"n_mels": 32, "hop_length": 640, "spec_augment": False}
STEPS = []  # (name, stderr) in the order they ended, for the counts file
# A user's shell: no TF_CPP_MIN_LOG_LEVEL (conftest sets one for the tests' own process).
ENV = {**{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLAT_QUIET")},
       "PYTHONPATH": str(ROOT)}


def run(name, *args, cwd, verbose=False, timeout=900):
    command = [sys.executable, *args] + (["--verbose"] if verbose else [])
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=ENV)
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}"
    STEPS.append((name, done.stderr))
    out = os.environ.get("GLAT_STDERR_COUNTS")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"command": name, "stderr_lines": len(done.stderr.splitlines()),
                                "foreign": sum(bool(FOREIGN.search(line))
                                               for line in done.stderr.splitlines())}) + "\n")
    return done


def foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if FOREIGN.search(line)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Each CLI once, on the previous one's output: {name: stderr}."""
    tmp = tmp_path_factory.mktemp("quiet")
    (tmp / "clip.wav").write_bytes((ROOT / "tests/data/R9_ZSCveAHg_7s.wav").read_bytes())
    cli = {"ingest": ["-m", "glat_tf.data.ingest"], "fit": ["-m", "train.fit"],
           "eval": ["-m", "train.evaluate"], "export": ["-m", "export.cli"],
           "tag": ["-m", "glat_core.tag"]}
    run("python -m glat_tf.data.synthetic", "-m", "glat_tf.data.synthetic", "--out", "raw",
        "--n-train", "12", "--n-eval", "6", cwd=tmp)
    run("glat-ingest (2 workers)", *cli["ingest"], "--segments",
        "raw/balanced_train_segments.csv", "--labels", "raw/class_labels_indices.csv",
        "--audio-dir", "raw/audio", "--out", "shards", "--split", "train", "--workers", "2",
        "--shard-size", "6", cwd=tmp)
    train = evals = "shards/train-*.tfrecord"  # one split: the CLIs, not the scores, are tested
    run("glat-fit", *cli["fit"], "--train", train, "--eval", evals, "--out", "run",
        "--backbone", "cnn10_tiny", "--backbone-kwargs", json.dumps(TINY), "--n-clips", "2",
        "--tau", "2", "--batch-size", "4", "--steps", "2", "--eval-every", "2", cwd=tmp)
    # The steps that read the same output run side by side (tests/parallel.py). dyn goes
    # through the quantizer (its "fully_quantize: 0, ..." lines) without int8's 100
    # calibration clips.
    in_pairs([partial(run, "glat-eval", *cli["eval"], "--model", "run/final.keras", "--eval",
                      evals, "--out", "ev", "--strong-labels", "raw/strong_labels.csv", cwd=tmp),
              partial(run, "glat-export tflite (f32,dyn)", *cli["export"], "tflite", "--model",
                      "run/final.keras", "--out", "lite", "--variants", "f32,dyn", cwd=tmp)])
    in_pairs([partial(run, "glat-export report", *cli["export"], "report", "--model",
                      "run/final.keras", "--exported", "lite", "--eval", evals, "--out", "rep",
                      "--clips", "4", "--latency-runs", "1", cwd=tmp),
              partial(run, "glat-tag (LiteRT)", *cli["tag"], "lite", "clip.wav", "--out",
                      "t.csv", cwd=tmp),
              partial(run, "python -m edge_runtime.stream", "-m", "edge_runtime.stream",
                      "--export", "lite", "--variant", "dyn", "--input", "clip.wav",
                      "--offline", cwd=tmp)])
    return tmp


@pytest.fixture(scope="module")
def panns_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    import collections

    import numpy as np

    from tests.glat_tf.test_panns_import import panns_cnn10_state

    state = panns_cnn10_state(np.random.default_rng(0))
    path = tmp_path_factory.mktemp("panns") / "Cnn10.pth"
    torch.save({"model": collections.OrderedDict((k, torch.from_numpy(v))
                                                 for k, v in state.items())}, path)
    return path


@pytest.mark.slow
@pytest.mark.timeout(1500)  # eight CLIs in a row, each importing TensorFlow
def test_every_cli_writes_only_its_own_lines(pipeline):
    assert len(STEPS) == 8, [name for name, _ in STEPS]
    noisy = {name: foreign(stderr) for name, stderr in STEPS if foreign(stderr)}
    assert not noisy, json.dumps(noisy, indent=1)[:4000]
    # The tools still talk: every converted model and the report's stages say so, timed.
    said = dict(STEPS)
    for stream in ("global", "local"):
        for variant in ("f32", "dyn"):
            assert re.search(rf"^export: {stream} {variant} \(\d+\.\d s\)$",
                             said["glat-export tflite (f32,dyn)"], re.M), (stream, variant)
    assert re.search(r"^report: Keras on 4 clips \(", said["glat-export report"], re.M)


@pytest.mark.slow
def test_the_panns_converter_is_quiet(panns_checkpoint, tmp_path):
    done = run("python -m glat_tf.convert.panns", "-m", "glat_tf.convert.panns",
               str(panns_checkpoint), "--arch", "cnn10", "--out", str(tmp_path / "c.keras"),
               cwd=tmp_path)
    assert not foreign(done.stderr), done.stderr[-3000:]
    assert (tmp_path / "c.keras").exists()
    for step in ("read", "built cnn10 and mapped", "saved"):  # a large checkpoint takes a while
        assert re.search(rf"^python -m glat_tf.convert.panns: {step} .* \(\d+\.\d s\)$",
                         done.stderr, re.M), (step, done.stderr)


@pytest.mark.slow
def test_verbose_lets_the_libraries_speak(tmp_path):
    done = run("python -m glat_tf.data.synthetic --verbose", "-m", "glat_tf.data.synthetic",
               "--out", "raw", "--n-train", "1", "--n-eval", "1", cwd=tmp_path, verbose=True)
    assert foreign(done.stderr), "--verbose should show TensorFlow's start-up lines"


def test_the_foreign_pattern_knows_the_known_noise():
    for line in ("I0000 00:00:1796489567.257713   21344 port.cc:153] oneDNN custom operations",
                 "E0000 00:00:1.2 1 cuda_executor.cc:1] failed call to cuInit: UNKNOWN ERROR",
                 "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32",
                 "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                 "WARNING: All log messages before absl::InitializeLog() is called are written"):
        assert FOREIGN.search(line), line
    for line in ("glat-export: f32 global model: 12.3 s", "tag: 100%|##########| 1/1 [00:01<00:00]",
                 "glat-fit: step 2/2 loss 0.69"):
        assert not FOREIGN.search(line), line


def test_quiet_fd2_drops_what_cpp_writes_and_gives_fd2_back():
    code = ("import os\nfrom glat_core.console import quiet_fd2, is_quiet\n"
            "with quiet_fd2(True):\n    os.write(2, b'from C++\\n')\n"
            "os.write(2, b'ours\\n')\n"
            "with quiet_fd2():  # GLAT_QUIET decides, as in an ingest worker\n"
            "    os.write(2, b'worker noise\\n')\n"
            "print(is_quiet())\n")
    for quiet, stderr in (("1", "ours\n"), ("0", "ours\nworker noise\n")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, env={**ENV, "GLAT_QUIET": quiet})
        assert (done.stderr, done.stdout.strip()) == (stderr, str(quiet == "1")), done
