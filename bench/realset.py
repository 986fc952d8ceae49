"""A development set of real recordings: sounds that Debian packages ship, mixed into 10 s clips.

    python bench/realset.py --out realset            # apt-installs the packages if missing
    python bench/realset.py --out realset --n-train 600 --n-val 100 --n-eval 200

Sources (all recordings, none synthesised by this script): the Fluid R3 GM SoundFont's
sampled instruments rendered note by note with fluidsynth, LMMS's drum and instrument
samples, Tux Paint's animal recordings and spoken stamp descriptions, KTuberling's spoken
words; household and crowd recordings (vacuum cleaner, washing machine, applause ...) are the
unlabelled background. Every class's recordings are split by file (SoundFont: by program) so
that eval clips never contain a recording that train or val clips use; val clips are mixed
from the train recordings (the early-stopping split carved from train). Writes AudioSet's
layout (segments CSVs, class_labels_indices.csv, Y<id>.wav at 16 kHz, strong_labels.csv with
onsets/offsets) and ingests it into <out>/shards/{train,val,eval}-*.tfrecord.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from glat_tf.data import ingest
from glat_tf.data.labels import LabelMap, write_segments_csv

SAMPLE_RATE = 16000
CLIP_SECONDS = 10.0
PACKAGES = ("fluid-soundfont-gm", "fluidsynth", "lmms-common", "tuxpaint-data",
            "ktuberling-data")
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
LMMS = "/usr/share/lmms/samples"
STAMPS = "/usr/share/tuxpaint/stamps"
# Event length ranges in seconds by group: short < 0.5 s, long > 2 s (train/durations.py).
DURATIONS = {"short": (0.08, 0.45), "medium": (0.6, 1.8), "long": (2.5, 6.0)}
EVAL_LANGUAGES = ("de", "ru", "es", "it", "ja", "nl")  # spoken words in these: eval only

# (mid, name, group, file globs, SoundFont GM programs, MIDI note range)
CLASSES = (
    ("/m/0bm02", "Bass drum", "short", [f"{LMMS}/drums/bassdrum*", f"{LMMS}/drums/kick*"], (), ()),
    ("/m/06rvn", "Snare drum", "short", [f"{LMMS}/drums/*snare*"], (), ()),
    ("/m/03t3fj", "Hi-hat", "short", [f"{LMMS}/drums/hihat*"], (), ()),
    ("/m/0l15bq", "Clapping", "short", [f"{LMMS}/drums/clap*", f"{LMMS}/misc/snaph*"], (), ()),
    ("/m/026t6", "Tom-tom drum", "short", [f"{LMMS}/drums/tom*"], (), ()),
    ("/m/09x0r", "Speech", "medium", ["/usr/share/ktuberling/sounds/*/*",
                                      f"{STAMPS}/**/*_desc_*.ogg"], (), ()),
    ("/m/015p6", "Bird", "medium", [f"{STAMPS}/animals/birds/*.ogg"], (), ()),
    ("/m/0jbk", "Animal", "medium",
     [f"{STAMPS}/animals/mammals/**/*.ogg"], (), ()),
    ("/m/0bm0k", "Cymbal", "medium", [f"{LMMS}/drums/crash*", f"{LMMS}/drums/ride*",
                                      f"{STAMPS}/hobbies/music/percussion/cymbal*.ogg"], (), ()),
    ("/m/05r5c", "Piano", "medium", [f"{LMMS}/instruments/*piano*"], (0, 1, 2, 3, 4), (45, 84)),
    ("/m/0342h", "Guitar", "medium", [f"{LMMS}/instruments/steel_guitar*",
                                      f"{LMMS}/latin/latin_guitar*"], (24, 25, 26, 27), (40, 76)),
    ("/m/013y1f", "Organ", "long", [f"{LMMS}/instruments/*organ*"], (16, 17, 19, 20), (40, 76)),
    ("/m/0l14_3", "Bowed string instrument", "long",
     [f"{LMMS}/instruments/violin*", f"{LMMS}/instruments/cello*"], (40, 41, 42, 48, 49), (48, 79)),
    ("/m/01kcd", "Brass instrument", "long", [f"{LMMS}/instruments/trumpet*",
                                              f"{LMMS}/latin/latin_brass*"], (56, 57, 58, 60, 61),
     (50, 74)),
    ("/m/0l14j_", "Flute", "long", [f"{LMMS}/instruments/flute*"], (72, 73, 74, 75), (64, 91)),
    ("/m/03vt0", "Insect", "long", [f"{STAMPS}/animals/insects/*.ogg"], (), ()),
)
BACKGROUND = [f"{STAMPS}/household/vacuum_cleaner.ogg", f"{STAMPS}/household/Washing-machine.ogg",
              f"{STAMPS}/household/kettle.ogg", f"{STAMPS}/household/toilet.ogg",
              f"{LMMS}/misc/applause01.ogg", f"{LMMS}/misc/raving_crowd01.ogg",
              f"{LMMS}/effects/wind_chimes01.ogg", f"{STAMPS}/naturalforces/lightningbolt.ogg",
              f"{STAMPS}/seasonal/newyears/fireworks.ogg"]
# Tux Paint's spoken names and descriptions of a stamp (dog_desc_fr.ogg, 7_fr.ogg): speech.
SPOKEN = re.compile(r"(_desc|_[a-z]{2}|_[a-z]{2}_[A-Za-z]{2,4})\.ogg$")
LABEL_MAP = LabelMap(tuple(c[0] for c in CLASSES), tuple(c[1] for c in CLASSES))


def ensure_packages() -> None:
    """apt-get install the source packages unless their files are already there."""
    if os.path.exists(SOUNDFONT) and os.path.isdir(LMMS) and os.path.isdir(STAMPS) \
            and shutil.which("fluidsynth"):
        return
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], check=True)


def load(path: str) -> np.ndarray:
    """Mono float32 at SAMPLE_RATE, leading/trailing silence (< -50 dB of peak) cut; empty
    when libsndfile cannot read the file (a few LMMS samples have malformed headers)."""
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        print(f"skipped {path}: {exc}", file=sys.stderr)
        return np.zeros(0, np.float32)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 10 ** (-50 / 20) * (np.abs(audio).max() + 1e-9))
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def midi_file(program: int, notes) -> bytes:
    """A one-track MIDI file: `program`, then (start s, length s, note) at 960 ticks per s."""
    events = [(0, bytes([0xC0, program]))]
    for start, length, note in notes:
        events += [(int(start * 960), bytes([0x90, note, 100])),
                   (int((start + length) * 960), bytes([0x80, note, 0]))]
    track, now = b"", 0
    for tick, data in sorted(events, key=lambda e: e[0]):
        track += _vlq(tick - now) + data
        now = tick
    track += b"\x00\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


def render_program(program: int, notes_range, group: str, rng, count: int = 8) -> list:
    """`count` notes of one GM program rendered with fluidsynth: a list of recordings."""
    lo, hi = DURATIONS[group]
    notes, start = [], 0.5
    for note in rng.integers(notes_range[0], notes_range[1] + 1, size=count):
        length = float(rng.uniform(lo, hi)) - 0.3  # ~0.3 s of release tail follows
        notes.append((start, max(0.2, length), int(note)))
        start += length + 2.0
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "n.mid"), os.path.join(tmp, "n.wav")
        Path(mid).write_bytes(midi_file(program, notes))
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-F", wav,
                        SOUNDFONT, mid], check=True, stdout=subprocess.DEVNULL)
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    out = []
    for start, length, _ in notes:
        a, b = int(start * SAMPLE_RATE), int((start + length + 0.3) * SAMPLE_RATE)
        out.append(audio[a:b])
    return out


def class_sources(index: int, rng) -> dict:
    """{"train": [recordings], "eval": [recordings]} of one class, disjoint by file/program."""
    mid, name, group, patterns, programs, notes = CLASSES[index]
    files = sorted({p for pattern in patterns for p in glob.glob(pattern, recursive=True)
                    if p.endswith((".ogg", ".wav", ".flac"))
                    and (name == "Speech" or not SPOKEN.search(p))})
    if name == "Speech":  # whole languages held out; a sample of the rest keeps it quick
        held = [f for f in files if any(f"/{x}/" in f or f"_desc_{x}." in f for x in EVAL_LANGUAGES)]
        rest = [f for f in files if f not in set(held)]
        files = list(rng.choice(rest, 90, replace=False)) + list(rng.choice(held, 30, replace=False))
        split = {"train": files[:90], "eval": files[90:]}
    else:
        # Every 4th file (at least one) is held out for eval.
        split = {"train": [f for i, f in enumerate(files) if i % 4 != 1],
                 "eval": [f for i, f in enumerate(files) if i % 4 == 1]}
    if len(files) < 2 and not programs:
        raise RuntimeError(f"{name}: found {len(files)} recordings for {patterns}")
    out = {k: [load(f) for f in v] for k, v in split.items()}
    for i, program in enumerate(programs):  # the last program of each class is eval's
        out["eval" if i == len(programs) - 1 else "train"] += render_program(
            program, notes, group, rng)
    return {k: [a for a in v if a.size > SAMPLE_RATE // 50] for k, v in out.items()}


def fit_length(audio: np.ndarray, group: str, rng) -> np.ndarray:
    """A piece of the group's length range: cut from longer audio, looped from shorter
    (long classes only: a short event keeps its own length)."""
    lo, hi = DURATIONS[group]
    n = int(rng.uniform(lo, hi) * SAMPLE_RATE)
    if audio.size < n:
        if group == "short" or audio.size >= lo * SAMPLE_RATE:
            return audio[:int(hi * SAMPLE_RATE)]
        audio = np.tile(audio, n // audio.size + 1)
    start = int(rng.integers(0, audio.size - n + 1))
    piece = audio[start:start + n].copy()
    fade = min(160, n // 4)
    piece[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    piece[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return piece


def background(pool: list, rng, n: int) -> np.ndarray:
    """One or two real background recordings, looped, plus a faint white floor."""
    out = 0.002 * rng.standard_normal(n).astype(np.float32)
    for k in rng.choice(len(pool), size=min(len(pool), rng.integers(1, 3)), replace=False):
        audio = pool[k]
        start = int(rng.integers(0, audio.size))
        looped = np.tile(np.roll(audio, -start), n // audio.size + 1)[:n]
        out += looped * np.float32(rng.uniform(0.01, 0.04) / (np.sqrt(np.mean(looped ** 2)) + 1e-9))
    return out


def make_clip(sources: list, noise: list, rng):
    """A 10 s clip with 1-3 events of distinct classes at 0..15 dB over the background."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    audio = background(noise, rng, n)
    noise_rms = np.sqrt(np.mean(audio ** 2))
    events = []
    for k in rng.choice(len(CLASSES), size=rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]),
                        replace=False):
        group = CLASSES[k][2]
        recordings = sources[k]
        event = fit_length(recordings[int(rng.integers(len(recordings)))], group, rng)
        # A short hit is judged by its peak, not its (mostly silent) mean power.
        level = np.abs(event).max() / 4 if group == "short" else np.sqrt(np.mean(event ** 2))
        gain = noise_rms * 10 ** (rng.uniform(0, 15) / 20) / (level + 1e-9)
        start = int(rng.integers(0, n - event.size + 1))
        audio[start:start + event.size] += gain * event
        events.append((CLASSES[k][0], start / SAMPLE_RATE, (start + event.size) / SAMPLE_RATE))
    peak = np.abs(audio).max()
    if peak > 0.95:
        audio *= 0.95 / peak
    return audio, sorted(events, key=lambda e: e[1])


