"""README.md's cheap commands, run as printed (a subprocess each) on a small demo set.

tests/cli/test_readme.py parses every command; this runs the ones that fit in a test: ingest of a
--list CSV, --verify, the wildcard --config fit, the SavedModel export, glat-tag with a
timeline, and the TF Serving answer to the README's REST request. Not run here: the demo
itself (tests/train/test_demo_table.py), commands on data we do not ship (AudioSet CSVs, gs://,
a PANNs .pth, a microphone) and the exports of several minutes (tests/cli/test_quiet.py runs
glat-export tflite and report on a smaller model).
"""

import csv
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
from functools import partial

import pytest

from tests.cli.test_readme import README, readme_commands
from tests.parallel import in_pairs
from tests.paths import ROOT

MODULES = {"glat-ingest": "glat_tf.data.ingest", "glat-fit": "train.fit",
           "glat-eval": "train.evaluate", "glat-export": "export.cli", "glat-tag": "glat_core.tag"}
RUN = [  # the README line each starts with, in the order a user runs them
    "glat-ingest --list my_clips.csv --out shards/ --split train",
    "glat-ingest --verify shards/",
    "glat-fit --config train/configs/demo.py --train \"demo_data/*/shards/train-*.tfrecord\"",
    "glat-export saved-model --model runs/demo/glat/best.keras --out serving/glat --version 1",
    "glat-tag runs/demo/glat/best.keras recordings/ street.mp3 --out tags.csv",
    "python -c \"import json,soundfile as sf; x,_=sf.read('clip.wav'",
    "python -m export.serving_answer serving/glat/1 rest request.json response.json",
]


def readme_line(start: str) -> str:
    """The one README command line beginning with `start` (continuations joined)."""
    found = {line for line, _ in readme_commands() if line.startswith(start)}
    assert len(found) == 1, (start, found)
    return found.pop()


def as_run(line: str) -> str:
    """The line for bash: our console scripts through `python -m` (no PATH needed), a
    `> file` redirection kept, the comment dropped."""
    tokens = shlex.split(line, comments=True)
    redirect = []
    if ">" in tokens:
        redirect = [">", shlex.quote(tokens[tokens.index(">") + 1])]
        tokens = tokens[:tokens.index(">")]
    if tokens[0] in MODULES:
        tokens = [sys.executable, "-m", MODULES[tokens[0]]] + tokens[1:]
    elif tokens[0] == "python":
        tokens[0] = sys.executable
    return " ".join([shlex.quote(t) for t in tokens] + redirect)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A user's folder: the small demo set under demo_data/, the repo's train/configs, audio."""
    from glat_tf.data.demo import ensure_demo_shards

    tmp = tmp_path_factory.mktemp("readme")
    demo = ensure_demo_shards(tmp / "demo_data", seed=0, n_train=24, n_eval=12, shard_size=8,
                              workers=1)
    (tmp / "train").symlink_to(ROOT / "train")
    clip = ROOT / "tests" / "data" / "R9_ZSCveAHg_7s.wav"
    shutil.copy(clip, tmp / "clip.wav")
    shutil.copy(clip.with_suffix(".mp3"), tmp / "street.mp3")
    (tmp / "recordings").mkdir()
    shutil.copy(clip, tmp / "recordings" / "a.wav")
    # --list paths are relative to the CSV's own folder (README, Data): clips/ beside it.
    # Without --labels the names are AudioSet's.
    (tmp / "clips").mkdir()
    audio = sorted((pathlib.Path(demo["raw_dir"]) / "audio").iterdir())[:6]
    with open(tmp / "my_clips.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        for i, path in enumerate(audio):
            shutil.copy(path, tmp / "clips" / path.name)
            writer.writerow([f"clips/{path.name}", "Speech" if i % 2 else "Music,Dog"])
    return tmp


@pytest.mark.slow
def test_the_cheap_readme_commands_run(workdir):
    def command(start):
        line = readme_line(start)
        done = subprocess.run(["bash", "-c", as_run(line)], cwd=workdir, capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"

    ingest, verify, fit, saved_model, tag, request, answer = RUN
    # A user's order, with the commands that do not need each other's output side by side
    # (tests/parallel.py): ingest and verify beside training; then what reads the model.
    in_pairs([lambda: (command(ingest), command(verify)), partial(command, fit)])
    (workdir / "runs" / "demo" / "glat").mkdir(parents=True, exist_ok=True)
    shutil.copy(workdir / "runs" / "x" / "best.keras",  # the demo model's place in README
                workdir / "runs" / "demo" / "glat" / "best.keras")
    in_pairs([partial(command, start) for start in (saved_model, tag, request)])
    command(answer)
    # What they wrote: shards that verify, a trained model, a SavedModel, tags, an answer.
    assert json.loads((workdir / "shards" / "manifest.json").read_text())["splits"]["train"]
    assert (workdir / "runs" / "x" / "final.keras").exists()
    assert (workdir / "serving" / "glat" / "1" / "saved_model.pb").exists()
    rows = list(csv.DictReader(open(workdir / "tags.csv", encoding="utf-8")))
    assert {pathlib.Path(r["file"]).name for r in rows} == {"a.wav", "street.mp3"}
    assert (workdir / "street.png").stat().st_size > 5000
    answer = json.loads((workdir / "response.json").read_text())
    assert len(answer["outputs"]["fused"][0]) == 10


def test_the_list_path_rule_is_stated():
    assert "relative to the CSV's folder" in " ".join(README.split())
