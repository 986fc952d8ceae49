"""Every CLI on bad input the user can cause: `prog: error: ...`, exit code 2, no traceback.

Each CLI runs in a fresh Python: once through `python -m` (the real exit code and stderr)
and once in a driver that calls its main() on every bad input of the list. TensorFlow's
own C++ start-up lines and argparse's usage block are not ours and are skipped.
"""

import json
import pathlib
import re
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest

from tests.data_fixtures import write_tiny_shards

from tests.hostile_checkpoints import CASES
from tests.parallel import in_pairs

NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} |usage: |  |\s*$|"
                   r"Warning: Xing)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "garbage.keras").write_bytes(b"\x00not a model" * 50)
    (root / "zip.keras").write_bytes(CASES["two_pickles"][0])  # a zip, but not a Keras model
    (root / "garbage.pth").write_bytes(CASES["stride0_32GiB"][0])
    (root / "garbage.csv").write_bytes(b"\xff\xfe\x00garbage")
    (root / "garbage.tflite").write_bytes(b"TFL3" + b"\x00" * 64)
    (root / "metadata.json").write_text("{not json")
    (root / "folder").mkdir()
    (root / "empty_segments.csv").write_text("# a\n# b\n# YTID, start_seconds, end_seconds, "
                                             "positive_labels\n")
    # A real model (tau 2 s, 3 classes) and shards it can read: the checks that need one.
    import glat_tf
    model = glat_tf.GlatModel("cnn6_tiny", num_classes=3, n_clips=1, tau=2.0)
    model.build((None, 32000 * 3))
    model.save(root / "tiny.keras")
    clips = [(f"c{i}", np.zeros(32000 * 3, np.int16), [i % 3]) for i in range(4)]
    write_tiny_shards(root / "shards", clips, 4, 3, manifest=True, split="eval")
    (root / "labels3.csv").write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2,/m/c,C\n")
    return {name: str(path) for name, path in
            [(p.name, p) for p in root.iterdir()] + [("missing", root / "missing.wav"),
                                                     ("root", root)]}


