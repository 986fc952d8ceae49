"""Parameters and CPU forward time per 10 s clip of each backbone, alone and inside GL-AT.

    python bench/model_cost.py                       # every full-size preset
    python bench/model_cost.py cnn10 talnet --batch-sizes 1 8 --repeats 3
    python bench/model_cost.py --model runs/x/final.keras --out cost.json   # one saved model

Inference mode, one tf.function per model and batch size, median of `--repeats` timed runs
after a warm-up. GL-AT is GlatModel(preset, n_clips=5, tau=3): its ideal cost ratio is
1 + N * tau / T0 = 2.5 at 10 s. Results merge into bench/results/model_cost.json (so subsets
can be re-run); a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import tensorflow as tf

from glat_tf import backbones
# multiply_adds: re-exported for the tests that load this script (bench/ is not a package).
from train.inference_cost import ms_per_clip, multiply_adds, trainable_params  # noqa: F401

SAMPLE_RATE = 32000


def full_size_presets() -> list[str]:
    return [n for n in backbones.names() if not n.endswith(("_tiny", "_small"))]


def glat_model(preset, num_classes, n_clips, tau):
    try:
        from glat_tf.model import GlatModel
    except ImportError:  # the library without the GL-AT model: backbone numbers only
        return None
    return GlatModel(backbone=preset, num_classes=num_classes, n_clips=n_clips, tau=tau,
                     sample_rate=SAMPLE_RATE)


def variant_model(preset, args, name, samples):
    """A GL-AT variant of train/variants.py, built as glat-fit builds it."""
    from train.run import FitConfig, build_model
    from train.variants import glat_variants
    fields = glat_variants({"backbone": preset, "backbone_kwargs": {}})[name]
    config = FitConfig(train="-", out="-", backbone=preset, n_clips=args.n_clips,
                       tau=args.tau).replace(**fields)
    return build_model(config, args.num_classes, SAMPLE_RATE, None, samples)


def measure(preset, args) -> dict:
    """One preset's row: wall ms per clip (`*_ms_per_clip`) and CPU ms per clip
    (`*_cpu_ms_per_clip`) by batch size, for the backbone, GL-AT and each variant, and each
    one's ratio to the backbone (wall and CPU; the models are timed in alternating rounds)."""
    samples = int(round(args.seconds * SAMPLE_RATE))
    net = backbones.build(preset, num_classes=args.num_classes)
    net.build((None, samples))
    row = {"params": trainable_params(net)}
    models = {"backbone": net}
    glat = glat_model(preset, args.num_classes, args.n_clips, args.tau)
    if glat is not None:
        glat.build((None, samples))
        row["glat_params"] = trainable_params(glat)
        models["glat"] = glat
    for name in args.variants:
        models[name] = variant_model(preset, args, name, samples)
        row.setdefault("variants", {})[name] = {"params": trainable_params(models[name])}
    by_batch = {str(b): ms_per_clip(models, b, samples, args.repeats) for b in args.batch_sizes}
    for name in models:
        runs = {b: by_batch[b][name] for b in by_batch}
        # GL-AT's keys carry its name (glat_ms_per_clip, ...); a variant has its own dict.
        cell, prefix = (row["variants"][name], "") if name in args.variants else (row, f"{name}_")
        cell[f"{prefix}ms_runs"] = {b: walls for b, (walls, _) in runs.items()}
        cell[f"{prefix}cpu_ms_runs"] = {b: cpus for b, (_, cpus) in runs.items()}
        cell[f"{prefix}ms_per_clip"] = {b: statistics.median(w) for b, (w, _) in runs.items()}
        cell[f"{prefix}cpu_ms_per_clip"] = {b: statistics.median(c) for b, (_, c) in runs.items()}
        if name != "backbone":
            cell[f"{prefix}ratio"] = {b: cell[f"{prefix}ms_per_clip"][b]
                                      / row["backbone_ms_per_clip"][b] for b in runs}
            cell[f"{prefix}cpu_ratio"] = {b: cell[f"{prefix}cpu_ms_per_clip"][b]
                                          / row["backbone_cpu_ms_per_clip"][b] for b in runs}
    return row


def markdown(presets: dict, batch_sizes) -> str:
    def cells(values, fmt):
        return [fmt.format(values[str(b)]) if str(b) in values else "-" for b in batch_sizes]
    sizes = [f"b{b}" for b in batch_sizes]
    header = (["preset", "params"] + [f"backbone ms/clip {s}" for s in sizes]
              + [f"GL-AT ms/clip {s}" for s in sizes] + [f"ratio {s}" for s in sizes])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in presets.items():
        lines.append("| " + " | ".join(
            [name, f"{row['params']:,}"] + cells(row["backbone_ms_per_clip"], "{:.1f}")
            + cells(row["glat_ms_per_clip"], "{:.1f}") + cells(row["glat_ratio"], "{:.2f}"))
            + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="backbone presets (default: all full-size)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--num-classes", type=int, default=527)
    parser.add_argument("--n-clips", type=int, default=5)
    parser.add_argument("--tau", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="", type=lambda t: [v for v in t.split(",") if v],
                        help="GL-AT variants of train/variants.py to measure too, e.g. "
                             "glat_shared,glat_cheap_local")
    parser.add_argument("--model", nargs="+", help="measure these saved .keras models only "
                        "(batch 1, timed in turn; --out gets {path: cost}, or the cost of one)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all)")
    parser.add_argument("--out", default="bench/results/model_cost.json")
    args = parser.parse_args(argv)
    if args.model:  # one saved model's cost: train/inference_cost.py's command
        from train import inference_cost
        return inference_cost.main(["--model", *args.model, "--seconds", str(args.seconds),
                                    "--repeats", str(args.repeats), "--threads",
                                    str(args.threads), "--out", args.out])
    tf.get_logger().setLevel("ERROR")  # one tf.function per model and batch: retracing is meant
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    presets = args.presets or full_size_presets()
    unknown = sorted(set(presets) - set(backbones.names()))
    if unknown:
        parser.error(f"unknown presets {unknown}; registered: {', '.join(backbones.names())}")
    result = {"presets": {}}
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            result = json.load(f)
    from machine import Machine, command  # bench/ is sys.path[0] when this runs as a script

    result.update({"seconds": args.seconds, "n_clips": args.n_clips, "tau": args.tau,
                   "num_classes": args.num_classes, "repeats": args.repeats,
                   "command": command(argv)})
    for preset in presets:
        here = Machine()
        row = measure(preset, args)
        # per row: the rows of one file may come from several runs
        row["machine"], row["command"] = here.record(), command(argv)
        result["presets"][preset] = row
        print(f"{preset}: {json.dumps(row)}", flush=True)
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:  # after every preset: long runs
            json.dump(result, f, indent=1)
    print(markdown({p: result["presets"][p] for p in presets}, args.batch_sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
