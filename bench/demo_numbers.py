"""Regenerates every figure README.md and train/configs/demo.py quote for the demo, into results/.

    python bench/demo_numbers.py                   # demo table + the demo model's export report
    python bench/demo_numbers.py --experiments     # also the 3-seed table (train/experiments.py, ~35 min)

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


def demo_table(out: str) -> dict:
    """The demo's four rows ({row: {mAP, mAUC, d_prime}}), trained (or found) in `out`."""
    code = ("import json, sys\n"
            "from train.demo import final_eval, load_config, run_demo\n"
            f"run_demo({out!r})\n"
            "steps = load_config('demo')['steps']\n"
            "json.dump({run: final_eval(f'{sys.argv[1]}/{run}', steps) for run in "
            "('baseline', 'glat')}, open(sys.argv[2], 'w'))\n")
    evals = pathlib.Path(out) / "final_evals.json"
    _run("-c", code, out, str(evals))
    runs = json.loads(evals.read_text())
    rows = {"baseline (backbone only)": runs["baseline"]["global"],
            "GL-AT global only": runs["glat"]["global"],
            "GL-AT local only": runs["glat"]["local"],
            "GL-AT fused": runs["glat"]["fused"]}
    return {name: {k: round(v, 4) for k, v in row.items() if k != "skipped_classes"}
            for name, row in rows.items()}


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo_numbers", help="run folder (kept, reused)")
    parser.add_argument("--results", default="results", help="where demo_numbers.json goes")
    parser.add_argument("--experiments", action="store_true",
                        help="also the 3-seed table: python train/experiments.py (~35 min)")
    parser.add_argument("--no-export", dest="export", action="store_false",
                        help="only the demo table")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from glat_tf.data.demo import ensure_demo_shards

    data = ensure_demo_shards()
    numbers = {"command": "python bench/demo_numbers.py", "demo": demo_table(args.out)}
    if args.export:
        numbers["export"] = export_report(args.out, data)
    if args.experiments:
        _run("train/experiments.py", "--results", args.results)
        numbers["experiments"] = os.path.join(args.results, "demo_results.json")
    numbers["minutes_this_invocation"] = round((time.perf_counter() - start) / 60, 1)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "demo_numbers.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(numbers, f, indent=1)
    print(json.dumps(numbers["demo"], indent=1))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