def build(out: str, seed: int, sizes: dict, workers: int) -> dict:
    ensure_packages()
    rng = np.random.default_rng(seed)
    raw = Path(out) / "raw"
    (raw / "audio").mkdir(parents=True, exist_ok=True)
    per_class = [class_sources(i, rng) for i in range(len(CLASSES))]
    bg = [a for a in (load(f) for f in BACKGROUND if os.path.exists(f)) if a.size]
    noise = {"train": bg[::2], "eval": bg[1::2]}  # background recordings disjoint too
    LABEL_MAP.to_csv(raw / "class_labels_indices.csv")
    strong, counts = [], {}
    for split, count in sizes.items():
        pool = "eval" if split == "eval" else "train"
        counts[split] = {CLASSES[i][1]: len(s[pool]) for i, s in enumerate(per_class)}
        rows = []
        for i in range(count):
            clip_rng = np.random.default_rng([seed, {"train": 1, "val": 2, "eval": 3}[split], i])
            audio, events = make_clip([s[pool] for s in per_class], noise[pool], clip_rng)
            ytid = f"{split[:2]}{i:05d}real"[:11].ljust(11, "x")
            sf.write(raw / "audio" / f"Y{ytid}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
            rows.append((ytid, 0.0, CLIP_SECONDS, sorted({m for m, _, _ in events})))
            strong += [(ytid, m, a, b) for m, a, b in events]
        write_segments_csv(raw / f"{split}_segments.csv", rows)
        print(f"{split}: {count} clips", flush=True)
    with open(raw / "strong_labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["segment_id", "mid", "onset", "offset"])
        writer.writerows([(s, m, f"{a:.4f}", f"{b:.4f}") for s, m, a, b in strong])
    settings = ingest.Settings(SAMPLE_RATE, CLIP_SECONDS, 100)
    shards = Path(out) / "shards"
    for split in sizes:
        summary = ingest.ingest(out=str(shards), split=split,
                                segments_csv=str(raw / f"{split}_segments.csv"),
                                labels_csv=str(raw / "class_labels_indices.csv"),
                                audio_dir=str(raw / "audio"), workers=workers,
                                settings=settings, progress=False)
        if summary["num_rejects"]:
            raise RuntimeError(f"ingest rejected clips: {summary['rejects']}")
    return {"recordings": counts, "strong_labels": str(raw / "strong_labels.csv"),
            **{split: str(shards / f"{split}-*-of-*.tfrecord") for split in sizes}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="realset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--n-eval", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if min(args.n_train, args.n_val, args.n_eval) < 1:
        parser.error("--n-train, --n-val and --n-eval must be >= 1")
    paths = build(args.out, args.seed, {"train": args.n_train, "val": args.n_val,
                                        "eval": args.n_eval}, args.workers)
    for key, value in paths.items():
        print(f"{key:14s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
