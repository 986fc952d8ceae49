"""The result table over seeds: baseline, GL-AT and its variants, random windows, matched
compute, random crops (rows: train/variants.py), on the demo set or any AudioSet-format shards.

    python train/experiments.py                    # train/configs/experiments.py, demo set
    python train/experiments.py --train "shards/train-*" --eval "shards/eval-*" \
        --strong-labels strong.csv --config experiments --seeds 0,1,2
    python train/experiments.py --seeds 0 --steps 20 --out runs/exp-smoke --rows baseline,glat

Each run is a `glat-fit` process (resumable: a finished run is kept, an interrupted one
continues) that evaluates its final step; with strong labels every run also gets `glat-eval
--strong-labels` for mAP by event duration. Every row's training cost per step is measured by
train/throughput.py (bench/train_throughput.py's measurement) on this preset, N and tau; the
compute-matched baseline trains steps x GL-AT's ratio. Writes <results>/demo_results.{json,md}
and map_vs_compute.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib

from train import plots, report, throughput
from train.demo import flags, load_config
from train.run import final_eval
from train.variants import row_specs


# (table row, run name, stream)
TABLE = (("baseline (backbone only)", "baseline", "global"),
         ("GL-AT global only", "glat", "global"),
         ("GL-AT local only", "glat", "local"),
         ("GL-AT fused", "glat", "fused"),
         ("GL-AT shared weights, global only", "glat_shared", "global"),
         ("GL-AT shared weights, fused", "glat_shared", "fused"),
         ("GL-AT distilled, global only", "glat_distill", "global"),
         ("GL-AT distilled, fused", "glat_distill", "fused"),
         ("GL-AT shared + distilled, global only", "glat_shared_distill", "global"),
         ("GL-AT shared + distilled, fused", "glat_shared_distill", "fused"),
         ("GL-AT half-width local stream, fused", "glat_cheap_local", "fused"),
         ("GL-AT random windows, local only", "glat_random", "local"),
         ("GL-AT random windows, fused", "glat_random", "fused"),
         ("baseline, compute-matched steps", "baseline_matched", "global"),
         ("baseline on random tau crops", "baseline_crop", "global"))


TRAINED: list = []  # run folders this invocation trained (the others were finished already)


def measure_costs(config: dict) -> dict:
    """Every row's training cost per step, measured by train/throughput.py (as
    bench/train_throughput.py) for this preset, batch, N and tau (cached beside the runs
    under a name of those settings)."""
    settings = json.dumps([config["backbone"], config.get("backbone_kwargs", {}),
                           config["batch_size"], config["n_clips"], config["tau"],
                           config["num_classes"]], sort_keys=True)
    out = os.path.join(config["out"], f"train_throughput-{zlib.crc32(settings.encode()):08x}.json")
    if not os.path.exists(out):
        result = throughput.measure(config["backbone"], config.get("backbone_kwargs", {}),
                                    config["batch_size"], n_clips=config["n_clips"],
                                    tau=config["tau"], num_classes=config["num_classes"])
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def run_seconds(name: str, extra: dict, costs: dict, steps: int) -> float:
    """CPU-seconds of training a row took by the benchmark's cost per step (its model's)."""
    model = ("backbone" if extra.get("backbone_only") else
             name if name in costs["seconds_per_step"] else "glat")
    return steps * costs["seconds_per_step"][model]


def run_one(fit_config: dict, run_dir: str, strong_labels: str | None) -> dict:
    """Trains one run (kept if finished, continued if interrupted); its final {stream: summary}.

    With `strong_labels`, glat-eval also writes the run's mAP by event-duration group.
    """
    os.makedirs(run_dir, exist_ok=True)
    steps = fit_config["steps"]
    with open(os.path.join(run_dir, "fit.log"), "a", encoding="utf-8") as log:
        if not os.path.exists(os.path.join(run_dir, "final.keras")):
            TRAINED.append(run_dir)
            fit = [sys.executable, "-m", "train.fit", *flags({**fit_config, "eval_every": steps}),
                   "--out", run_dir, "--resume", "--no-progress"]
            subprocess.run(fit, check=True, stdout=log, stderr=subprocess.STDOUT)
        groups = os.path.join(run_dir, "eval", "duration_groups.json")
        if strong_labels and not os.path.exists(groups):
            evaluate = [sys.executable, "-m", "train.evaluate", "--model",
                        os.path.join(run_dir, "final.keras"), "--eval", fit_config["eval"],
                        "--out", os.path.join(run_dir, "eval"), "--strong-labels",
                        strong_labels, "--no-progress"]
            subprocess.run(evaluate, check=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        return final_eval(run_dir, steps)
    except ValueError:
        raise ValueError(f"{run_dir} holds a finished run of other settings (no evaluation at "
                         f"step {steps}); delete it or choose another --out") from None


def groups_of(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "eval", "duration_groups.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return {g: v["mAP"] for g, v in json.load(f).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments", help="name in train/configs/")
    parser.add_argument("--train", help="training shard glob (default: the demo set)")
    parser.add_argument("--eval", help="evaluation shard glob (with --train)")
    parser.add_argument("--strong-labels", help="onset/offset CSV: mAP by event duration")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--rows", help="comma-separated runs to train (default: all)")
    parser.add_argument("--out", help="override the config's run folder")
    parser.add_argument("--results", default="results", help="folder for demo_results.*")
    parser.add_argument("--cost-ratio", type=float, help="GL-AT / backbone ratio for the "
                        "matched baseline (default: measured)")
    args = parser.parse_args(argv)
    if bool(args.train) != bool(args.eval):
        parser.error("--train and --eval go together")
    config = load_config(args.config)
    for key in ("steps", "out"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else config.pop("seeds")
    config.pop("seeds", None)
    start = time.perf_counter()
    from glat_tf.data import pipeline

    if args.train:
        data = {"train": args.train, "eval": args.eval, "strong_labels": args.strong_labels,
                "manifest": pipeline.read_manifest(args.train)}
        source = args.train
    else:
        from glat_tf.data.demo import ensure_demo_shards
        data = ensure_demo_shards()
        source = "synthetic demo set"
    config["num_classes"] = data["manifest"]["num_classes"]
    os.makedirs(config["out"], exist_ok=True)
    costs = measure_costs(config)
    ratio = args.cost_ratio or costs["glat_cost_ratio"]
    print(f"GL-AT / backbone cost per step: {ratio:.2f}", flush=True)
    fit_base = {k: v for k, v in config.items() if k not in ("out", "num_classes")}
    fit_base.update(train=data["train"], eval=data["eval"])
    specs = row_specs(config, ratio)
    chosen = args.rows.split(",") if args.rows else list(specs)
    unknown = sorted(set(chosen) - set(specs))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; choose from {', '.join(specs)}")
    runs: dict = {}
    for seed in seeds:
        for name in chosen:
            run_dir = os.path.join(config["out"], name, f"seed{seed}")
            t0 = time.perf_counter()
            runs.setdefault(name, []).append(run_one({**fit_base, **specs[name], "seed": seed},
                                                     run_dir, data.get("strong_labels")))
            maps = ", ".join(f"{s} {v['mAP']:.4f}" for s, v in runs[name][-1].items())
            print(f"seed {seed} {name}: mAP {maps} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    table = [(label, report.aggregate([r[stream] for r in runs[name]]))
             for label, name, stream in TABLE if name in runs]
    groups = {name: [groups_of(os.path.join(config["out"], name, f"seed{s}")) for s in seeds]
              for name in runs}
    steps = {name: specs[name].get("steps", config["steps"]) for name in runs}
    compute = {label: run_seconds(name, specs[name], costs, steps[name])
               for label, name, _ in TABLE if name in runs}
    minutes = (time.perf_counter() - start) / 60
    result = {"config": config, "data": source, "seeds": seeds, "cost_ratio": ratio,
              "costs": costs, "trained_now": TRAINED, "steps": steps,
              "training_cpu_seconds": compute, "rows": dict(table), "duration_groups": groups,
              "minutes": minutes, "commands": {"all": "python train/experiments.py"}}
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "demo_results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    plots.compute_plot({label: (compute[label], agg["mAP"]) for label, agg in table},
                       os.path.join(args.results, "map_vs_compute.png"),
                       title=f"{config['backbone']}, {source}")
    matched = steps.get("baseline_matched", round(config["steps"] * ratio))
    note = (f"{source}, {config['backbone']}, batch {config['batch_size']}, "
            f"{config['steps']} steps (compute-matched baseline: {matched} = steps x "
            f"{ratio:.2f}), N={config['n_clips']}, tau={config['tau']} s; mean +- std over "
            f"seeds {seeds}. This invocation trained {len(TRAINED)} of "
            f"{len(seeds) * len(chosen)} runs in {minutes:.0f} min.")
    markdown = report.markdown_table(table, note=note)
    if any(g for per_seed in groups.values() for g in per_seed):
        markdown += ("\n\nBy median event duration (short < 0.5 s, long > 2 s), "
                     "same runs:\n\n" + report.groups_table(groups))
    with open(os.path.join(args.results, "demo_results.md"), "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
