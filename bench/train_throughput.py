"""Training clips/s of the plain backbone, GL-AT and its variants (same preset, batch, clip
length), and each one's cost ratio to the backbone.

    python bench/train_throughput.py --backbone cnn10_tiny --batch-size 8 --n-clips 3 --tau 2

Both run the training loop's own step function (train/loop.py) on one in-memory batch, so
the numbers are the model's cost without the input pipeline; rounds alternate between the
two and the best round of each counts (the measurement: train/throughput.py, which
train/experiments.py uses too). Results: bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os

from train import throughput
from train.fit import json_object


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cnn10_tiny")
    parser.add_argument("--backbone-kwargs", type=json_object, default={},
                        help="preset overrides as JSON, as glat-fit's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--sample-rate", type=int, default=32000)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--n-clips", type=int, default=3)
    parser.add_argument("--tau", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (best reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", help="comma-separated runs of train/variants.py "
                                           "(default: every GL-AT variant)")
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args(argv)
    from machine import Machine, command  # bench/ is sys.path[0] when this runs as a script
    here = Machine()
    try:
        result = throughput.measure(
            args.backbone, args.backbone_kwargs, args.batch_size, args.seconds,
            args.sample_rate, args.num_classes, args.n_clips, args.tau, args.steps,
            args.repeats, args.warmup, args.variants.split(",") if args.variants else None)
    except ValueError as error:
        parser.error(str(error))
    runs = list(result["seconds_per_step"])
    for name in runs:
        r = result[name]
        print(f"{name:8s} {r['clips_per_second']:7.2f} clips/s best of {len(r['runs'])} "
              f"(median {r['median']:.2f})", flush=True)
    for name in runs[1:]:
        print(f"{name} step costs {result[f'{name}_cost_ratio']:.2f}x the backbone's")
    expected = 1 + args.n_clips * args.tau / args.seconds
    print(f"(GL-AT's conv-dominated estimate: 1 + N*tau/T0 = {expected:.2f})")
    result["command"], result["machine"] = command(argv), here.record()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
