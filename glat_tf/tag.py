"""glat-tag MODEL AUDIO...: tags for files or whole folders, as CSV or JSON lines.

MODEL is a .keras file, a SavedModel folder or a LiteRT export folder. Each window of
each file is one record: file, window start/end (s), the top-k labels with their fused,
global and local scores, and the windows GL-AT chose. A file that cannot be read is
reported on stderr and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

from glat_tf import console
from glat_tf.tagger import AUDIO_SUFFIXES, Tagger


def audio_files(paths) -> list[pathlib.Path]:
    """The given files, and every audio file under the given folders (sorted)."""
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(path)
    return found


def records(path, tags, top_k: int):
    for w in range(len(tags.starts)):
        yield {"file": str(path), "start": round(float(tags.starts[w]), 3),
               "end": round(float(tags.ends[w]), 3), "top": tags.top(w, top_k),
               "windows": tags.chosen(w)}


def csv_row(record: dict) -> dict:
    row = {"file": record["file"], "start": record["start"], "end": record["end"]}
    for rank, item in enumerate(record["top"], 1):
        row[f"label_{rank}"] = item["label"]
        for score in ("fused", "global", "local"):
            row[f"{score}_{rank}"] = round(item[score], 5)
    row["windows"] = ";".join(f"{w['start']:.2f}-{w['end']:.2f}:{w['class']}"
                              for w in record["windows"])
    return row


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glat-tag", description=__doc__.splitlines()[0])
    p.add_argument("model", help=".keras file, SavedModel folder or LiteRT export folder")
    p.add_argument("audio", nargs="+", help="audio files (WAV/FLAC/OGG/MP3) or folders")
    p.add_argument("--out", help="output file (.csv or .jsonl); default CSV on stdout")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from --out's suffix")
    p.add_argument("--top-k", type=int, default=5, help="labels per window (default 5)")
    p.add_argument("--window-seconds", type=float, default=10.0)
    p.add_argument("--hop-seconds", type=float, default=5.0)
    p.add_argument("--variant", default="f32", help="LiteRT variant of an export folder")
    p.add_argument("--timeline", help="PNG of the first file's class scores over time")
    console.add_verbose(p)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    fmt = args.format or ("jsonl" if args.out and args.out.endswith((".jsonl", ".json"))
                          else "csv")
    try:
        tagger = Tagger.load(args.model, variant=args.variant, window_seconds=args.window_seconds,
                             hop_seconds=args.hop_seconds)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        print(f"glat-tag: error: {error}", file=sys.stderr)
        return 2
    files = audio_files(args.audio)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    writer, skipped, first = None, [], None
    try:
        for path in console.Progress(files, desc="tag", unit="file", file=sys.stderr):
            try:
                tags = tagger.tag(path)
            except Exception as error:  # noqa: BLE001  one bad file never stops a folder
                skipped.append(path)
                print(f"glat-tag: skipped {path}: {str(error).splitlines()[0][:200]}",
                      file=sys.stderr)
                continue
            first = first or (path, tags)
            for record in records(path, tags, args.top_k):
                if fmt == "jsonl":
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    continue
                row = csv_row(record)
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                writer.writerow(row)
    finally:
        if args.out:
            out.close()
    if args.timeline and first is not None:
        from glat_tf.timeline import draw
        draw(first[1], args.timeline, title=first[0].name)
    if skipped:
        print(f"glat-tag: {len(skipped)} of {len(files)} files skipped", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
