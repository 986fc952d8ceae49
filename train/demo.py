"""`python train/fit.py` with no arguments: the synthetic set, a baseline and GL-AT, one table."""

from __future__ import annotations

import json
import os
import time

from train import report
from train.run import FitConfig, final_eval, train

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def load_config(name: str) -> dict:
    """CONFIG of train/configs/<name>.py (run as a file: the configs are not a package)."""
    import runpy

    return dict(runpy.run_path(os.path.join(CONFIG_DIR, f"{name}.py"))["CONFIG"])


def flags(config: dict) -> list[str]:
    """{"n_clips": 3, "backbone_only": True} -> ["--n-clips", "3", "--backbone-only"]."""
    out = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, dict):
            out += [flag, json.dumps(value)]
        elif value is True:
            out.append(flag)
        elif value is not False and value is not None:  # 0 == False: `not in (False, None)` dropped --seed 0
            out += [flag, str(value)]
    return out


def train_run(config: dict, out_dir: str) -> dict:
    """Trains (or resumes, or finds finished) one run in-process; its final evaluation."""
    fit = FitConfig(**{**config, "out": out_dir, "resume": True})
    result = train(fit)
    if result["interrupted"] is not None:
        raise KeyboardInterrupt(f"stopped by signal {result['interrupted']}; rerun to continue")
    return final_eval(out_dir, fit.steps)


def run_demo(root: str = "runs/demo") -> int:
    from glat_tf.data.demo import ensure_demo_shards

    start = time.perf_counter()
    print("demo: making / finding the synthetic set (demo_data/) ...", flush=True)
    data = ensure_demo_shards()
    config = {**load_config("demo"), "train": data["train"], "eval": data["eval"]}
    print(f"demo: {config['backbone']}, {config['steps']} steps of batch {config['batch_size']} "
          f"for the baseline and for GL-AT (N={config['n_clips']}, tau={config['tau']} s) "
          f"-> {root}/", flush=True)
    base = train_run({**config, "backbone_only": True}, os.path.join(root, "baseline"))
    glat = train_run(config, os.path.join(root, "glat"))
    rows = [("baseline (backbone only)", base["global"]), ("GL-AT global only", glat["global"]),
            ("GL-AT local only", glat["local"]), ("GL-AT fused", glat["fused"])]
    minutes = (time.perf_counter() - start) / 60
    print()
    print(report.markdown_table(rows, note=(
        f"Synthetic demo eval set ({data['manifest']['splits']['eval']['num_clips']} clips, "
        f"{len(data['manifest']['labels'])} classes), one seed, {minutes:.1f} min in all. "
        "train/experiments.py repeats this over seeds with the control runs.")))
    print(f"\nmodels: {root}/baseline/final.keras, {root}/glat/final.keras "
          f"(labels.csv beside each); glat-eval --model {root}/glat/final.keras "
          f"--eval \"{data['eval']}\" --out {root}/glat/eval --strong-labels "
          f"{data['strong_labels']}")
    return 0
