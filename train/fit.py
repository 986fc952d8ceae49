"""Train GL-AT (or the plain backbone) from TFRecord shards; with no arguments, the CPU demo.

    glat-fit --train "shards/train-*.tfrecord" --eval "shards/eval-*.tfrecord" --out runs/cnn10
    glat-fit --config train/configs/demo.py --steps 50      # a config file, flags override it
    python train/fit.py                                      # the demo: baseline vs GL-AT table
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys

# Before TensorFlow loads: the BFC allocator reuses batch buffers instead of faulting in
# fresh pages per batch (balanced input pipeline: 560 -> 915 clips per CPU-second here).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
from glat_tf import console  # noqa: E402  first: TensorFlow's start-up stays quiet

from glat_tf.cli_errors import one_line_errors  # noqa: E402
from train.run import POLICIES, STRATEGY_CHOICES, FitConfig, train  # noqa: E402


def json_object(text):
    if isinstance(text, dict):  # from a config file
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glat-fit", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="a Python file defining CONFIG = {flag: value}; flags "
                                    "given on the command line override it")
    p.add_argument("--train", help="training shard glob")
    p.add_argument("--eval", help="evaluation shard glob (omit: no evaluation)")
    p.add_argument("--out", help="output folder (checkpoints, .keras, TensorBoard)")
    p.add_argument("--backbone", default="cnn10", help="registered backbone preset")
    p.add_argument("--n-clips", type=int, default=5, help="N: windows the local stream tags")
    p.add_argument("--tau", type=float, default=3.0, help="window length in seconds")
    p.add_argument("--loss-mode", default="joint", choices=("joint", "frozen_global"))
    p.add_argument("--selection", default="attention", choices=("attention", "random"),
                   help="random: the control with random windows")
    p.add_argument("--no-suppress-overlap", dest="suppress_overlap", action="store_false")
    p.add_argument("--backbone-kwargs", type=json_object, default={},
                   help='preset overrides as JSON, e.g. \'{"n_mels": 32, "hop_length": 640}\'')
    p.add_argument("--share-weights", action="store_true",
                   help="one network for both streams (L_l also trains the global features)")
    p.add_argument("--reuse-features", action="store_true",
                   help="with --share-weights: a window's local score from the global features "
                        "over it (no second backbone pass)")
    p.add_argument("--distill-weight", type=float, default=0.0,
                   help="weight of the global stream's loss on the fused/local score as a soft "
                        "target (0: off)")
    p.add_argument("--distill-target", default="fused", choices=("fused", "local"))
    p.add_argument("--local-backbone", help="a cheaper preset for the local stream "
                                            "(default: the global stream's architecture)")
    p.add_argument("--local-backbone-kwargs", type=json_object, default={},
                   help="overrides of --local-backbone's preset, as --backbone-kwargs")
    p.add_argument("--backbone-only", action="store_true", help="train the plain backbone")
    p.add_argument("--random-crop", type=float, metavar="TAU",
                   help="with --backbone-only: train on random TAU-second crops")
    p.add_argument("--batch-size", type=int, default=32, help="global batch (all replicas)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, help="default: --eval-every")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--amsgrad", action="store_true")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip damaged training records (counted in the log and TensorBoard)")
    p.add_argument("--no-balanced", dest="balanced", action="store_false",
                   help="sample clips uniformly instead of class-balanced")
    p.add_argument("--strategy", default="default", choices=STRATEGY_CHOICES)
    p.add_argument("--mixed-precision", default="float32", choices=POLICIES)
    p.add_argument("--jit", action="store_true", help="XLA-compile the step (slower on CPU)")
    p.add_argument("--init", help="initial weights: a .keras model or a PANNs .pth")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--seed", type=int, help="weights, dropout and data order")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    console.add_verbose(p)
    return p


def parse_args(argv=None) -> FitConfig:
    """The FitConfig of a command line: a --config file's CONFIG, then the flags over it."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        config = runpy.run_path(first.config).get("CONFIG")
        if not isinstance(config, dict):
            parser.error(f"--config {first.config} must define a dict CONFIG")
        unknown = sorted(set(config) - set(FitConfig.field_names()))
        if unknown:
            parser.error(f"--config {first.config}: unknown keys {unknown}")
        parser.set_defaults(**config)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    args.pop("verbose")
    if not args["train"] or not args["out"]:
        parser.error("--train and --out are required (or run with no arguments for the demo)")
    try:
        return FitConfig(**args)
    except ValueError as error:
        parser.error(str(error))


@one_line_errors("glat-fit")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from train.demo import run_demo
        return run_demo()
    config = parse_args(argv)
    result = train(config)  # a ValueError or OSError: one line from one_line_errors
    if result["interrupted"] is not None:
        return 128 + int(result["interrupted"])  # the shell's code for "ended by this signal"
    best = result["best"]
    if best and result["is_chief"]:
        print(f"best {best['stream']} mAP {best['mAP']:.4f} at step {best['step']} -> "
              f"{os.path.join(config.out, 'best.keras')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
