"""The demo result table with its controls, over seeds: baseline, GL-AT, random windows, matched compute, crops.

    python train/experiments.py                    # train/configs/experiments.py, all rows
    python train/experiments.py --seeds 0 --steps 20 --out runs/exp-smoke

Each run is a `glat-fit` process (resumable: a finished run is kept, an interrupted one
continues) that evaluates its final step; the baseline and GL-AT runs also get `glat-eval
--strong-labels` for mAP by event duration.
Writes <results>/demo_results.json and demo_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from train import report
from train.demo import flags, load_config
from train.run import final_eval


def row_specs(config: dict, ratio: float) -> dict:
    """{run name: extra fit flags}; the compute-matched baseline gets steps x the cost ratio."""
    return {
        "baseline": {"backbone_only": True},
        "glat": {},
        "glat_random": {"selection": "random"},
        "baseline_matched": {"backbone_only": True, "steps": int(round(config["steps"] * ratio))},
        "baseline_crop": {"backbone_only": True, "random_crop": config["tau"]},
    }


# (table row, run name, stream)
TABLE = (("baseline (backbone only)", "baseline", "global"),
         ("GL-AT global only", "glat", "global"),
         ("GL-AT local only", "glat", "local"),
         ("GL-AT fused", "glat", "fused"),
         ("GL-AT random windows, local only", "glat_random", "local"),
         ("GL-AT random windows, fused", "glat_random", "fused"),
         ("baseline, compute-matched steps", "baseline_matched", "global"),
         ("baseline on random tau crops", "baseline_crop", "global"))


GROUPED = ("baseline", "glat")  # runs also scored by event-duration group
TRAINED: list = []  # run folders this invocation trained (the others were finished already)


def measure_ratio(config: dict) -> float:
    """GL-AT / backbone cost per training step, measured by bench/train_throughput.py."""
    out = os.path.join(config["out"], "train_throughput.json")
    if not os.path.exists(out):
        bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "bench", "train_throughput.py")
        subprocess.run([sys.executable, bench, "--backbone", config["backbone"],
                        "--backbone-kwargs", json.dumps(config.get("backbone_kwargs", {})),
                        "--batch-size", str(config["batch_size"]),
                        "--n-clips", str(config["n_clips"]), "--tau", str(config["tau"]),
                        "--num-classes", str(config["num_classes"]), "--out", out], check=True)
    with open(out, encoding="utf-8") as f:
        return json.load(f)["glat_cost_ratio"]


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
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--out", help="override the config's run folder")
    parser.add_argument("--results", default="results", help="folder for demo_results.*")
    parser.add_argument("--cost-ratio", type=float, help="skip measuring the GL-AT/backbone ratio")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    for key in ("steps", "out"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else config.pop("seeds")
    config.pop("seeds", None)
    start = time.perf_counter()
    from glat_tf.data.demo import ensure_demo_shards

    data = ensure_demo_shards()
    config["num_classes"] = len(data["manifest"]["labels"])
    ratio = args.cost_ratio or measure_ratio(config)
    print(f"GL-AT / backbone cost per step: {ratio:.2f}", flush=True)
    fit_base = {k: v for k, v in config.items() if k not in ("out", "num_classes")}
    fit_base.update(train=data["train"], eval=data["eval"])
    runs: dict = {}
    specs = row_specs(config, ratio)
    for seed in seeds:
        for name, extra in specs.items():
            run_dir = os.path.join(config["out"], name, f"seed{seed}")
            t0 = time.perf_counter()
            strong = data["strong_labels"] if name in GROUPED else None
            runs.setdefault(name, []).append(run_one({**fit_base, **extra, "seed": seed},
                                                     run_dir, strong))
            maps = ", ".join(f"{s} {v['mAP']:.4f}" for s, v in runs[name][-1].items())
            print(f"seed {seed} {name}: mAP {maps} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    table = [(label, report.aggregate([r[stream] for r in runs[name]]))
             for label, name, stream in TABLE]
    groups = {name: [groups_of(os.path.join(config["out"], name, f"seed{s}")) for s in seeds]
              for name in GROUPED}
    minutes = (time.perf_counter() - start) / 60
    result = {"config": config, "seeds": seeds, "cost_ratio": ratio, "trained_now": TRAINED,
              "steps": {name: extra.get("steps", config["steps"]) for name, extra in specs.items()},
              "rows": dict(table), "duration_groups": groups, "minutes": minutes,
              "commands": {"all": "python train/experiments.py"}}
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "demo_results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    note = (f"Synthetic demo set, {config['backbone']}, batch {config['batch_size']}, "
            f"{config['steps']} steps (compute-matched baseline: "
            f"{result['steps']['baseline_matched']} = steps x {ratio:.2f}), N={config['n_clips']}, "
            f"tau={config['tau']} s; mean +- std over seeds {seeds}. This invocation trained "
            f"{len(TRAINED)} of {len(seeds) * len(specs)} runs in {minutes:.0f} min.")
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
