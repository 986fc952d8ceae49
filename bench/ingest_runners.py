"""Ingest clips/s of the local process pool and of the Beam DirectRunner on this machine.

    python bench/ingest_runners.py --clips 160        # JSON in bench/results/ingest_runners.json

Both runners decode, resample and write the same synthetic 10 s clips (32 kHz WAV) into
empty folders. The Beam rows include the pipeline's fixed start (worker processes importing
TensorFlow): `beam_start_s` is a run over 16 clips, which a run of 2M clips amortises.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_runners.json"


def timed_ingest(raw: Path, out: Path, runner: str, workers: int, shard_size: int) -> dict:
    from glat_tf.data import ingest

    start = time.perf_counter()
    summary = ingest.ingest(out=str(out), split="train",
                            segments_csv=str(raw / "balanced_train_segments.csv"),
                            labels_csv=str(raw / "class_labels_indices.csv"),
                            audio_dir=str(raw / "audio"), workers=workers, runner=runner,
                            settings=ingest.Settings(shard_size=shard_size), progress=False)
    seconds = time.perf_counter() - start
    return {"runner": runner, "workers": workers, "clips": summary["num_clips"],
            "seconds": seconds, "clips_per_s": summary["num_clips"] / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args(argv)
    from glat_tf.data import schema, synthetic  # noqa: F401 (TensorFlow's import is not ingest time)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        synthetic.make_demo_set(raw, seed=0, n_train=args.clips, n_eval=1)
        for runner, workers in (("local", 1), ("local", 2), ("beam", 1), ("beam", 2)):
            row = timed_ingest(raw, Path(tmp) / f"{runner}{workers}", runner, workers,
                               args.shard_size)
            rows.append(row)
            print(json.dumps(row), flush=True)
        few = Path(tmp) / "few"
        synthetic.make_demo_set(few, seed=1, n_train=16, n_eval=1)
        beam_start = timed_ingest(few, Path(tmp) / "few-out", "beam", 2, args.shard_size)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": os.getloadavg()[0], "clip": "10 s, 32 kHz WAV -> int16"},
        "rows": rows, "beam_16_clips_s": beam_start["seconds"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
