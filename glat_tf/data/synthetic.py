"""A small weakly labelled demo set in AudioSet's own format, made procedurally and deterministically.

    python -m glat_tf.data.synthetic --out demo_data/raw --seed 0
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from glat_core import console
from glat_core.cli_errors import add_debug_flag, one_line_errors
from glat_tf.data.labels import LabelMap, write_segments_csv

# Bump when the generated audio changes: cached demo folders are named after it.
VERSION = 2
SAMPLE_RATE = 32000
CLIP_SECONDS = 10.0
_TWO_PI = 2.0 * np.pi


def _envelope(n: int, attack: float, release: float) -> np.ndarray:
    """Linear attack/release ramps (fractions of n) so events do not start with a click."""
    env = np.ones(n, np.float32)
    a, r = max(1, int(n * attack)), max(1, int(n * release))
    env[:a] = np.linspace(0, 1, a, dtype=np.float32)
    env[-r:] = np.minimum(env[-r:], np.linspace(1, 0, r, dtype=np.float32))
    return env


def _tone(freq_hz: np.ndarray) -> np.ndarray:
    """A sine whose instantaneous frequency follows freq_hz (one value per sample)."""
    return np.sin(np.cumsum(_TWO_PI * freq_hz / SAMPLE_RATE)).astype(np.float32)


def _click(rng, n):
    out = np.zeros(n, np.float32)
    for start in rng.integers(0, max(1, n - 200), size=rng.integers(1, 4)):
        width = int(rng.uniform(0.002, 0.006) * SAMPLE_RATE)
        burst = rng.standard_normal(width).astype(np.float32)
        burst *= np.exp(-np.arange(width) / (width / 4)).astype(np.float32)
        out[start:start + width] += np.diff(burst, prepend=0)[: n - start]  # high-passed snap
    return out


def _blip(rng, n):
    return _tone(np.full(n, rng.uniform(1000, 3000))) * _envelope(n, 0.1, 0.3)


def _chirp(rng, n):
    f0 = rng.uniform(500, 1500)
    return _tone(np.geomspace(f0, f0 * rng.uniform(2, 4), n)) * _envelope(n, 0.05, 0.2)


def _whistle(rng, n):
    t = np.arange(n) / SAMPLE_RATE
    vibrato = 1 + rng.uniform(0.02, 0.04) * np.sin(_TWO_PI * rng.uniform(4, 7) * t)
    return _tone(rng.uniform(1500, 3500) * vibrato) * _envelope(n, 0.05, 0.1)


def _knock(rng, n):
    out = np.zeros(n, np.float32)
    hits = rng.integers(3, 9)
    freq, decay = rng.uniform(150, 400), rng.uniform(0.015, 0.04)
    width = min(n, int(6 * decay * SAMPLE_RATE))
    t = np.arange(width) / SAMPLE_RATE
    hit = (np.sin(_TWO_PI * freq * t) * np.exp(-t / decay)).astype(np.float32)
    for start in np.linspace(0, n - width, hits).astype(int):
        out[start:start + width] += hit * rng.uniform(0.6, 1.0)
    return out


def _warble(rng, n):
    low = rng.uniform(600, 900)
    period = int(rng.uniform(0.1, 0.25) * SAMPLE_RATE)
    high_half = (np.arange(n) // period) % 2 == 1
    return _tone(np.where(high_half, low * rng.uniform(1.25, 1.5), low)) * _envelope(n, 0.02, 0.05)


def _harmonics(phase: np.ndarray, amplitudes) -> np.ndarray:
    """sum_k a_k sin(k * phase) by the Chebyshev recurrence: one sin and cos, not one per k."""
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros_like(phase), np.sin(phase)
    out = amplitudes[0] * cur
    for a in amplitudes[1:]:
        prev, cur = cur, two_cos * cur - prev
        out += a * cur
    return out


def _buzz(rng, n):
    phase = np.arange(n, dtype=np.float32) * np.float32(_TWO_PI * rng.uniform(90, 250) / SAMPLE_RATE)
    amplitudes = 1.0 / np.arange(1, rng.integers(10, 21), dtype=np.float32)  # sawtooth-like
    return _harmonics(phase, amplitudes) * _envelope(n, 0.03, 0.05)


def _hum(rng, n):
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.95, 1.05)
    phase = np.arange(n, dtype=np.float32) * np.float32(_TWO_PI * f0 / SAMPLE_RATE)
    return _harmonics(phase, 0.6 ** np.arange(5, dtype=np.float32)) * _envelope(n, 0.05, 0.05)


def _box(x: np.ndarray, width: int) -> np.ndarray:
    """Running mean of `width` samples (a cheap low-pass), same length and dtype as x."""
    csum = np.concatenate([np.zeros(width, x.dtype), np.cumsum(x)])
    return (csum[width:] - csum[:-width]) / x.dtype.type(width)


def _noise_band(rng, n):
    # Low-passed noise shifted up by a carrier: a band around `centre`, no FFT needed.
    centre = rng.uniform(2000, 6000)
    bandwidth = centre * (2 ** (rng.uniform(0.3, 0.8) / 2) - 2 ** (-rng.uniform(0.3, 0.8) / 2))
    width = max(2, int(SAMPLE_RATE / bandwidth))
    low = _box(_box(rng.standard_normal(n, dtype=np.float32), width), width)
    carrier = np.cos(np.arange(n, dtype=np.float32) * np.float32(_TWO_PI * centre / SAMPLE_RATE))
    return low * carrier * _envelope(n, 0.1, 0.1)


def _drone(rng, n):
    t = np.arange(n, dtype=np.float32) / np.float32(SAMPLE_RATE)
    f = rng.uniform(300, 700)
    # Two partials 0.3 % apart beat slowly; the octave partial is slightly sharp.
    partials = sum(np.sin(t * np.float32(_TWO_PI * f * d)) for d in (1.0, 1.003, 2.01))
    am = 1 + 0.5 * np.sin(t * np.float32(_TWO_PI * rng.uniform(0.3, 1.0)))
    return partials * am * _envelope(n, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class EventClass:
    mid: str
    name: str
    group: str  # "short" (< 0.3 s), "medium" (0.5-2 s) or "long" (> 3 s)
    make: Callable[[np.random.Generator, int], np.ndarray]
    weight: float  # relative frequency: the set is imbalanced on purpose


DURATIONS = {"short": (0.05, 0.28), "medium": (0.5, 2.0), "long": (3.2, 8.0)}

CLASSES = (
    EventClass("/m/glat_click", "Click", "short", _click, 1.0),
    EventClass("/m/glat_blip", "Blip", "short", _blip, 0.8),
    EventClass("/m/glat_chirp", "Chirp", "short", _chirp, 0.45),
    EventClass("/m/glat_whistle", "Whistle", "medium", _whistle, 0.7),
    EventClass("/m/glat_knock", "Knock", "medium", _knock, 0.9),
    EventClass("/m/glat_warble", "Warble", "medium", _warble, 0.35),
    EventClass("/m/glat_buzz", "Buzz", "medium", _buzz, 0.6),
    EventClass("/m/glat_hum", "Hum", "long", _hum, 1.0),
    EventClass("/m/glat_noise_band", "Noise band", "long", _noise_band, 0.5),
    EventClass("/m/glat_drone", "Drone", "long", _drone, 0.3),
)
LABEL_MAP = LabelMap(tuple(c.mid for c in CLASSES), tuple(c.name for c in CLASSES))

_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _background(rng, n) -> np.ndarray:
    """White noise blended with brown noise (a random low-frequency tilt), at a random level.

    Brown noise as a random walk minus its 64 ms running mean (removes the drift); the running
    mean's comb nulls fall every 16 Hz, below what a 64-band mel spectrogram resolves. Cumulative
    sums instead of an FFT or IIR filter: cheap, and NumPy only.
    """
    white = rng.standard_normal(n, dtype=np.float32)
    walk = np.cumsum(rng.standard_normal(n, dtype=np.float32))  # float32 errors: < 0.1 % here
    brown = walk - _box(walk, 2048)
    brown *= np.float32(1.0 / (np.sqrt(np.mean(brown ** 2)) + 1e-12))
    tilt = np.float32(rng.uniform(0.0, 0.9))
    noise = (1 - tilt) * white + tilt * brown
    return noise * np.float32(rng.uniform(0.005, 0.03) / (np.sqrt(np.mean(noise ** 2)) + 1e-12))


def make_clip(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """One 10 s clip (float32) with 1-3 events of distinct classes at -6..9 dB SNR."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    audio = _background(rng, n)
    noise_rms = np.sqrt(np.mean(audio ** 2))
    prior = np.array([c.weight for c in CLASSES])
    chosen = rng.choice(len(CLASSES), size=rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]),
                        replace=False, p=prior / prior.sum())
    events = []
    for k in chosen:
        cls = CLASSES[k]
        duration = rng.uniform(*DURATIONS[cls.group])
        length = int(duration * SAMPLE_RATE)
        start = int(rng.integers(0, n - length + 1))
        event = cls.make(rng, length)
        gain = noise_rms * 10 ** (rng.uniform(-6, 9) / 20) / (np.sqrt(np.mean(event ** 2)) + 1e-12)
        audio[start:start + length] += gain * event
        events.append((cls.mid, start / SAMPLE_RATE, (start + length) / SAMPLE_RATE))
    peak = np.max(np.abs(audio))
    if peak > 0.95:  # keep int16 from clipping
        audio *= 0.95 / peak
    return audio, sorted(events, key=lambda e: (e[1], e[0]))


