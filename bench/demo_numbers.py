"""Regenerates every figure README.md and train/configs/demo.py quote for the demo, into results/.

    python bench/demo_numbers.py                   # demo table + the demo model's export report
    python bench/demo_numbers.py --seeds 0,1,2 --no-export   # README's demo table: mean +- std
    python bench/demo_numbers.py --experiments     # also the 3-seed table (train/experiments.py, ~35 min)

With --seeds, each seed's run goes to <out>/seed<N> and results/demo_seeds.json holds each
seed's table and minutes, the mean +- std per row and the machine (a seeded run repeats bit
for bit on one machine only, so README quotes the spread).

Runs the demo (`python train/fit.py`'s code) into --out, exports its GL-AT model to LiteRT
(f32, f16, dyn, int8, streaming) and runs `glat-export report` on the demo eval split, then
writes results/demo_numbers.json: the demo table, the report's per-variant figures and the
streaming mAP. A finished run in --out is reused: delete the folder to retrain.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


ROWS = (("baseline (backbone only)", "baseline", "global"), ("GL-AT global only", "glat", "global"),
        ("GL-AT local only", "glat", "local"), ("GL-AT fused", "glat", "fused"))


def demo_table(out: str, seed: int | None = None) -> dict:
    """The demo's four rows ({row: {mAP, mAUC, d_prime}}), trained (or found) in `out`; with
    `seed`, the demo config run with that seed instead of its own, plus the run's minutes."""
    code = ("import json, sys, time\n"
            "from glat_tf.data.demo import ensure_demo_shards\n"
            "from train.demo import final_eval, load_config, run_demo, train_run\n"
            "seed = None if sys.argv[3] == 'config' else int(sys.argv[3])\n"
            "start = time.perf_counter()\n"
            "if seed is None:\n"
            "    run_demo(sys.argv[1])\n"
            "else:\n"
            "    data = ensure_demo_shards()\n"
            "    config = {**load_config('demo'), 'train': data['train'], 'eval': data['eval'],\n"
            "              'seed': seed}\n"
            "    train_run({**config, 'backbone_only': True}, f'{sys.argv[1]}/baseline')\n"
            "    train_run(config, f'{sys.argv[1]}/glat')\n"
            "steps = load_config('demo')['steps']\n"
            "runs = {run: final_eval(f'{sys.argv[1]}/{run}', steps) for run in ('baseline', 'glat')}\n"
            "runs['minutes'] = (time.perf_counter() - start) / 60\n"
            "json.dump(runs, open(sys.argv[2], 'w'))\n")
    evals = pathlib.Path(out) / "final_evals.json"
    if not evals.exists():
        os.makedirs(out, exist_ok=True)
        _run("-c", code, out, str(evals), "config" if seed is None else str(seed))
    runs = json.loads(evals.read_text())
    table = {name: {k: round(v, 4) for k, v in runs[run][stream].items() if k != "skipped_classes"}
             for name, run, stream in ROWS}
    return {**table, "minutes": round(runs.get("minutes", float("nan")), 2)}


def spread(tables: list[dict]) -> dict:
    """{row: {metric: [mean, std]}} over the seeds' tables; std is the sample std (ddof=1): the
    spread to expect from another seed or another machine's kernels."""
    import statistics

    out = {}
    for name, *_ in ROWS:
        out[name] = {k: [round(statistics.mean(t[name][k] for t in tables), 4),
                         round(statistics.stdev(t[name][k] for t in tables), 4)]
                     for k in tables[0][name]}
    return out


def export_report(out: str, data: dict) -> dict:
    """The demo GL-AT model exported (all variants, streaming) and `glat-export report` on it."""
    model = os.path.join(out, "glat", "best.keras")
    lite = os.path.join(out, "lite")
    report_dir = os.path.join(out, "report")
    if not os.path.exists(os.path.join(lite, "metadata.json")):
        _run("-m", "export.cli", "tflite", "--model", model, "--out", lite,
             "--calibration", data["train"], "--variants", "f32,f16,dyn,int8", "--streaming")
    if not os.path.exists(os.path.join(report_dir, "report.json")):
        _run("-m", "export.cli", "report", "--model", model, "--exported", lite,
             "--eval", data["eval"], "--out", report_dir)
    report = json.loads(pathlib.Path(report_dir, "report.json").read_text())
    variants = {}
    for name, row in report["variants"].items():
        variants[name] = {
            "global_kb": round(row["bytes"]["global"] / 1024),
            "local_kb": round(row["bytes"]["local"] / 1024),
            "fused_mAP": round(row["fused"]["mAP"], 4),
            "fused_mAUC": round(row["fused"]["mAUC"], 4),
            "max_abs_diff": row["parity"]["max_abs"], "mean_abs_diff": row["parity"]["mean_abs"],
            "picks_as_good": row["parity"]["selection"],
            "pair_ms": {k: v["pair"] for k, v in row["latency_ms"].items()},
            "streaming_fused_mAP": {k: round(v["fused"]["mAP"], 4)
                                    for k, v in row.get("streaming", {}).items()}}
    keras = report["keras"]["fused"]
    return {"model": model, "report": os.path.join(report_dir, "report.json"),
            "clips": report["clips"],
            "keras_f32": {"fused_mAP": round(keras["mAP"], 4), "fused_mAUC": round(keras["mAUC"], 4)},
            "variants": variants, "targets": report.get("targets", {})}


def machine() -> str:
    """'AMD EPYC, 2 cores, AVX-512': the CPU the figures were measured on (bench/machine.py)."""
    from machine import describe
    return describe()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo_numbers", help="run folder (kept, reused)")
    parser.add_argument("--results", default="results", help="where demo_numbers.json goes")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds, e.g. 0,1,2: the demo table as mean +- std "
                             "over these seeds (runs in <out>/seed<N>); default: the demo's seed")
    parser.add_argument("--experiments", action="store_true",
                        help="also the 3-seed table: python train/experiments.py (~35 min)")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="only the demo table")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else []
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if len(seeds) == 1:
        parser.error("--seeds needs at least two seeds for a spread (or leave it out)")
    start = time.perf_counter()
    from machine import Machine
    here = Machine()
    sys.path.insert(0, str(ROOT))
    from glat_tf.data.demo import ensure_demo_shards

    data = ensure_demo_shards()
    numbers = {"command": "python bench/demo_numbers.py" + (f" --seeds {args.seeds}" if seeds else ""),
               "machine": machine()}
    if seeds:
        tables = {seed: demo_table(os.path.join(args.out, f"seed{seed}"), seed) for seed in seeds}
        numbers["seeds"] = {str(k): v for k, v in tables.items()}
        numbers["demo_spread"] = spread(list(tables.values()))
        numbers["demo"] = tables[seeds[0]]
    else:
        numbers["demo"] = demo_table(args.out)
    if args.export:
        numbers["export"] = export_report(args.out if not seeds else
                                          os.path.join(args.out, f"seed{seeds[0]}"), data)
    if args.experiments:
        _run("train/experiments.py", "--results", args.results)
        numbers["experiments"] = os.path.join(args.results, "demo_results.json")
    numbers["machine_record"] = here.record()
    numbers["minutes_this_invocation"] = round((time.perf_counter() - start) / 60, 1)
    os.makedirs(args.results, exist_ok=True)
    name = "demo_seeds.json" if seeds else "demo_numbers.json"
    path = os.path.join(args.results, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(numbers, f, indent=1)
    print(json.dumps(numbers.get("demo_spread", numbers["demo"]), indent=1))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
