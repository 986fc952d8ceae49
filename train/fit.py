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

STRATEGY_CHOICES = ("default", "mirrored", "multiworker")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
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
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        config = runpy.run_path(first.config).get("CONFIG")
        if not isinstance(config, dict):
            parser.error(f"--config {first.config} must define a dict CONFIG")
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            parser.error(f"--config {first.config}: unknown keys {unknown}")
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
    if not args.train or not args.out:
        parser.error("--train and --out are required (or run with no arguments for the demo)")
    if args.random_crop is not None and not args.backbone_only:
        parser.error("--random-crop is a baseline control: use it with --backbone-only")
    for name in ("steps", "batch_size", "eval_every", "n_clips", "eval_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    args.checkpoint_every = args.checkpoint_every or args.eval_every
    return args


def shard_labels_csv(train_glob: str, manifest: dict, out_dir: str) -> str | None:
    """The shards' class_labels_indices.csv (copied beside every saved .keras for export).

    The file ingest put beside the shards, else one written from the manifest's label
    list, else AudioSet's when there are 527 classes; None (with a warning) otherwise.
    """
    from glat_tf.data import storage
    from glat_tf.data.labels import LabelMap, audioset_labels_csv

    folder = train_glob if storage.isdir(train_glob) else os.path.dirname(train_glob)
    path = storage.join(folder, manifest.get("labels_csv") or "labels.csv")
    if storage.exists(path) and storage.is_url(path):  # fetched once: copied beside each .keras
        os.makedirs(out_dir, exist_ok=True)
        storage.copy(path, os.path.join(out_dir, "labels.csv"))
        return os.path.join(out_dir, "labels.csv")
    if os.path.isfile(path):
        return path
    if manifest.get("labels"):
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "labels.csv")
        LabelMap(tuple(e["mid"] for e in manifest["labels"]),
                 tuple(e["display_name"] for e in manifest["labels"])).to_csv(path)
        return path
    if manifest["num_classes"] == 527:
        return audioset_labels_csv()
    print(f"warning: no label CSV beside {train_glob}; export will need --labels", file=sys.stderr)
    return None


def train(args: argparse.Namespace) -> dict:
    """Builds everything from parsed flags and trains; returns the Trainer's result."""
    from train.strategy import make_strategy

    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = make_strategy(args.strategy)

    import keras
    from glat_tf.data import pipeline
    from glat_tf.model import GlatModel
    from train.baseline import BackboneTagger
    from train.init_weights import load_init
    from train.loop import LoopSettings, Trainer

    manifest = pipeline.read_manifest(args.train)
    num_classes, sample_rate = manifest["num_classes"], manifest["sample_rate"]
    labels_csv = shard_labels_csv(args.train, manifest, args.out)
    crop = None if args.random_crop is None else int(round(args.random_crop * sample_rate))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.mixed_precision)

    def build_model():
        if args.backbone_only:
            model = BackboneTagger(args.backbone, num_classes, sample_rate,
                                   backbone_kwargs=args.backbone_kwargs)
        else:
            model = GlatModel(args.backbone, num_classes, args.n_clips, args.tau, sample_rate,
                              loss_mode=args.loss_mode, suppress_overlap=args.suppress_overlap,
                              selection=args.selection, backbone_kwargs=args.backbone_kwargs)
        model.build((None, crop or manifest["clip_samples"]))
        if args.init:
            print(load_init(model, args.init), flush=True)
        return model

    def train_data(context, seed):
        return pipeline.train_dataset(args.train, args.batch_size, num_classes,
                                      balanced=args.balanced, mixup_alpha=args.mixup,
                                      crop_samples=crop, seed=seed, input_context=context,
                                      skip_corrupt=args.skip_corrupt)

    def eval_data():
        return pipeline.eval_dataset(args.eval, args.eval_batch_size, num_classes)

    settings = LoopSettings(steps=args.steps, batch_size=args.batch_size,
                            eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                            learning_rate=args.lr, amsgrad=args.amsgrad, jit_compile=args.jit,
                            seed=args.seed, progress=args.progress)
    trainer = Trainer(strategy, build_model, train_data, eval_data if args.eval else None,
                      settings, args.out, resume=args.resume, labels_csv=labels_csv)
    if trainer.start_step:
        print(f"resumed {args.out} at step {trainer.start_step}", flush=True)
    return trainer.run()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from train.demo import run_demo
        return run_demo()
    args = parse_args(argv)
    try:
        result = train(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"glat-fit: error: {exc}", file=sys.stderr)
        return 2
    if result["interrupted"] is not None:
        return 128 + int(result["interrupted"])  # the shell's code for "ended by this signal"
    best = result["best"]
    if best and result["is_chief"]:
        print(f"best {best['stream']} mAP {best['mAP']:.4f} at step {best['step']} -> "
              f"{os.path.join(args.out, 'best.keras')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