def _ids(rng, count: int, taken: set) -> list[str]:
    """YouTube-like 11-character ids (incl. leading '-', as real ones), unique across splits."""
    out = []
    while len(out) < count:
        ytid = "".join(rng.choice(_ID_ALPHABET, size=11))
        if ytid not in taken:
            taken.add(ytid)
            out.append(ytid)
    return out


def make_demo_set(out_dir: str | os.PathLike, seed: int = 0, n_train: int = 400,
                  n_eval: int = 120) -> dict:
    """Write the demo set under out_dir; same seed and sizes give the same bytes.

    Returns paths: train_segments, eval_segments, labels_csv, audio_dir, strong_labels.
    """
    if n_train < 1 or n_eval < 1:
        raise ValueError(f"need n_train >= 1 and n_eval >= 1, got n_train={n_train}, n_eval={n_eval}")
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train_segments": out / "balanced_train_segments.csv",
             "eval_segments": out / "eval_segments.csv",
             "labels_csv": out / "class_labels_indices.csv",
             "audio_dir": audio_dir, "strong_labels": out / "strong_labels.csv"}
    LABEL_MAP.to_csv(paths["labels_csv"])
    taken: set = set()
    strong = []
    for code, count, key in ((1, n_train, "train_segments"), (2, n_eval, "eval_segments")):
        # One stream per clip: clip i is the same whatever n_train/n_eval are.
        ytids = _ids(np.random.default_rng([seed, code]), count, taken)
        rows = []
        for i, ytid in enumerate(ytids):
            rng = np.random.default_rng([seed, code, i])
            audio, events = make_clip(rng)
            sf.write(audio_dir / f"Y{ytid}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
            start = float(rng.integers(0, 30)) * 10.0
            mids = sorted({mid for mid, _, _ in events})
            rows.append((ytid, start, start + CLIP_SECONDS, mids))
            strong += [(ytid, mid, onset, offset) for mid, onset, offset in events]
        write_segments_csv(paths[key], rows)
    with open(paths["strong_labels"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["segment_id", "mid", "onset", "offset"])
        writer.writerows([(s, m, f"{a:.4f}", f"{b:.4f}") for s, m, a, b in strong])
    return {k: str(v) for k, v in paths.items()}


PROG = "python -m glat_tf.data.synthetic"


@one_line_errors(PROG)
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the set into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=400, help="training clips (>= 1)")
    parser.add_argument("--n-eval", type=int, default=120, help="evaluation clips (>= 1)")
    console.add_verbose(parser)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    for flag, value in (("--n-train", args.n_train), ("--n-eval", args.n_eval)):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a file, not a folder")
    paths = make_demo_set(args.out, seed=args.seed, n_train=args.n_train, n_eval=args.n_eval)
    for key, path in paths.items():
        print(f"{key:15s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
