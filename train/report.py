"""Result tables: per-run metric rows -> mean +- std over seeds, as Markdown."""

from __future__ import annotations

import numpy as np

METRICS = ("mAP", "mAUC", "d_prime")


def aggregate(runs: list[dict]) -> dict:
    """[{metric: value}, ...] over seeds -> {metric: {"mean", "std", "values"}} (std: ddof=1)."""
    out = {}
    for metric in METRICS:
        values = [float(r[metric]) for r in runs]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[metric] = {"mean": float(np.mean(values)), "std": std, "values": values}
    return out


def markdown_table(rows: list[tuple[str, dict]], *, note: str = "") -> str:
    """rows = [(name, aggregate(...) or {metric: value})]: one Markdown table."""
    seeds = max((len(v["values"]) for _, agg in rows for v in agg.values()
                 if isinstance(v, dict)), default=1)
    header = "| model | " + " | ".join(METRICS) + " |"
    lines = [header, "|---|" + "---|" * len(METRICS)]
    for name, agg in rows:
        cells = []
        for metric in METRICS:
            value = agg[metric]
            if isinstance(value, dict) and seeds > 1:
                cells.append(f"{value['mean']:.3f} +- {value['std']:.3f}")
            else:
                cells.append(f"{value['mean'] if isinstance(value, dict) else value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def groups_table(groups: dict) -> str:
    """{run: [{group: {stream: mAP}} per seed]} -> Markdown, a row per (run, stream), mean +- std."""
    names = [g for g in ("short", "medium", "long")
             if any(seed and g in seed for per_seed in groups.values() for seed in per_seed)]
    lines = ["| model | " + " | ".join(f"{g} events mAP" for g in names) + " |",
             "|---|" + "---|" * len(names)]
    for run, per_seed in groups.items():
        per_seed = [s for s in per_seed if s]
        if not per_seed:
            continue
        for stream in per_seed[0][names[0]]:
            cells = []
            for g in names:
                values = [s[g][stream] for s in per_seed if s.get(g, {}).get(stream) is not None]
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                cells.append(f"{np.mean(values):.3f} +- {std:.3f}" if values else "n/a")
            lines.append(f"| {run} {stream} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
