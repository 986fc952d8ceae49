"""What reusing the global features costs in accuracy: one trained `reuse_features` model
scored on eval twice, local scores off the global feature map (as trained) and from a pass on
each crop (the same shared weights, the exact local stream), on one TensorFlow thread.

    python bench/reuse_gap.py --model runs/realset/glat_reuse/seed0/best.keras \
        --eval "realset/shards/eval-*-of-*.tfrecord" --out results/reuse_gap.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras GlatModel with reuse_features")
    parser.add_argument("--eval", required=True, help="eval shard glob")
    parser.add_argument("--out", default="results/reuse_gap.json")
    args = parser.parse_args(argv)
    from machine import Machine
    here = Machine()
    if not os.path.exists(args.model):
        parser.error(f"--model {args.model}: no such file")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from glat_tf.data import pipeline
    from glat_tf.loading import load_model
    from train.evaluate import predict, score_streams

    model = load_model(args.model)
    if not getattr(model, "reuse_features", False):
        print(f"reuse_gap: error: {args.model} is not a reuse_features model", file=sys.stderr)
        return 2
    result, per_clip = {"model": args.model}, {}
    for mode, reuse in (("reused", True), ("crop_pass", False)):
        model.reuse_features = reuse  # read at call time: same weights, the other local stream
        data = pipeline.eval_dataset(args.eval, 16, model.num_classes)
        labels, scores = predict(model, data, progress=False)
        result[mode] = {s: r.summary()["mAP"] for s, r in score_streams(labels, scores).items()}
        per_clip[mode] = scores["local"]
        print(f"{mode}: {result[mode]}", flush=True)
    result["local_score_mean_abs_difference"] = float(
        np.mean(np.abs(per_clip["reused"] - per_clip["crop_pass"])))
    result["machine"] = here.record()  # mAP moves with the CPU's kernels
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
