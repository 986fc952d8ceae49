"""Ingest clips/s of the local process pool and of the Beam DirectRunner on this machine.

    python bench/ingest_runners.py --clips 640        # JSON in bench/results/ingest_runners.json

Both runners decode, resample and write the same synthetic 10 s clips (32 kHz WAV) into
empty folders. The Beam rows include the pipeline's fixed start (worker processes importing
TensorFlow), which a run of 2M clips amortises: every run is a fresh interpreter (as a
glat-ingest command), and the shards' write times split it into the start-up (to the first
shard written) and the rate after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm


RESULTS = Path(__file__).resolve().parent / "results" / "ingest_runners.json"


def timed_ingest(raw: Path, out: Path, runner: str, workers: int, shard_size: int) -> dict:
    """One run's clips/s, and from the shards' write times its start-up (launch to the first
    shard written) and its rate after that (the clips of the other shards over the time from
    the first shard to the last): a run's start varies by seconds on a shared machine, more
    than a few hundred clips take, so a difference of two runs cannot separate them."""
    from glat_tf.data import ingest

    launched, start = time.time(), time.perf_counter()
    summary = ingest.ingest(out=str(out), split="train",
                            segments_csv=str(raw / "balanced_train_segments.csv"),
                            labels_csv=str(raw / "class_labels_indices.csv"),
                            audio_dir=str(raw / "audio"), workers=workers, runner=runner,
                            settings=ingest.Settings(shard_size=shard_size), progress=False)
    seconds = time.perf_counter() - start
    shards = json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"]
    written = sorted(((out / s["file"]).stat().st_mtime, s["num_records"]) for s in shards)
    return {"runner": runner, "workers": workers, "clips": summary["num_clips"],
            "seconds": seconds, "clips_per_s": summary["num_clips"] / seconds,
            "shards": len(written), "first_shard_s": written[0][0] - launched,
            "clips_per_s_after_first_shard": sum(n for _, n in written[1:])
            / (written[-1][0] - written[0][0])}


def cold_ingest(raw: Path, out: Path, runner: str, workers: int, shard_size: int) -> dict:
    """timed_ingest in a fresh interpreter, as a glat-ingest command runs: the local pool's
    forkserver (which imports TensorFlow once) and Beam's worker processes start in every
    run, never reused from an earlier one. TensorFlow's import in the interpreter itself is
    not timed."""
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(
        [str(raw), str(out), runner, workers, shard_size])], check=True, capture_output=True,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=640)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in a subprocess
    args = parser.parse_args(argv)
    from machine import Machine, command  # bench/ is sys.path[0] when this runs as a script
    from glat_tf.data import schema, synthetic  # noqa: F401 (TensorFlow's import is not ingest time)

    if args.one:
        raw, out, runner, workers, shard_size = json.loads(args.one)
        print(json.dumps(timed_ingest(Path(raw), Path(out), runner, workers, shard_size)))
        return 0
    here, rows = Machine(), []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        synthetic.make_demo_set(raw, seed=0, n_train=args.clips, n_eval=1)
        for runner, workers in tqdm([("local", 1), ("local", 2), ("beam", 1), ("beam", 2)],
                                    desc="runners", unit="runner", leave=False):
            rows.append(cold_ingest(raw, Path(tmp) / f"{runner}{workers}", runner, workers,
                                    args.shard_size))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": here.record(), "clip": "10 s, 32 kHz WAV -> int16",
        "command": command(argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
