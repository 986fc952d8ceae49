"""Ingest clips/s of the local process pool and of the Beam DirectRunner on this machine.

    python bench/ingest_runners.py --clips 320        # JSON in bench/results/ingest_runners.json

Both runners decode, resample and write the same synthetic 10 s clips (32 kHz WAV) into
empty folders. The Beam rows include the pipeline's fixed start (worker processes importing
TensorFlow), which a run of 2M clips amortises: each 2-worker row also times a run of two
shards (`start_s`: both workers start), and `steady_clips_per_s` is the rate of the clips
beyond those.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from machine import Machine, command

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
    parser.add_argument("--clips", type=int, default=320)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args(argv)
    here = Machine()
    from glat_tf.data import schema, synthetic  # noqa: F401 (TensorFlow's import is not ingest time)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw, few, start_clips = Path(tmp) / "raw", Path(tmp) / "few", 2 * args.shard_size
        synthetic.make_demo_set(raw, seed=0, n_train=args.clips, n_eval=1)
        synthetic.make_demo_set(few, seed=1, n_train=start_clips, n_eval=1)
        for runner, workers in (("local", 1), ("local", 2), ("beam", 1), ("beam", 2)):
            row = timed_ingest(raw, Path(tmp) / f"{runner}{workers}", runner, workers,
                               args.shard_size)
            if workers > 1:  # worker processes start and import TensorFlow: time that apart
                start = timed_ingest(few, Path(tmp) / f"few-{runner}{workers}", runner, workers,
                                     args.shard_size)
                # two shards, so both workers start; the difference of the runs is the work
                row.update(start_clips=start_clips, start_s=start["seconds"],
                           steady_clips_per_s=(row["clips"] - start_clips)
                           / (row["seconds"] - start["seconds"]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": here.record(), "clip": "10 s, 32 kHz WAV -> int16",
        "command": command(argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
