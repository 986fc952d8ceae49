"""One recording's tags over time as a PNG: the global stream's frame activations of its top
classes over the whole file, at the frontend's frame resolution, with the clips GL-AT chose
marked on their class's row."""

from __future__ import annotations

import numpy as np

from glat_core.audio import shortest_input


def frame_rows(tags):
    """(edges (F+1,) seconds, activations (F, L)): every window's frames laid on the file's
    time axis, each window keeping the frames nearest to it where windows overlap, cut at
    the file's end (a short file's padding is not shown)."""
    end = int(tags.window_ends.max())
    starts, ends = tags.window_starts, tags.window_ends
    edges, rows = [], []
    for w, frames in enumerate(tags.framewise):
        # The model saw the window, end-padded to its shortest input: its frames divide that.
        seen = max(int(ends[w] - starts[w]), shortest_input(tags.crop_samples, tags.sample_rate))
        step = seen / len(frames)
        low = starts[w] if w == 0 else (starts[w] + ends[w - 1]) / 2
        high = np.inf if w + 1 == len(starts) else (ends[w] + starts[w + 1]) / 2
        for f, row in enumerate(np.asarray(frames)):
            a, b = starts[w] + f * step, starts[w] + (f + 1) * step
            if a >= end:
                break
            if low <= (a + b) / 2 < high:
                edges.append((max(a, low), min(b, high, end)))
                rows.append(row)
    edge_array = np.array([e[0] for e in edges] + [edges[-1][1]]) / float(tags.sample_rate)
    return edge_array, np.stack(rows)


def draw(tags, path, *, classes: int = 8, title: str = "") -> None:
    """Heat map of the top `classes` classes' frame activations over time (rows ordered by
    their best fused score), each chosen clip drawn as a box on its class's row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, activations = frame_rows(tags)
    best = np.argsort(-tags.fused.max(axis=0), kind="stable")[:classes]
    names = tags.names
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(best) + 1.8))
    mesh = ax.pcolormesh(edges, np.arange(len(best) + 1), activations[:, best].T,
                         vmin=0, vmax=1, cmap="magma", shading="flat")
    rate = float(tags.sample_rate)
    row_of = {int(c): r for r, c in enumerate(best)}
    drawn = set()
    for w in range(len(tags.window_starts)):
        for start, cls in zip(tags.clip_starts[w].tolist(), tags.selected_classes[w].tolist()):
            if cls not in row_of or (start, cls) in drawn:
                continue
            drawn.add((start, cls))
            begin = start / rate
            end = min(start + tags.crop_samples, tags.window_ends.max()) / rate
            ax.add_patch(matplotlib.patches.Rectangle(
                (begin, row_of[cls] + 0.08), end - begin, 0.84, fill=False, lw=1.6,
                edgecolor="cyan"))
    ax.set_yticks(np.arange(len(best)) + 0.5)
    ax.set_yticklabels([f"{names[c]} ({tags.fused[:, c].max():.2f})" for c in best])
    ax.invert_yaxis()
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("time (s); cyan boxes: the clips GL-AT chose, on their class's row")
    ax.set_title(title or "frame activations of the top classes (best fused score)")
    fig.colorbar(mesh, ax=ax, label="frame activation", pad=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
