"""Edge runtime per-hop latency (p50/p95), real-time factor and memory per LiteRT variant, on one core.

    python bench/edge_latency.py                                   # CNN10, 527 classes, 10 s window, N=5, tau=3
    python bench/edge_latency.py --backbone cnn10_tiny --window 4 --variants f32,int8 --hops 20
Measured (CNN10 int8, 1 thread, one core of a shared 2-core AMD EPYC): CPU time per hop p95
exact 220 ms, streaming 64-70 ms at crop budget 2 (51 at budget 1, 37 at 0); wall time
grows with the machine's load (README, "Streaming mode").
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from edge_runtime.pipeline import CROP_BUDGET  # noqa: E402 (numpy-only)

RESULTS = pathlib.Path(__file__).parent / "results"
WARMUP_HOPS = 2  # the first invocations allocate and plan XNNPACK: not steady state
P95_TARGET_MS = 50  # int8 streaming, per 1 s hop, one core (issue 19)


def build(args, variants) -> dict[str, pathlib.Path]:
    """Random-init GlatModel exported per variant into <models>/<variant>/ (reused if present)."""
    root = pathlib.Path(args.models)
    todo = [v for v in variants if not _has_streaming(root / v / "metadata.json")]
    if todo or not (root / "stream.wav").is_file():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import soundfile
        import tensorflow as tf
        from tqdm import tqdm

        from export.calibration import fit_length
        from export.tflite import export_tflite
        from glat_tf.data.labels import LabelMap
        from glat_tf.data.synthetic import make_clip
        from glat_tf.model import GlatModel

        keras.utils.set_random_seed(0)
        model = GlatModel(backbone=args.backbone, num_classes=527, n_clips=args.n_clips,
                          tau=args.tau)
        window = int(round(args.window * model.sample_rate))
        model(tf.zeros([1, window]))
        rng = np.random.default_rng(0)
        # Latency does not depend on the weights, but int8 needs calibration input that
        # looks like audio: synthetic events over noise, as in the demo set.
        clips = np.stack([make_clip(rng)[0] for _ in tqdm(range(args.calibration_clips),
                                                          desc="calibration clips")])
        root.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / "stream.wav", np.concatenate(clips[:8]), model.sample_rate)
        for variant in tqdm(todo, desc="export"):
            export_tflite(model, root / variant, LabelMap.audioset(), variants=(variant,),
                          window_samples=window,
                          calibration=fit_length(clips, window) if variant == "int8" else None,
                          streaming=True)
    return {v: root / v for v in variants}


def _has_streaming(path: pathlib.Path) -> bool:
    """An export of this version with every streaming model (older ones: redo them)."""
    from edge_runtime.contract import EDGE_PART, GLOBAL_EDGE_PART, STREAMING_PARTS, ExportMetadata
    try:
        meta = ExportMetadata.read(path)
    except ValueError:
        return False
    parts = (*STREAMING_PARTS, EDGE_PART, GLOBAL_EDGE_PART)
    return meta.streaming is not None and all(
        p in files for files in meta.variants.values() for p in parts)


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: the latter survives exec and would report the TensorFlow parent's.
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb / 1024


def measure(pair_dir: pathlib.Path, stream_wav: pathlib.Path, threads: int, hops: int,
            hop: float, core: int | None, mode: str, crop_budget: int) -> dict:
    """Runs in a fresh process (no TensorFlow loaded), pinned to one core."""
    from edge_runtime import FileSource, StreamRunner, Pipeline, read_metadata
    from edge_runtime.contract import EDGE_PART, GLOBAL_EDGE_PART, STREAMING_PARTS
    if core is not None:
        os.sched_setaffinity(0, {core})
    meta = read_metadata(pair_dir)
    (variant, files), = meta.variants.items()
    streaming = mode == "streaming"
    tagger = Pipeline.from_export(pair_dir, variant, mode, threads, crop_budget)
    parts = (*STREAMING_PARTS, EDGE_PART, GLOBAL_EDGE_PART) if streaming else ("global", "local")
    used = [files[p] for p in parts if p in files]
    events = StreamRunner(tagger, hop).run(FileSource(stream_wav))
    per_hop, cpu = [], []
    for _ in range(hops + WARMUP_HOPS):
        # All the work of one hop: read, resample, ring buffer, global, crops, local, fuse, JSON.
        start, start_cpu = time.perf_counter(), time.process_time()
        event = next(events, None)
        if event is None:
            break
        tagger.json_line(event.result, partial=event.partial)
        per_hop.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    steady, cpu = np.array(per_hop[WARMUP_HOPS:]), np.array(cpu[WARMUP_HOPS:])
    if not len(steady):
        raise ValueError(f"{stream_wav} is too short for {WARMUP_HOPS + 1} hops of {hop} s")
    if streaming:
        mode = f"streaming, crop budget {crop_budget}"
    return {"variant": variant, "mode": mode, "threads": threads, "hops": len(steady),
            "hop_s": hop,
            "p50_ms": 1e3 * float(np.percentile(steady, 50)),
            "p95_ms": 1e3 * float(np.percentile(steady, 95)),
            "max_ms": 1e3 * float(steady.max()),
            # CPU time is what the hop costs when the core is not shared with other work.
            "cpu_p50_ms": 1e3 * float(np.percentile(cpu, 50)),
            "cpu_p95_ms": 1e3 * float(np.percentile(cpu, 95)),
            "load_avg_1min": os.getloadavg()[0],
            "real_time_factor": float(steady.sum() / (len(steady) * hop)),
            "peak_rss_mb": _peak_rss_mb(),
            "size_mb": sum((pair_dir / f).stat().st_size for f in used) / 2**20,
            "window_s": meta.window_samples / meta.sample_rate, "n_clips": meta.n_clips,
            "tau": meta.tau, "backbone": meta.backbone}


def table(rows) -> str:
    lines = ["| variant | mode | threads | size MB | p50 ms/hop | p95 ms/hop | CPU p50 ms "
             "| CPU p95 ms | RTF | peak RSS MB | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['mode']} | {r['threads']} | {r['size_mb']:.1f} | "
                     f"{r['p50_ms']:.0f} | "
                     f"{r['p95_ms']:.0f} | {r['cpu_p50_ms']:.0f} | {r['cpu_p95_ms']:.0f} | "
                     f"{r['real_time_factor']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['load_avg_1min']:.1f} |")
    return "\n".join(lines)


def plot(rows, path: pathlib.Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['variant']} {r['mode']}\n{r['threads']} thr" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(7.5, 1.4 * len(rows) + 4), 3.5))
    ax.bar(x - 0.27, [r["p50_ms"] for r in rows], 0.27, label="wall p50")
    ax.bar(x, [r["p95_ms"] for r in rows], 0.27, label="wall p95")
    ax.bar(x + 0.27, [r["cpu_p95_ms"] for r in rows], 0.27, label="CPU-time p95 (unshared core)")
    ax.axhline(P95_TARGET_MS, color="k", ls="--", lw=1,
               label=f"int8 streaming p95 target ({P95_TARGET_MS} ms)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms per hop")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="cnn10")
    p.add_argument("--window", type=float, default=10.0, help="global window, seconds")
    p.add_argument("--n-clips", type=int, default=5)
    p.add_argument("--tau", type=float, default=3.0)
    p.add_argument("--variants", default="f32,f16,dyn,int8")
    p.add_argument("--modes", default="exact,streaming",
                   help="exact (whole window + N crops per hop) and/or streaming (chunks)")
    p.add_argument("--crop-budget", type=int, default=CROP_BUDGET,
                   help="streaming: new local crops per hop at most (the runtime's default 2)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts")
    p.add_argument("--hops", type=int, default=30, help="timed hops per variant")
    p.add_argument("--hop", type=float, default=1.0, help="seconds")
    p.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: no pinning)")
    p.add_argument("--calibration-clips", type=int, default=100)
    p.add_argument("--models", help="where the exported pairs are kept (default: a temp folder)")
    p.add_argument("--out", default=str(RESULTS / "edge_latency"), help="results prefix")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the per-variant subprocess
    args = p.parse_args(argv)
    from machine import Machine
    here = Machine()
    if args.measure:
        pair, wav = args.measure.split(os.pathsep)
        row = measure(pathlib.Path(pair), pathlib.Path(wav), int(args.threads), args.hops,
                      args.hop, None if args.core < 0 else args.core, args.modes,
                      args.crop_budget)
        print(json.dumps(row))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    args.models = args.models or os.path.join(
        tempfile.gettempdir(), f"glat_edge_latency_{args.backbone}_{args.window:g}s")
    pairs = build(args, variants)
    rows = []
    runs = [(v, d, m, int(t)) for v, d in pairs.items() for m in args.modes.split(",")
            for t in args.threads.split(",")]
    for variant, pair_dir, mode, threads in runs:
        done = subprocess.run(
            [sys.executable, __file__, "--measure",
             f"{pair_dir}{os.pathsep}{pathlib.Path(args.models) / 'stream.wav'}",
             "--threads", str(threads), "--hops", str(args.hops), "--hop", str(args.hop),
             "--core", str(args.core), "--modes", mode, "--crop-budget", str(args.crop_budget)],
            capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"measuring {variant} {mode} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.splitlines()[-1]))
        print(f"{variant} {mode} x{threads}: p50 {rows[-1]['p50_ms']:.1f} ms, "
              f"p95 {rows[-1]['p95_ms']:.1f} ms, RTF {rows[-1]['real_time_factor']:.3f}",
              flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    r = rows[0]
    title = (f"{r['backbone']}: {r['window_s']:g} s window, N={r['n_clips']}, tau={r['tau']:g} s, "
             f"hop {r['hop_s']:g} s, core {args.core}")
    out.with_suffix(".json").write_text(json.dumps(
        {"setting": title, "rows": rows, "machine": here.record()}, indent=1))
    out.with_suffix(".md").write_text(f"{title}\n\n{table(rows)}\n")
    plot(rows, out.with_suffix(".png"), title)
    print(f"\n{title}\n{table(rows)}\nwritten: {out}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
