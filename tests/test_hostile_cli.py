"""Every CLI on bad input the user can cause: `prog: error: ...`, exit code 2, no traceback.

Each CLI runs in a fresh Python: once through `python -m` (the real exit code and stderr)
and once in a driver that calls its main() on every bad input of the list. TensorFlow's
own C++ start-up lines and argparse's usage block are not ours and are skipped.
"""

import json
import re
import subprocess
import sys
import textwrap

import pytest

from hostile_checkpoints import CASES

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
            ["--list", f["garbage.csv"], "--labels", f["garbage.csv"], "--out", f["root"]]]),
        ("train.fit", "glat-fit", [
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--steps", "1"],
            ["--train", f["garbage.csv"], "--out", f["root"] + "/fit", "--steps", "1"],
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--batch-size", "x"],
            ["--config", f["garbage.keras"], "--out", f["root"] + "/fit"],
            ["--train", f["missing"], "--out", f["root"] + "/fit", "--init", f["garbage.pth"]]]),
        ("train.evaluate", "glat-eval", [
            ["--model", f["missing"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["garbage.keras"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["zip.keras"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["folder"], "--eval", f["missing"], "--out", f["root"]],
            ["--model", f["garbage.keras"], "--eval", f["missing"], "--out", f["root"],
             "--sweep-n", "one"]]),
        ("export.cli", "glat-export", [
            ["saved-model", "--model", f["garbage.keras"], "--out", f["root"] + "/sm"],
            ["tflite", "--model", f["zip.keras"], "--out", f["root"] + "/tl", "--variants", "f32"],
            ["saved-model", "--model", f["folder"], "--out", f["root"] + "/sm"],
            ["tflite", "--model", f["missing"], "--out", f["root"], "--window-seconds", "x"],
            ["bogus-command"]]),
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
            [f["garbage.pth"], "--arch", "cnn10", "--out", "o.keras", "--max-gb", "-1"]]),
        ("edge_runtime.stream", "python -m edge_runtime.stream", [
            ["--global", f["missing"], "--local", f["missing"], "--input", "-"],
            ["--global", f["garbage.tflite"], "--local", f["garbage.tflite"], "--input", "-"],
            ["--global", f["folder"], "--local", f["folder"], "--input", f["missing"]],
            ["--global", f["garbage.tflite"], "--local", f["garbage.tflite"], "--input", "-",
             "--hop", "soon"]]),
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
@pytest.mark.parametrize("index", range(7))
def test_cli_bad_inputs_end_in_one_error_line(files, index):
    module, prog, cases = bad_inputs(files)[index]
    done = subprocess.run([sys.executable, "-m", module, *cases[0]], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert _is_error_line(_lines(done.stderr)[0], prog), done.stderr
    driven = subprocess.run([sys.executable, "-c", DRIVER, module, json.dumps(cases)],
                            capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
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
