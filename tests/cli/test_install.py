"""Installs as README.md prints them: the device install in a fresh venv brings no TensorFlow and tags a file."""

import json
import os
import re
import shutil
import subprocess
import sys
import pathlib

import pytest

from tests.edge_runtime.test_edge_equivalence import CLIP, build_pair
from tests.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "matplotlib", "scikit-learn", "scipy",
                 "tensorboard", "torch"}
MESSAGE = 'pip install "glat-tf[train]"'


def readme_device_command() -> str:
    """The install line of the README's edge runtime section, without its comment."""
    section = README[README.index("### Edge runtime"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return block.splitlines()[0].split("#")[0].strip()


def _env(venv: pathlib.Path) -> dict:
    # No PYTHONPATH: the venv must see only what the install put there. pip keeps this
    # machine's index settings (PIP_* and pip.conf: the local wheel cache and registry).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A plain venv (no system site-packages) with the README's device command run in a copy of
    the project: (venv, env)."""
    root = tmp_path_factory.mktemp("device")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("glat_core", "glat_tf", "train", "export", "edge_runtime"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _env(venv)
    command = readme_device_command()
    assert command.startswith("pip install "), command
    done = subprocess.run(["bash", "-c", command], cwd=src, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return venv, env


@pytest.mark.slow
def test_device_install_has_no_tensorflow_and_tags_a_file(device, tmp_path_factory, tmp_path):
    venv, env = device
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json"], env=env,
                            capture_output=True, text=True, check=True, timeout=120)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"glat-tf", "numpy", "ai-edge-litert", "soundfile", "soxr"} <= names, names
    assert not names & TRAINING_ONLY, names & TRAINING_ONLY

    pair = build_pair(tmp_path_factory, "f32")  # exported here, by the training side
    meta = json.loads((pair.dir / "metadata.json").read_text())
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "edge_runtime.stream",
                          "--export", str(pair.dir), "--variant", "f32",
                          "--input", str(CLIP), "--offline", "--top-k", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines and all(len(line["top"]) == 2 for line in lines)
    labels = {e["display_name"] for e in meta["labels"]}
    assert {t["label"] for line in lines for t in line["top"]} <= labels

    # glat-tag tags files with the LiteRT folder on this TF-free install, as CSV and JSON
    # lines, and gives the same answers as the training side's Tagger.
    out = tmp_path / "tags.jsonl"
    tag = subprocess.run([str(venv / "bin" / "glat-tag"), str(pair.dir), str(CLIP), "--out",
                          str(out), "--top-k", "2"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert tag.returncode == 0, tag.stderr[-2000:]
    assert "Traceback" not in tag.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and records[-1]["end_seconds"] == 7.0  # the file's end is tagged
    from glat_core.tagger import Tagger
    want = Tagger.load(pair.dir).tag(CLIP).records(top_k=2, file=CLIP)
    assert records == [json.loads(json.dumps(r)) for r in want]


@pytest.mark.slow
def test_training_code_on_the_device_install_says_how_to_get_it(device, tmp_path):
    venv, env = device
    for module in ("glat_tf", "train.fit", "export.cli"):
        run = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0
        assert MESSAGE in run.stderr.strip().splitlines()[-1], run.stderr


@pytest.mark.slow
def test_training_install_brings_tensorflow_and_the_tensorboard_command(device, tmp_path):
    venv, env = device
    report = tmp_path / "report.json"
    run = subprocess.run([str(venv / "bin" / "pip"), "install", "--dry-run", "--quiet",
                          "--ignore-installed", "--report", str(report), f"{ROOT}[train]"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    names = {p["metadata"]["name"].lower() for p in json.loads(report.read_text())["install"]}
    assert {"tensorflow", "keras", "tensorboard", "matplotlib", "tqdm"} <= names, names
    assert "ai-edge-litert" not in names  # the device runtime is its own extra


def test_importing_glat_tf_without_tensorflow_is_one_clear_line(tmp_path):
    code = "import sys; sys.modules['tensorflow'] = None; import glat_tf"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == (
        "ImportError: glat_tf needs tensorflow, which the device install leaves out: " + MESSAGE)


def test_the_readme_commands_outputs_are_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["runs/demo/x", "demo_data/x", "lite/global_f32.tflite", "serving/glat/1/x"]
    run = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert sorted(run.stdout.split()) == sorted(paths)
