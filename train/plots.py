"""PNG figures of evaluation results: the N / tau sweep (the paper's Fig. 2) and per-class AP bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STREAM_STYLE = {"global": ("tab:blue", "--"), "local": ("tab:orange", "-"),
                "fused": ("tab:green", "-")}
MAX_BARS = 60  # beyond this a bar chart is unreadable: show the best and worst halves


def sweep_plot(sweep: dict, path: str, *, n_clips: int, tau: float) -> None:
    """sweep = {"n": [{"n_clips", "tau", "global", "local", "fused"}...], "tau": [...]}, mAP values."""
    panels = [(key, name, label, fixed) for key, name, label, fixed in
              (("n", "N", "N (clips selected)", f"tau = {tau:g} s"),
               ("tau", "tau", "tau (window, s)", f"N = {n_clips}")) if sweep.get(key)]
    if not panels:
        raise ValueError("sweep holds no points to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (key, name, label, fixed) in zip(axes[0], panels):
        points = sweep[key]
        x = [p["n_clips" if key == "n" else "tau"] for p in points]
        for stream, (color, style) in STREAM_STYLE.items():
            ax.plot(x, [p[stream] for p in points], style, color=color, marker="o", label=stream)
        ax.set_xlabel(label)
        ax.set_ylabel("mAP")
        ax.set_xticks(x)
        ax.set_title(f"mAP vs {name} ({fixed})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def per_class_ap_plot(names: list[str], ap: dict, path: str, *, sort_by: str) -> None:
    """Horizontal bars of per-class AP for each stream in `ap` ({stream: (L,) array}), sorted."""
    order = np.argsort(-np.nan_to_num(ap[sort_by], nan=-1.0))
    if len(order) > MAX_BARS:
        order = np.concatenate([order[:MAX_BARS // 2], order[-MAX_BARS // 2:]])
    streams = list(ap)
    height = 0.8 / len(streams)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * len(order) * max(1, len(streams) / 2)))
    y = np.arange(len(order))
    for k, stream in enumerate(streams):
        color = STREAM_STYLE.get(stream, ("tab:gray", "-"))[0]
        ax.barh(y + k * height, np.nan_to_num(ap[stream][order]), height, color=color,
                label=stream)
    ax.set_yticks(y + height * (len(streams) - 1) / 2)
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("average precision")
    ax.set_xlim(0, 1)
    shown = "all classes" if len(order) == len(names) else \
        f"best and worst {MAX_BARS // 2} of {len(names)} classes"
    ax.set_title(f"Per-class AP ({shown}, sorted by {sort_by})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compute_plot(rows: dict, path: str, *, title: str) -> None:
    """rows = {label: (training CPU-seconds, {"mean", "std"} of mAP)}: mAP against the
    training compute each row spent, with the seeds' spread as error bars."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (label, (seconds, m_ap)) in enumerate(rows.items()):
        marker = "s" if "baseline" in label else "^" if "global only" in label else "o"
        ax.errorbar(seconds, m_ap["mean"], yerr=m_ap["std"], fmt=marker, capsize=3,
                    color=plt.cm.tab20(i % 20), label=label)
    ax.set_xlabel("training compute (CPU-seconds, measured cost per step x steps)")
    ax.set_ylabel("eval mAP (mean +- std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
