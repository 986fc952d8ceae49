"""SIGTERM or kill -9 during glat-export tflite leaves no partial file where the runtime loads one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.export.test_export_cli import saved  # noqa: F401 (fixture: a tiny GlatModel .keras)

# Sends <signal> to the export once it has written half of its first .tflite file.
INTERRUPT = '''
import os, pathlib, signal
write_bytes = pathlib.Path.write_bytes
def interrupted(self, data):
    if self.suffix == ".tflite":
        write_bytes(self, data[:len(data) // 2])
        os.kill(os.getpid(), getattr(signal, os.environ["GLAT_SIGNAL"]))
    return write_bytes(self, data)
pathlib.Path.write_bytes = interrupted
'''


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,code", [("SIGTERM", 128 + 15), ("SIGKILL", -9)])
def test_an_interrupted_tflite_export_leaves_no_partial_model(saved, tmp_path, name, code):  # noqa: F811
    out = tmp_path / "lite"
    out.mkdir()
    (out / "global_f32.tflite").write_bytes(b"the previous export")  # kept whole, or replaced
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT + "import sys\nfrom export.cli import main\n"
         "sys.exit(main())", "tflite", "--model", str(saved), "--out", str(out),
         "--variants", "f32"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "GLAT_SIGNAL": name, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == code, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["global_f32.tflite"]
    assert (out / "global_f32.tflite").read_bytes() == b"the previous export"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "lite"]
    if name == "SIGTERM":  # a clean stop removes its staging folder
        assert leftovers == []
    else:  # kill -9 leaves it: hidden, beside the output, never under a loadable name
        assert all(p.startswith(".lite.partial-") for p in leftovers)
