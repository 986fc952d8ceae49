"""The real-recordings table (train/realset_experiments.py): mAP, per-duration mAP, training
CPU-seconds and inference cost per row, as JSON, Markdown and two plots."""

from __future__ import annotations

import json
import os

import numpy as np

LABELS = {
    "baseline": "baseline (CNN, equal steps)",
    "baseline_narrow": "baseline, 28 mel bins (zoom-in's inference cost)",
    "baseline_wide": "baseline, 52 mel bins (shared weights' inference cost)",
    "glat_reuse": "GL-AT reused features",
    "glat_reuse_random": "GL-AT reused features, random windows",
    "glat_zoom": "GL-AT zoom-in",
    "glat_zoom_random": "GL-AT zoom-in, random windows",
    "glat_shared": "GL-AT shared weights (crop pass)",
    "glat_shared_random": "GL-AT shared weights, random windows",
    "glat_reuse_short": "GL-AT reused features, N=5 x 1 s",
    "glat_reuse_short_random": "GL-AT reused features, N=5 x 1 s, random windows",
    "baseline_matched_reuse": "baseline, train CPU of reused features",
    "baseline_matched_zoom": "baseline, train CPU of zoom-in",
    "baseline_matched_reuse_short": "baseline, train CPU of reused features N=5 x 1 s",
    "baseline_matched_shared": "baseline, train CPU of shared weights",
    "baseline_long": "baseline, long run (best on val)",
    "glat_reuse_long": "GL-AT reused features, long run (best on val)",
}


def streams_of(name: str) -> tuple:
    return ("global",) if name.startswith("baseline") else ("fused", "global", "local")


def mean_std(values) -> dict:
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"mean": float("nan"), "std": 0.0, "values": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def text(agg: dict, digits: int = 3) -> str:
    if not agg["values"]:
        return "n/a"
    if len(agg["values"]) == 1:
        return f"{agg['mean']:.{digits}f}"
    return f"{agg['mean']:.{digits}f} +- {agg['std']:.{digits}f}"


def interleaved_costs(folder: str) -> dict:
    """{run name: cost} from <folder>/realset_inference.json, train/inference_cost.py over
    every row's seed-0 model timed in turn (steadier than the per-run timings on a loaded
    machine); {} when absent."""
    path = os.path.join(folder, "realset_inference.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return {model.replace("\\", "/").split("/")[-3]: row for model, row in json.load(f).items()}


def rows_of(result: dict, interleaved: dict) -> list:
    rows = []
    base = result["runs"].get("baseline", {})
    for name, per_seed in result["runs"].items():
        if name.startswith("baseline_matched") and all(
                r == base.get(seed) for seed, r in per_seed.items()):
            continue  # the variant cost what the baseline did: that row is the baseline's
        done = [r for r in per_seed.values() if "eval" in r]
        cost = interleaved.get(name) or next(
            (r["cost"] for r in per_seed.values() if "cost" in r), None)
        cpu = mean_std([r["cpu"]["train_cpu_seconds"] for r in done])
        steps = mean_std(list(result["steps"][name].values()))
        for stream in streams_of(name):
            rows.append({
                "run": name, "stream": stream, "label": f"{LABELS.get(name, name)}, {stream}",
                "seeds": len(done), "steps": steps, "train_cpu_seconds": cpu,
                "ms_per_clip": cost["ms_per_clip"] if cost else None,
                "multiply_adds": cost["multiply_adds"] if cost else None,
                "mAP": mean_std([r["eval"][stream]["mAP"] for r in done]),
                "groups": {g: mean_std([r["groups"][g]["mAP"].get(stream) for r in done])
                           for g in ("short", "medium", "long")},
                "best_step": mean_std([r["best"]["step"] for r in done]),
            })
    return rows


def cells(r: dict) -> list:
    """train CPU-s, M multiply-adds, ms per clip, mAP, short, medium, long of one row."""
    macs = "-" if r["multiply_adds"] is None else f"{r['multiply_adds'] / 1e6:.1f}"
    ms = "-" if r["ms_per_clip"] is None else f"{r['ms_per_clip']:.1f}"
    return ([text(r["train_cpu_seconds"], 0), macs, ms, text(r["mAP"])]
            + [text(r["groups"][g]) for g in ("short", "medium", "long")])


COLUMNS = "train CPU-s | M mult-adds/clip | inference ms/clip | mAP | short | medium | long |"


def markdown(rows: list, result: dict) -> str:
    lines = ["| row | seeds | steps | " + COLUMNS, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['label']} | {r['seeds']} | {r['steps']['mean']:.0f} | "
                     + " | ".join(cells(r)) + " |")
    c = result["config"]
    lines += ["", f"{c['backbone']} {c['backbone_kwargs']}, batch {c['batch_size']}, lr "
              f"{c['lr']}, N={c['n_clips']}, tau={c['tau']} s (zoom-in: N=2, tau=1 s; "
              "'N=5 x 1 s': N=5, tau=1 s); "
              f"mean +- std over seeds {result['seeds']} (column 'seeds': how many finished). "
              "mAP of the checkpoint with the best val mAP, on eval (recordings never used in "
              "train or val); short/medium/long: classes by median event duration "
              "(< 0.5 s, > 2 s). Train CPU-s: measured in each run (time.process_time, one "
              "TensorFlow thread, evaluations excluded; it grows with the machine's load, so it "
              "compares only within a session: each run's 'session' in the JSON, its log in "
              "realset_runs.log). Inference: seed-0 model, batch 1, one "
              "thread, median of rounds timing every row's model in turn; multiply-adds from "
              "TensorFlow's profiler (float ops / 2, the STFT not counted).",
              "", f"Command: `{result['command']}`"]
    return "\n".join(lines)


