"""GL-AT against the baseline on the real-recordings set, costs on both axes, over seeds.

    python bench/realset.py --out realset
    nice -n 10 python -m train.realset_experiments --data realset --seeds 0,1,2

Rows: train/variants.py realset_rows, plus for each GL-AT variant a baseline trained for as
many CPU-seconds as that variant spent (its steps from the CPU-seconds per step of a variant
run and a baseline run of one session: each run records its session), and with --long a
baseline and the reuse variant trained --long-steps (early stopping on val: "both trained to
their best"). --previous <results json> keeps an
earlier session's runs whose folders are gone (rows and seeds are added, not retrained).
Every run is one glat-fit process at a time on one TensorFlow thread (train/timed_fit.py
measures its training CPU-seconds), keeps the checkpoint with the best val mAP (val: clips
mixed from the train recordings) and is scored on eval with glat-eval --strong-labels.
Inference cost per clip (ms at batch 1 on one thread, multiply-adds) is measured on each
row's seed-0 model by train/inference_cost.py.
Writes <results>/realset_results.{json,md} and realset_map_vs_{train_cpu,inference}.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from train.demo import flags, load_config
from train.variants import realset_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_THREAD = ("import sys, tensorflow as tf; tf.config.threading.set_intra_op_parallelism_threads"
              "(1); tf.config.threading.set_inter_op_parallelism_threads(1); from {module} import "
              "main; sys.exit(main(sys.argv[1:]))")
SAME_COST = 0.03  # a variant within 3 % of the baseline's CPU-seconds is matched by it
# Baselines are matched to these variants' training CPU-seconds.
MATCHED = ("glat_reuse", "glat_zoom", "glat_shared", "glat_reuse_short")


def one_thread(module: str, argv: list, log) -> None:
    cmd = [sys.executable, "-c", ONE_THREAD.format(module=module), *argv]
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def run_one(fit: dict, run_dir: str, data: dict, measure_cost: bool) -> dict:
    """Trains (unless finished), scores best.keras on eval; {cpu, eval, groups, cost}."""
    os.makedirs(run_dir, exist_ok=True)
    best = os.path.join(run_dir, "best.keras")
    with open(os.path.join(run_dir, "run.log"), "a", encoding="utf-8") as log:
        if not os.path.exists(os.path.join(run_dir, "final.keras")):
            resume = ["--resume"] if os.path.exists(os.path.join(run_dir, "checkpoints")) else []
            cmd = [sys.executable, "-m", "train.timed_fit", "--cpu-out",
                   os.path.join(run_dir, "cpu.json"), "--threads", "1", *flags(fit),
                   "--train", data["train"], "--eval", data["val"], "--out", run_dir,
                   "--no-progress", *resume]
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        eval_dir = os.path.join(run_dir, "eval")
        if not os.path.exists(os.path.join(eval_dir, "duration_groups.json")):
            one_thread("train.evaluate", ["--model", best, "--eval", data["eval"], "--out",
                                          eval_dir, "--strong-labels", data["strong_labels"],
                                          "--no-progress"], log)
        cost_path = os.path.join(run_dir, "inference_cost.json")
        if measure_cost and not os.path.exists(cost_path):
            subprocess.run([sys.executable, "-m", "train.inference_cost",
                            "--model", best, "--threads", "1", "--repeats", "7",
                            "--out", cost_path], check=True, stdout=log,
                           stderr=subprocess.STDOUT, cwd=ROOT)
    out = {}
    for key, name in (("cpu", "cpu.json"), ("eval", "eval/summary.json"),
                      ("groups", "eval/duration_groups.json"), ("best", "best.json"),
                      ("cost", "inference_cost.json")):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out[key] = json.load(f)
    return out


def previous_runs(path: str | None) -> tuple[dict, dict, str | None]:
    """({name: {seed: run}}, {name: {seed: steps}}, command) recorded in an earlier
    realset_results.json, so a session without those run folders adds rows and seeds to
    the table instead of retraining it; ({}, {}, None) without a path."""
    if not path:
        return {}, {}, None
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    runs = {n: {int(s): r for s, r in v.items() if "eval" in r} for n, v in old["runs"].items()}
    steps = {n: {int(s): k for s, k in v.items() if int(s) in runs.get(n, {})}
             for n, v in old["steps"].items()}
    return runs, steps, old.get("command")


def matched_steps(runs: dict, name: str, seed: int, steps: int) -> int:
    """Baseline steps costing what `name` spent: its CPU-seconds / the baseline's per step,
    from two runs measured in the same session (equal "session" fields; a run without one
    pairs with none): CPU-seconds grow with the machine's load (the same seeded baseline run
    measured 54 and 75 CPU-s in two sessions), so a ratio across sessions measures the load.
    This seed's pair if it qualifies, else the first seed's that does; None when no pair does."""
    def same_session(s):
        session = runs[name][s].get("session")
        return (s in runs["baseline"] and session is not None
                and session == runs["baseline"][s].get("session"))
    pair = next((s for s in [seed, *sorted(runs[name])] if same_session(s)), None)
    if pair is None:
        return None
    glat, base = runs[name][pair]["cpu"], runs["baseline"][pair]["cpu"]
    return int(round(steps * glat["train_cpu_seconds"] / base["train_cpu_seconds"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="realset", help="bench/realset.py's --out folder")
    parser.add_argument("--config", default="realset", help="name in train/configs/")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", help="comma-separated rows (default: all)")
    parser.add_argument("--steps", type=int, help="override the config's steps")
    parser.add_argument("--long-steps", type=int, default=0,
                        help="also train baseline_long and glat_reuse_long this long (0: no)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the finished runs of these seeds and rows")
    parser.add_argument("--previous", help="an earlier realset_results.json: its runs are kept "
                        "and not retrained (unless their folder under --out exists)")
    parser.add_argument("--out", default="runs/realset")
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.steps:
        config["steps"] = args.steps
    shards = os.path.join(args.data, "shards")
    data = {split: os.path.join(shards, f"{split}-*-of-*.tfrecord")
            for split in ("train", "val", "eval")}
    data["strong_labels"] = os.path.join(args.data, "raw", "strong_labels.csv")
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        parser.error(f"--data {args.data}: no shards; run python bench/realset.py --out "
                     f"{args.data} first")
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = realset_rows(config)
    chosen = args.rows.split(",") if args.rows else list(specs) + [f"baseline_matched_{n[5:]}"
                                                                   for n in MATCHED]
    if args.long_steps:
        chosen += ["baseline_long", "glat_reuse_long"]
    try:
        runs, steps, command = previous_runs(args.previous)
    except (OSError, ValueError, KeyError) as err:
        parser.error(f"--previous {args.previous}: {err}")
    start = time.perf_counter()
    session = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for seed in seeds:
        for name in chosen:
            run_dir = os.path.join(args.out, name, f"seed{seed}")
            if seed in runs.get(name, {}) and not os.path.exists(run_dir):
                continue  # recorded in --previous
            if name.startswith("baseline_matched_"):
                target = "glat_" + name.removeprefix("baseline_matched_")
                if target not in runs or seed not in runs[target]:
                    continue
                fit = {**config, "backbone_only": True,
                       "steps": matched_steps(runs, target, seed, config["steps"])}
                if fit["steps"] is None:
                    print(f"seed {seed} {name}: no {target} run measured in the same session "
                          "as a baseline run: not trained", flush=True)
                    continue
                if abs(fit["steps"] - config["steps"]) <= SAME_COST * config["steps"]:
                    # The variant cost what the baseline did: its matched baseline is that run.
                    runs.setdefault(name, {})[seed] = runs["baseline"][seed]
                    steps.setdefault(name, {})[seed] = config["steps"]
                    print(f"seed {seed} {name}: {fit['steps']} steps is within "
                          f"{SAME_COST:.0%} of the baseline's: the baseline run", flush=True)
                    continue
            elif name.endswith("_long"):
                base = specs[name.removesuffix("_long")]
                fit = {**config, **base, "steps": args.long_steps,
                       "eval_every": max(1, args.long_steps // 8)}
            else:
                fit = {**config, **specs[name]}
            fit["seed"] = seed
            if args.report_only and not os.path.exists(os.path.join(run_dir, "eval",
                                                                    "summary.json")):
                continue
            t0 = time.perf_counter()
            # Trained whole in this session, or partly (resumed) or wholly before it.
            started = any(os.path.exists(os.path.join(run_dir, f))
                          for f in ("final.keras", "checkpoints"))
            result = run_one(fit, run_dir, data, measure_cost=seed == seeds[0])
            result["session"] = f"earlier: {run_dir}" if started else session
            runs.setdefault(name, {})[seed] = result
            steps.setdefault(name, {})[seed] = fit["steps"]
            maps = ", ".join(f"{s} {v['mAP']:.3f}" for s, v in result["eval"].items())
            print(f"seed {seed} {name} ({fit['steps']} steps, "
                  f"{result['cpu']['train_cpu_seconds']:.0f} train CPU-s, best val at step "
                  f"{result['best']['step']}): eval mAP {maps} "
                  f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
            write_results(args, config, seeds, runs, steps, start, command)
    if not any(r for r in runs.values()):
        return 0
    write_results(args, config, seeds, runs, steps, start, command)
    return 0


def write_results(args, config, seeds, runs, steps, start, command=None) -> None:
    from train.realset_report import write
    seeds = sorted({s for per_seed in runs.values() for s in per_seed} | set(seeds))
    write(args.results, {"config": config, "seeds": seeds, "steps": steps, "out": args.out,
                         "minutes": (time.perf_counter() - start) / 60,
                         "runs": {n: {str(s): r for s, r in v.items()} for n, v in runs.items()},
                         "command": command or (
                             "python bench/realset.py --out realset && nice -n 10 python -m "
                             f"train.realset_experiments --data realset --seeds {args.seeds}"
                             + (f" --long-steps {args.long_steps}" if args.long_steps else ""))})


if __name__ == "__main__":
    raise SystemExit(main())
