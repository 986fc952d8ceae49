"""glat-fit with its CPU cost measured inside the run, on a fixed number of TensorFlow threads.

    python -m train.timed_fit --cpu-out runs/x/cpu.json --threads 1 [glat-fit flags]

Writes {"train_cpu_seconds", "eval_cpu_seconds", "loop_wall_seconds", "process_cpu_seconds"}:
time.process_time() (every thread of the process) around the training loop, minus the
periodic evaluations inside it, so imports and evaluation are not billed to training.
A resumed run adds to the file's numbers. train/experiments.py runs every row through this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--cpu-out", required=True)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from train import fit, loop

    cost = {"train_cpu_seconds": 0.0, "eval_cpu_seconds": 0.0, "loop_wall_seconds": 0.0}
    if os.path.exists(args.cpu_out):
        with open(args.cpu_out, encoding="utf-8") as f:
            cost.update({k: v for k, v in json.load(f).items() if k in cost})
    evaluate, run = loop.Trainer.evaluate, loop.Trainer.run
    spent = {"eval": 0.0}

    def timed_evaluate(self, step):
        start = time.process_time()
        try:
            return evaluate(self, step)
        finally:
            spent["eval"] += time.process_time() - start

    def timed_run(self):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return run(self)
        finally:
            cost["train_cpu_seconds"] += time.process_time() - cpu - spent["eval"]
            cost["eval_cpu_seconds"] += spent["eval"]
            cost["loop_wall_seconds"] += time.perf_counter() - wall

    loop.Trainer.evaluate, loop.Trainer.run = timed_evaluate, timed_run
    code = fit.main(rest)
    cost["process_cpu_seconds"] = time.process_time()
    cost["threads"] = args.threads
    os.makedirs(os.path.dirname(os.path.abspath(args.cpu_out)), exist_ok=True)
    with open(args.cpu_out, "w", encoding="utf-8") as f:
        json.dump(cost, f, indent=1)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