def compact(rows: list) -> str:
    """The README's table: each run's main stream (fused for GL-AT), both cost axes."""
    lines = ["| row | seeds | " + COLUMNS, "|" + "---|" * 9]
    for r in rows:
        if r["stream"] == ("global" if r["run"].startswith("baseline") else "fused"):
            lines.append(f"| {LABELS.get(r['run'], r['run'])} | {r['seeds']} | "
                         + " | ".join(cells(r)) + " |")
    return "\n".join(lines)


def plot(rows: list, key: str, path: str, xlabel: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    shown = [r for r in rows if r["stream"] in ("fused", "global") and not (
        r["stream"] == "global" and not r["run"].startswith("baseline"))]
    for i, r in enumerate(shown):
        x = r[key]["mean"] if isinstance(r[key], dict) else r[key]
        xerr = r[key]["std"] if isinstance(r[key], dict) else 0
        if x is None:
            continue
        if key == "multiply_adds":
            x /= 1e6
        marker = "s" if r["run"].startswith("baseline") else "o"
        ax.errorbar(x, r["mAP"]["mean"], yerr=r["mAP"]["std"], xerr=xerr, fmt=marker,
                    capsize=3, color=plt.cm.tab20(i % 20), label=r["label"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("eval mAP (mean +- std over seeds)")
    ax.set_title("Real-recordings set: GL-AT variants vs the baseline")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(folder: str, result: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    rows = rows_of(result, interleaved_costs(folder))
    with open(os.path.join(folder, "realset_results.json"), "w", encoding="utf-8") as f:
        json.dump({**result, "rows": rows}, f, indent=1)
    with open(os.path.join(folder, "realset_results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(rows, result) + "\n\nMain stream of each run:\n\n" + compact(rows)
                + "\n")
    plot(rows, "train_cpu_seconds", os.path.join(folder, "realset_map_vs_train_cpu.png"),
         "training CPU-seconds per run (measured)")
    plot(rows, "multiply_adds", os.path.join(folder, "realset_map_vs_inference.png"),
         "inference cost per 10 s clip (M multiply-adds)")
