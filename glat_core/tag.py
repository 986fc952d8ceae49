"""glat-tag MODEL AUDIO...: tags for files or whole folders, as CSV or JSON lines.

MODEL is a .keras file, a SavedModel folder or a LiteRT export folder (the last needs no
TensorFlow); `glat-tag --panns Cnn10_mAP=0.380.pth AUDIO...` builds a GL-AT from a public
PANNs checkpoint (both streams the PANNs network, AudioSet's classes) and tags with it. Each window of each file is one tag record (glat_core.tags): file, window
start/end in seconds, the top-k labels with MID and fused, global and local scores, and
the clips GL-AT chose. A file that cannot be read is reported on stderr and skipped; the
exit code is then 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

from glat_core import console
from glat_core.cli_errors import add_debug_flag, one_line_errors
from glat_core.tags import csv_row
from glat_core.tagger import AUDIO_SUFFIXES, Tagger


def audio_files(paths) -> list[pathlib.Path]:
    """The given files, and every audio file under the given folders (sorted)."""
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(path)
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glat-tag", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="MODEL AUDIO",
                   help="a .keras file, SavedModel folder or LiteRT export folder (not with "
                        "--panns), then audio files (WAV/FLAC/OGG/MP3) or folders")
    p.add_argument("--panns", metavar="CHECKPOINT",
                   help="tag with a GL-AT built from this PANNs .pth (no MODEL argument)")
    p.add_argument("--panns-arch", help="the checkpoint's architecture (default: detected)")
    p.add_argument("--n-clips", type=int, default=5, help="with --panns: N (default 5)")
    p.add_argument("--tau", type=float, default=3.0, help="with --panns: tau in s (default 3)")
    p.add_argument("--out", help="output file (.csv or .jsonl); default CSV on stdout")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from --out's suffix")
    p.add_argument("--top-k", type=int, default=5, help="labels per window (default 5)")
    p.add_argument("--window-seconds", type=float,
                   help="window length (default: a LiteRT export's window, else 10); a "
                        "shorter file is one window")
    p.add_argument("--hop-seconds", type=float, default=5.0, help="window hop (default 5)")
    p.add_argument("--variant", default="f32", help="LiteRT variant of an export folder")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--exact", dest="mode", action="store_const", const="exact",
                      help="LiteRT: the exact mode, each window on its own at its own length")
    mode.add_argument("--streaming", dest="mode", action="store_const", const="streaming",
                      help="LiteRT: the streaming mode (the default when the export has its "
                           "models): the file streamed hop by hop as a device tags it")
    p.set_defaults(mode="auto")
    p.add_argument("--crop-budget", type=int,
                   help="LiteRT streaming: new local crops scored per hop at most (default: "
                        "the edge runtime's)")
    p.add_argument("--timeline", help="PNG of the first file's frame activations over time")
    console.add_verbose(p)
    add_debug_flag(p)
    return p


def check_args(args) -> None:
    """Every argument checked before a model is loaded or a file read; splits `inputs`
    into `model` and `audio`."""
    if args.panns:
        args.model, args.audio = None, args.inputs
        if not pathlib.Path(args.panns).is_file():
            raise FileNotFoundError(f"--panns checkpoint {args.panns} does not exist")
        if args.n_clips < 1 or not args.tau > 0:
            raise ValueError(f"--n-clips must be >= 1 and --tau > 0, got {args.n_clips} and "
                             f"{args.tau}")
    elif len(args.inputs) < 2:
        raise ValueError("give a MODEL and at least one audio file or folder (or --panns "
                         "CHECKPOINT and audio)")
    else:
        args.model, args.audio = args.inputs[0], args.inputs[1:]
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.crop_budget is not None and args.crop_budget < 0:
        raise ValueError(f"--crop-budget must be >= 0, got {args.crop_budget}")
    window = 1.0 if args.window_seconds is None else args.window_seconds
    if not window > 0 or not args.hop_seconds > 0:
        raise ValueError(f"--window-seconds and --hop-seconds must be > 0, got "
                         f"{args.window_seconds} and {args.hop_seconds}")
    for flag, value in (("--out", args.out), ("--timeline", args.timeline)):
        if value and not pathlib.Path(value).resolve().parent.is_dir():
            raise ValueError(f"{flag} {value}: folder {pathlib.Path(value).parent} does not exist")
    if args.model is not None and not pathlib.Path(args.model).exists():
        raise FileNotFoundError(f"model {args.model} does not exist")


class Writer:
    """Records out as CSV rows (header from the first) or JSON lines."""

    def __init__(self, out, fmt: str):
        self.out, self.fmt, self.csv = out, fmt, None

    def write(self, record: dict) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        row = csv_row(record)
        if self.csv is None:
            self.csv = csv.DictWriter(self.out, fieldnames=list(row), extrasaction="ignore")
            self.csv.writeheader()
        self.csv.writerow(row)


@one_line_errors("glat-tag")
def main(argv=None) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    fmt = args.format or ("jsonl" if args.out and args.out.endswith((".jsonl", ".json"))
                          else "csv")
    options = {"window_seconds": args.window_seconds, "hop_seconds": args.hop_seconds}
    if args.panns:
        from glat_core.backends import KerasBackend
        from glat_tf.convert.panns import glat_from_panns
        model = glat_from_panns(args.panns, args.panns_arch, args.n_clips, args.tau)
        tagger = Tagger(KerasBackend(args.panns, model=model), **options)
    else:
        tagger = Tagger.load(args.model, variant=args.variant, mode=args.mode,
                             crop_budget=args.crop_budget, **options)
    files = audio_files(args.audio)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    writer, skipped, first = Writer(out, fmt), [], None
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
            for record in tags.records(args.top_k, file=path):
                writer.write(record)
    finally:
        if args.out:
            out.close()
    if args.timeline and first is not None:
        from glat_core.timeline import draw
        draw(first[1], args.timeline, title=first[0].name)
    if skipped:
        print(f"glat-tag: {len(skipped)} of {len(files)} files skipped", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
