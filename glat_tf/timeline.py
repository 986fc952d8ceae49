"""One recording's tags over time as a PNG: sound event detection at a glance."""

from __future__ import annotations

import numpy as np


def draw(tags, path, *, classes: int = 6, title: str = "") -> None:
    """Fused score of the top `classes` classes per window (a line at each window's
    centre) over time, with the windows GL-AT chose shaded in their class's colour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = np.argsort(-tags.fused.max(axis=0))[:classes]
    centres = (tags.starts + tags.ends) / 2
    fig, ax = plt.subplots(figsize=(10, 4))
    colours = {}
    for c in best:
        (line,) = ax.plot(centres, tags.fused[:, c], marker="o", label=tags.labels[c])
        colours[c] = line.get_color()
    for w in range(len(tags.starts)):
        for start, cls in zip(tags.clip_starts[w], tags.selected_classes[w]):
            ax.axvspan(start, start + tags.crop_seconds, ymin=0, ymax=0.06,
                       color=colours.get(int(cls), "grey"), alpha=0.5)
    ax.set_xlim(0, max(float(tags.ends.max()), 1e-3))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s); bars: windows GL-AT chose, in the colour of their class")
    ax.set_ylabel("fused score")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
