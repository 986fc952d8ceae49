"""Damaged data, every reader: glat-fit in a subprocess ends with one line naming the file, exit 2,
in bounded time (a hang fails the test), or goes on with --skip-corrupt and counts the skips."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data_fixtures import write_tiny_shards
from tests.parallel import in_pairs
from tests.train.test_train import tone_clips

FAULTS = ("truncated", "flipped", "zero", "missing", "other")
FOUND_BEFORE_STEP_0 = {"truncated", "zero", "missing", "other"}  # by listing and size alone
TIMEOUT = 150  # seconds a case may take: generous for a loaded 2-core box, finite for a hang
TINY = ["--backbone", "cnn10_tiny", "--n-clips", "2", "--tau", "1", "--batch-size", "4",
        "--eval-batch-size", "8", "--seed", "0", "--no-progress"]


def make_set(root: Path, n_train=48, n_eval=40, index=True) -> Path:
    """Train and eval shards of 8 two-second clips with glat-ingest's manifest; without the
    record index (offsets) the training reader is the streaming sampler."""
    for split, n, seed in (("train", n_train, 1), ("eval", n_eval, 2)):
        write_tiny_shards(root / split, tone_clips(n, 2.0, seed, split), 8, 4, manifest=True,
                          split=split, index=True)
        if not index:
            path = root / split / "manifest.json"
            manifest = json.loads(path.read_text())
            for entry in manifest["splits"][split]["shards"]:
                del entry["offsets"], entry["labels"]
            path.write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def clean_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    other = root / "other"  # another dataset: 6 classes at 16 kHz
    write_tiny_shards(other, tone_clips(8, 1.0, 3, "x"), 8, 6, manifest=True, index=True,
                      sample_rate=16000)
    return {"indexed": make_set(root / "indexed"), "streaming": make_set(root / "streaming",
                                                                         index=False),
            "other_shard": next(other.glob("*.tfrecord"))}


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tfrecord"))


def damage(folder: Path, fault: str, number: int, other_shard: Path) -> Path:
    """Applies `fault` to shard `number` of `folder`; returns the path the error must name."""
    if fault == "other":  # a shard of another ingest dropped in under a name the glob matches
        path = folder / f"{folder.name}-00099-of-00100.tfrecord"
        shutil.copy(other_shard, path)
        return path
    path = shards(folder)[number]
    data = path.read_bytes()
    if fault == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif fault == "flipped":  # one byte inside a record's data: only its CRC tells
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif fault == "zero":
        path.write_bytes(b"")
    elif fault == "missing":
        path.unlink()
    return path


def run_cli(args, timeout=TIMEOUT, prelude="", env=None, preexec_fn=None, case=None):
    """glat-fit as from the shell (main() reads sys.argv); (process, seconds to its end).
    `case`: the name its time is recorded under (default: the running test's)."""
    code = prelude + "import sys\nfrom train.fit import main\nsys.exit(main())\n"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    seconds = time.monotonic() - started
    if os.environ.get("GLAT_FAULT_TIMES"):  # the figures of the README's fault table
        with open(os.environ["GLAT_FAULT_TIMES"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": case or os.environ.get("PYTEST_CURRENT_TEST",
                                                               "").split(" ")[0],
                                "seconds": round(seconds, 1), "rc": proc.returncode}) + "\n")
    return proc, seconds


def error_line(proc) -> str:
    """The one `glat-fit: error:` line, after checking it is the only one and no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("glat-fit: error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def copy_set(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "set"))


CASES = [(reader, fault) for reader in ("indexed", "streaming", "eval") for fault in FAULTS]


def run_case(clean_sets, folder: Path, reader: str, fault: str | None):
    """glat-fit (2 steps, an evaluation after each) on a copy of the clean set with `fault`
    in shard 1 of the split `reader` reads, or with --skip-corrupt and every fault (one per
    shard) when `fault` is None: (named paths, output folder, process)."""
    root = copy_set(clean_sets["streaming" if reader == "streaming" else "indexed"], folder)
    split = "eval" if reader == "eval" else "train"
    if fault is None:
        named = [damage(root / split, f, number, clean_sets["other_shard"])
                 for number, f in enumerate(FAULTS)]
    else:
        named = [damage(root / split, fault, 1, clean_sets["other_shard"])]
    out = folder / "run"
    proc, _ = run_cli(["--train", root / "train" / "train-*.tfrecord", "--eval",
                       root / "eval" / "eval-*.tfrecord", *TINY, "--steps", "2",
                       "--eval-every", "1", *(["--skip-corrupt"] if fault is None else []),
                       "--out", out], case=f"{reader}-{fault or 'skip-corrupt'}")
    return named, out, proc


@pytest.fixture(scope="module")
def runs(request, clean_sets, tmp_path_factory):
    """The run of every case this session selected, two side by side (tests/parallel.py;
    one at a time when GLAT_FAULT_TIMES records the README's times): {(reader, fault or
    None): run_case()}. Each is still its own glat-fit process with its own timeout."""
    keys = list(dict.fromkeys(
        (item.callspec.params["reader"], item.callspec.params.get("fault"))
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")))
    jobs = [functools.partial(run_case, clean_sets, tmp_path_factory.mktemp("case"), *key)
            for key in keys]
    return dict(zip(keys, in_pairs(jobs, 1 if os.environ.get("GLAT_FAULT_TIMES") else 2)))


@pytest.mark.timeout(2 * TIMEOUT * len(CASES))  # the first case waits for all the runs
@pytest.mark.parametrize("reader,fault", [
    pytest.param(r, f, marks=[] if f in FOUND_BEFORE_STEP_0 else [pytest.mark.slow])
    for r, f in CASES])
def test_a_damaged_shard_ends_in_one_line_naming_it(runs, reader, fault):
    (named,), out, proc = runs[reader, fault]
    line = error_line(proc)
    assert str(named) in line, line
    if fault in FOUND_BEFORE_STEP_0:
        assert "training steps" not in proc.stdout  # no step was trained, nothing to lose
        assert not (out / "checkpoints").exists()
    else:
        assert "record" in line and "--resume" in line, line
        if reader == "eval":  # found in the evaluation after step 1: that step is kept
            assert "checkpoint saved at step 1" in line, line
            assert (out / "checkpoints" / "ckpt-1.index").exists()


@pytest.mark.slow
@pytest.mark.timeout(2 * TIMEOUT * len(CASES))
@pytest.mark.parametrize("reader", ("indexed", "streaming", "eval"))
def test_skip_corrupt_goes_on_past_every_fault_and_counts_the_skips(runs, reader):
    named, out, proc = runs[reader, None]
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = [line for line in proc.stdout.splitlines() if "damaged records skipped" in line]
    assert counts, proc.stdout
    skipped = int(counts[-1].split(": ")[1].split()[0])
    # truncated + zero + missing shards lose their 8 records each, the flipped one >= 1
    assert skipped >= 8 * 3 + 1, counts
    assert (out / "final.keras").exists()
    assert any(str(path) in proc.stdout for path in named), counts  # "latest: <file> ..."