def bad_inputs(f):
    """(module, prog, [argv, ...]): missing files, garbage files, directories, bad flags."""
    return [
        ("glat_tf.data.ingest", "glat-ingest", [
            ["--list", f["missing"], "--out", f["root"] + "/o"],
            ["--list", f["garbage.csv"], "--out", f["root"] + "/o"],
            ["--list", f["folder"], "--out", f["root"] + "/o"],
            ["--list", f["garbage.csv"], "--out", f["root"] + "/o", "--workers", "many"],
            ["--list", f["garbage.csv"], "--labels", f["garbage.csv"], "--out", f["root"]],
            ["--segments", f["empty_segments.csv"], "--audio-dir", f["root"], "--out",
             f["root"] + "/empty", "--workers", "2"]]),
        ("train.fit", "glat-fit", [
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--steps", "1"],
            ["--train", f["garbage.csv"], "--out", f["root"] + "/fit", "--steps", "1"],
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--batch-size", "x"],
            ["--config", f["garbage.keras"], "--out", f["root"] + "/fit"],
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--init", f["garbage.pth"]],
            [],  # no arguments: the usage, not the demo
            ["--demo", "--steps", "3"]]),
        ("train.evaluate", "glat-eval", [
            ["--model", f["missing"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["garbage.keras"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["zip.keras"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["folder"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["garbage.keras"], "--eval", f["missing"], "--out", f["root"],
             "--sweep-n", "one"],
            ["--model", f["tiny.keras"], "--eval", f["shards"] + "/eval-*", "--labels",
             f["labels3.csv"], "--out", f["root"] + "/ev1", "--strong-labels", f["missing"]],
            ["--model", f["tiny.keras"], "--eval", f["shards"] + "/eval-*", "--labels",
             f["labels3.csv"], "--out", f["root"] + "/ev2", "--strong-labels", f["garbage.csv"]]]),
        ("export.cli", "glat-export", [
            ["saved-model", "--model", f["garbage.keras"], "--out", f["root"] + "/sm"],
            ["tflite", "--model", f["zip.keras"], "--out", f["root"] + "/tl", "--variants", "f32"],
            ["saved-model", "--model", f["folder"], "--out", f["root"] + "/sm"],
            ["tflite", "--model", f["missing"], "--out", f["root"], "--window-seconds", "x"],
            ["bogus-command"],
            ["tflite", "--model", f["tiny.keras"], "--variants", "f32", "--out", f["root"] + "/w0",
             "--window-seconds",
             "0"],
            ["tflite", "--model", f["tiny.keras"], "--variants", "f32", "--out", f["root"] + "/w1",
             "--window-seconds",
             "1"]]),
        ("export.report", "glat-export report", [
            ["--model", f["garbage.keras"], "--exported", f["root"], "--eval", f["missing"],
             "--out", f["root"] + "/r"],
            ["--model", f["missing"], "--exported", f["folder"], "--eval", f["missing"],
             "--out", f["root"] + "/r", "--clips", "x"]]),
        ("glat_tf.convert.panns", "python -m glat_tf.convert.panns", [
            [f["garbage.pth"], "--arch", "cnn10", "--out", f["root"] + "/o.keras"],
            [f["garbage.csv"], "--arch", "cnn10", "--out", f["root"] + "/o.keras"],
            [f["folder"], "--arch", "cnn10", "--out", f["root"] + "/o.keras"],
            [f["missing"], "--arch", "cnn10", "--out", f["root"] + "/o.keras"],
            [f["garbage.pth"], "--arch", "cnn10", "--out", "o.keras", "--max-gb", "-1"],
            [f["garbage.pth"], "--arch", "cnn11", "--out", f["root"] + "/o.keras"],
            [f["garbage.pth"], "--arch", "cnn10", "--out", f["root"] + "/no/such/o.keras"]]),
        ("glat_tf.data.synthetic", "python -m glat_tf.data.synthetic", [
            ["--out", f["root"] + "/syn", "--n-train", "-3"],
            ["--out", f["root"] + "/syn", "--n-eval", "0"],
            ["--out", f["garbage.csv"], "--n-train", "1", "--n-eval", "1"]]),
        ("glat_core.tag", "glat-tag", [
            [f["tiny.keras"], f["missing"], "--out", f["root"] + "/no/such/tags.csv"],
            [f["tiny.keras"], f["missing"], "--window-seconds", "-1"],
            [f["folder"], f["missing"]],
            [f["missing"], f["missing"]]]),
        ("edge_runtime.stream", "python -m edge_runtime.stream", [
            ["--global", f["missing"], "--local", f["missing"], "--input", "-"],
            ["--global", f["garbage.tflite"], "--local", f["garbage.tflite"], "--input", "-"],
            ["--global", f["folder"], "--local", f["folder"], "--input", f["missing"]],
            ["--global", f["garbage.tflite"], "--local", f["garbage.tflite"], "--input", "-",
             "--hop", "soon"],
            ["--export", f["root"], "--input", "-", "--hop", "0"],
            ["--export", f["root"], "--input", "-", "--crop-budget", "-1"],
            ["--export", f["root"], "--input", "-", "--rate", "0"]]),
    ]


def _is_error_line(line: str, prog: str) -> bool:
    """`prog: error: ...`, or `prog subcommand: error: ...` from argparse's subparsers."""
    return re.match(rf"{re.escape(prog)}( [a-z-]+)?: error: \S", line) is not None


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not NOISE.match(line)]


DRIVER = textwrap.dedent("""
    import contextlib, importlib, io, json, sys
    main = importlib.import_module(sys.argv[1]).main
    results = []
    for argv in json.loads(sys.argv[2]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse's own usage errors
                code = stop.code
        results.append([code, err.getvalue()])
    print(json.dumps(results))
""")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(9))
def test_cli_bad_inputs_end_in_one_error_line(files, index):
    module, prog, cases = bad_inputs(files)[index]
    # The first case as a user runs it, and every case through main() in one process:
    # side by side (tests/parallel.py).
    done, driven = in_pairs([
        partial(subprocess.run, [sys.executable, "-m", module, *cases[0]], capture_output=True,
                text=True, timeout=300, stdin=subprocess.DEVNULL),
        partial(subprocess.run, [sys.executable, "-c", DRIVER, module, json.dumps(cases)],
                capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert _is_error_line(_lines(done.stderr)[0], prog), done.stderr
    assert driven.returncode == 0, driven.stderr[-3000:]
    for argv, (code, stderr) in zip(cases, json.loads(driven.stdout.splitlines()[-1])):
        assert code == 2 and "Traceback" not in stderr, (argv, stderr)
        lines = _lines(stderr)
        assert lines and _is_error_line(lines[0], prog), (argv, stderr)


def test_debug_shows_the_traceback(files):
    """--debug: the same bad input raises, traceback and all (no TensorFlow in this CLI)."""
    done = subprocess.run([sys.executable, "-m", "glat_tf.data.ingest", "--list",
                           files["garbage.csv"], "--out", files["root"] + "/o", "--debug"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" in done.stderr and "CsvError" in done.stderr


def _run_cli(module, *argv, cwd=None):
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.mark.slow
def test_the_checks_come_before_the_work(files, tmp_path):
    """Each bad argument is named in its one line, and nothing was started or written."""
    root = pathlib.Path(files["root"])
    cases = [  # (module, argv, words of the error line, what must not exist afterwards)
        ("train.evaluate", ["--model", files["tiny.keras"], "--eval", files["shards"] + "/eval-*",
                            "--labels", files["labels3.csv"], "--out", str(root / "ev3"),
                            "--strong-labels", files["garbage.csv"]],
         "garbage.csv", root / "ev3" / "summary.json"),
        ("glat_tf.data.ingest", ["--segments", files["empty_segments.csv"], "--audio-dir",
                                 files["root"], "--out", str(root / "empty2"), "--workers", "2"],
         "no clip rows", root / "empty2" / "empty-00000-of-00001.tfrecord"),
        ("export.cli", ["tflite", "--model", files["tiny.keras"], "--variants", "f32",
                        "--out", str(root / "w1"),
                        "--window-seconds", "1"], "shorter than the model's crop", root / "w1"),
        ("export.cli", ["tflite", "--model", files["tiny.keras"], "--variants", "f32",
                        "--out", str(root / "w0"),
                        "--window-seconds", "0"], "must be > 0", root / "w0"),
        ("export.cli", ["tflite", "--model", files["tiny.keras"], "--variants", "int8",
                        "--calibration", files["shards"] + "/eval-*", "--out", str(root / "cp"),
                        "--calibration-padded", "-1"], "--calibration-padded must be >= 0",
         root / "cp"),
        ("glat_tf.convert.panns", [files["garbage.pth"], "--arch", "cnn11", "--out",
                                   str(root / "o.keras")], "--arch 'cnn11'", root / "o.keras"),
        ("glat_tf.data.synthetic", ["--out", str(root / "syn"), "--n-train", "-3"],
         "--n-train must be >= 1", root / "syn"),
        ("glat_core.tag", [files["tiny.keras"], files["missing"], "--out",
                           str(root / "no" / "t.csv")], "does not exist", root / "no"),
    ]
    runs = in_pairs([partial(_run_cli, module, *argv) for module, argv, _, _ in cases])
    for (module, argv, words, absent), done in zip(cases, runs):
        lines = _lines(done.stderr)
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], (argv, done.stderr)
        assert not absent.exists(), absent
    # glat-fit (the console script: main() with sys.argv) with no arguments: its usage and one
    # error line, no demo written here. (`python train/fit.py` is the demo.)
    done = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'glat-fit'; "
                           "from train.fit import main; sys.exit(main())"], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: glat-fit"), done.stderr
    assert "--demo" in done.stderr.splitlines()[-1] and not list(tmp_path.iterdir())
    # --debug on glat-tag (and every CLI): the traceback instead of the line.
    done = _run_cli("glat_core.tag", files["missing"], files["missing"], "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr
