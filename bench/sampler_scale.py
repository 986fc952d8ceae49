"""The balanced sampler at AudioSet scale: 2,000,000 clips x 527 classes with AudioSet's label skew.

    python bench/sampler_scale.py make --out /tmp/sampler2m     # tiny-record shards + manifest (once)
    python bench/sampler_scale.py run --out /tmp/sampler2m [--design streaming]  # start-up, memory, marginal

Records are tiny (1 PCM sample) so that 2M of them fit this machine; the pipeline, manifest
and label skew are those of the real set. The class marginal credits each drawn clip to its
labels in proportion to 1 / n_c: the probability, under PANNs' BalancedTrainSampler (draw a
class uniformly, then one of its clips), that the clip was drawn for that class. PANNs'
sampler itself is simulated on the same labels for reference. JSON and PNG in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


RESULTS = Path(__file__).resolve().parent / "results"
NUM_CLIPS, NUM_CLASSES, SHARD_SIZE = 2_000_000, 527, 1000


def skewed_labels(seed: int = 0) -> list[np.ndarray]:
    """Clip indices of each class: Speech ~50 %, Music ~25 %, then a power law down to 60 clips.

    AudioSet's unbalanced train set: 2.04M clips, ~2 labels per clip, the rarest classes at
    ~60-120 clips. Clips left without a label get one of the next 48 classes at random.
    """
    rng = np.random.default_rng(seed)
    rank = np.arange(3, NUM_CLASSES + 1)
    alpha = np.log(130_000 / 60) / np.log(NUM_CLASSES / 3)
    sizes = [1_350_000, 570_000,  # draws with repeats: ~49 % and ~25 % of clips
              *np.round(130_000 * (rank / 3) ** -alpha).astype(int)]
    members = [np.unique(rng.integers(0, NUM_CLIPS, size)) for size in sizes]
    labelled = np.zeros(NUM_CLIPS, bool)
    for m in members:
        labelled[m] = True
    orphans = np.flatnonzero(~labelled)
    extra = rng.integers(2, 50, len(orphans))
    for c in range(2, 50):
        members[c] = np.union1d(members[c], orphans[extra == c])
    return members


def clip_labels(members) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, classes) of each clip's sorted labels."""
    clips = np.concatenate(members)
    classes = np.concatenate([np.full(len(m), c, np.int32) for c, m in enumerate(members)])
    order = np.lexsort((classes, clips))
    indptr = np.searchsorted(clips[order], np.arange(NUM_CLIPS + 1))
    return indptr, classes[order]


def make(out: Path, seed: int) -> None:
    """Tiny-record shards through ingest's own shard writer: the manifest holds the record index."""
    from tqdm import tqdm

    from glat_tf.data import ingest

    out.mkdir(parents=True, exist_ok=True)
    indptr, classes = clip_labels(skewed_labels(seed))
    settings = ingest.Settings(sample_rate=32000, clip_seconds=1 / 32000, shard_size=SHARD_SIZE)
    count, pcm = NUM_CLIPS // SHARD_SIZE, (np.zeros(1, np.int16).tobytes(), "", "")
    entries = []
    for s in tqdm(range(count), desc="tiny shards", unit="shard"):
        part = range(s * SHARD_SIZE, (s + 1) * SHARD_SIZE)
        rows = [ingest.Row(f"c{i:07d}", "-", tuple(classes[indptr[i]:indptr[i + 1]].tolist()),
                           (0, 0)) for i in part]
        path = str(out / f"train-{s:05d}-of-{count:05d}.tfrecord")
        entries.append(ingest.write_shard(path, path + ".tmp", rows, [pcm] * SHARD_SIZE,
                                          settings, "bench"))
    total = np.bincount(classes, minlength=NUM_CLASSES)
    (out / "manifest.json").write_text(json.dumps({
        "format": "glat_tf.shards/1", "num_classes": NUM_CLASSES, "clip_samples": 1,
        "sample_rate": 32000, "splits": {"train": {
            "compression": "", "complete": True, "num_clips": NUM_CLIPS, "num_shards": count,
            "class_counts": total.tolist(), "shards": entries}}}))
    np.savez(out / "labels.npz", indptr=indptr, classes=classes)


def credited_marginal(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-class share of draws, each (B, L) multi-hot draw split over its labels by 1 / n_c."""
    weights = labels / np.maximum(counts, 1)
    weights /= weights.sum(1, keepdims=True)
    return weights.sum(0) / len(labels)


def panns_balanced_draws(indptr, classes, counts, draws: int, seed: int) -> np.ndarray:
    """PANNs' BalancedTrainSampler: a shuffled queue of classes, a shuffled pointer per class."""
    rng = np.random.default_rng(seed)
    order = np.argsort(classes, kind="stable")
    clip_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[order]
    start = np.concatenate([[0], np.cumsum(counts)])
    per_class = [rng.permutation(clip_of[start[c]:start[c + 1]]) for c in range(len(counts))]
    pointer = np.zeros(len(counts), np.int64)
    picked = []
    while len(picked) < draws:
        for c in rng.permutation(len(counts)):
            picked.append(per_class[c][pointer[c]])
            pointer[c] += 1
            if pointer[c] == counts[c]:
                pointer[c] = 0
                rng.shuffle(per_class[c])
    return np.asarray(picked[:draws])


DESIGNS = {"index": "by index: BalancedTrainSampler order, one ranged read per draw",
           "streaming": "streaming: every clip read once per pass, emitted round(N w(x)) times"}


def run(out: Path, draws: int, batch: int, seed: int, shuffle_buffer: int, design: str,
        with_reference: bool = False) -> dict:
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import tensorflow as tf

    from glat_tf.data import pipeline

    tf_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(out / "manifest.json") as f:  # counts only; the pipeline reads it itself
        counts = np.asarray(json.load(f)["splits"]["train"]["class_counts"])
    started, cpu_started = time.perf_counter(), time.process_time()
    # Explicit class counts select the streaming sampler; the manifest's index the other.
    ds = pipeline.train_dataset(str(out / "train-*.tfrecord"), batch, NUM_CLASSES, seed=seed,
                                shuffle_buffer=shuffle_buffer,
                                class_counts=counts if design == "streaming" else None)
    iterator = iter(ds)
    first = next(iterator)[1].numpy()
    startup, startup_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    labels = [first]
    while sum(len(x) for x in labels) < draws:
        labels.append(next(iterator)[1].numpy())
    drawn = time.perf_counter() - started - startup
    drawn_cpu = time.process_time() - cpu_started - startup_cpu
    labels = np.concatenate(labels)[:draws]
    print(f"start-up {startup:.1f} s, {draws} draws in {drawn:.1f} s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours = credited_marginal(labels, counts)

    reference = None
    if with_reference:  # PANNs' own algorithm, simulated on the same labels
        csr = np.load(out / "labels.npz")
        picked = panns_balanced_draws(csr["indptr"], csr["classes"], counts, draws, seed)
        panns = np.zeros((draws, NUM_CLASSES), np.float32)
        for row, clip in enumerate(picked):
            panns[row, csr["classes"][csr["indptr"][clip]:csr["indptr"][clip + 1]]] = 1
        reference = credited_marginal(panns, counts)
    uniform = 1 / NUM_CLASSES
    deviation = np.abs(ours / uniform - 1)
    return {
        "design": DESIGNS[design],
        "clips": NUM_CLIPS, "classes": NUM_CLASSES, "draws": draws, "batch": batch,
        "shuffle_buffer": shuffle_buffer, "class_counts_max_min": [int(counts.max()), int(counts.min())],
        "labels_per_clip": float(counts.sum() / NUM_CLIPS),
        "startup_s": startup, "draws_per_s": (draws - len(first)) / drawn,
        "startup_cpu_s": startup_cpu, "draws_per_cpu_s": (draws - len(first)) / drawn_cpu,
        "peak_rss_mb": peak, "rss_after_tf_import_mb": tf_rss, "rss_before_tf_mb": baseline_rss,
        "max_rel_deviation": float(deviation.max()),
        "classes_within_20pct": int((deviation <= 0.2).sum()),
        "panns_max_rel_deviation": None if reference is None else float(
            np.abs(reference / uniform - 1).max()),
        "marginal": ours.tolist(),
        "panns_marginal": None if reference is None else reference.tolist(),
        "label_frequency": (labels.sum(0) / draws).tolist(),
        "class_counts": counts.tolist(),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(result["class_counts"])
    order = np.argsort(-counts)
    uniform = 1 / result["classes"]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(np.asarray(result["marginal"])[order] / uniform, ".", ms=3, label=result["design"])
    if result["panns_marginal"] is not None:
        ax.plot(np.asarray(result["panns_marginal"])[order] / uniform, ".", ms=3,
                label="PANNs BalancedTrainSampler (simulated)")
    ax.axhspan(0.8, 1.2, color="green", alpha=0.1, label="within 20 % of uniform")
    ax.set_xlabel("class, most frequent first (Speech ~1M clips ... ~60 clips)")
    ax.set_ylabel("share of draws / uniform")
    ax.set_title(f"class marginal over {result['draws']:,} draws, {result['clips']:,} clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("make", "run"))
    parser.add_argument("--out", default="/tmp/sampler2m", help="folder of the tiny shards")
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--shuffle-buffer", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--design", choices=sorted(DESIGNS), default="index")
    parser.add_argument("--reference", action="store_true",
                        help="also simulate PANNs' sampler in Python (slow at 2M clips)")
    parser.add_argument("--name", help="results name (default sampler_scale_<design>)")
    args = parser.parse_args(argv)
    from machine import Machine, command  # bench/ is sys.path[0] when this runs as a script
    out = Path(args.out)
    if args.step == "make":
        make(out, args.seed)
        return 0
    here = Machine()
    result = run(out, args.draws, args.batch, args.seed, args.shuffle_buffer, args.design,
                 args.reference)
    result["machine"] = here.record()
    result["command"] = command(argv)
    args.name = args.name or f"sampler_scale_{args.design}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    plot(result, RESULTS / f"{args.name}.png")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
