"""Streaming GL-AT tagger CLI: audio in, one JSON line per hop out (python -m edge_runtime.stream)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Iterable, Iterator

import numpy as np

from edge_runtime.cli_errors import one_line_errors
from edge_runtime.ring_buffer import RingBuffer
from edge_runtime.sources import PCM_FORMATS, Conditioner, open_source
from edge_runtime.streaming import CROP_BUDGET, PARTS, StreamingTagger
from edge_runtime.tagger import HopResult, Tagger, check_metadata


def read_metadata(model_path, metadata_path=None) -> dict:
    """metadata.json beside `model_path` (a .tflite file or their folder), or at `metadata_path`."""
    model_path = os.fspath(model_path)
    if metadata_path:
        path = os.fspath(metadata_path)
    elif os.path.isdir(model_path):
        path = os.path.join(model_path, "metadata.json")
    elif model_path.endswith(".json"):
        path = model_path
    else:
        path = os.path.join(os.path.dirname(model_path) or ".", "metadata.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"no metadata.json at {path}: the export writes it beside the models "
                         f"(or pass --metadata)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return check_metadata(meta, path)


@dataclasses.dataclass
class Event:
    """One hop: the window ending at stream `time` seconds, and its scores."""

    time: float
    partial: bool
    result: HopResult
    nan_samples: int = 0


class StreamTagger:
    """Runs a Tagger every `hop_seconds` of a stream, over a ring buffer of the global window.

    Blocks at the source's rate are mixed down, cleaned and resampled to the
    model's rate; a block that crosses a hop boundary is split there, so hop k's
    window is exactly the stream's samples [k*hop - window, k*hop) (zeros before
    0: `partial`). The buffer holds what the tagger asks for (`history_samples`:
    the window, or more for a StreamingTagger). At the end of the stream, audio since the last hop gets one
    more event. Memory is constant whatever the stream's length.

    Example:
        stream = StreamTagger(tagger, hop_seconds=1.0)
        for event in stream.run(FileSource("clip.wav")):
            print(tagger.json_line(event.result, event.time, event.partial))
    """

    def __init__(self, tagger: Tagger, hop_seconds: float = 1.0):
        if not hop_seconds > 0:
            raise ValueError(f"hop must be > 0 seconds, got {hop_seconds!r}")
        self.tagger = tagger
        self.sample_rate = tagger.sample_rate
        self.hop_samples = max(1, int(round(hop_seconds * self.sample_rate)))
        self.ring = RingBuffer(tagger.history_samples)
        self._window = np.zeros(tagger.history_samples, np.float32)
        self._since_hop = 0
        self._repaired: dict[int, int] = {}

    def _event(self, last: bool = False) -> Event:
        self.ring.window(out=self._window)
        result = self.tagger(self._window, stream_end=self.ring.total)
        # Repaired frames belong to the line whose hop they fall in (all that is left, at the end).
        due = [h for h in self._repaired if last or h * self.hop_samples < self.ring.total]
        nan_samples = sum(self._repaired.pop(h) for h in due)
        partial = self.ring.total < self.tagger.window_samples
        return Event(self.ring.total / self.sample_rate, partial, result, nan_samples)

    def _condition(self, conditioner: Conditioner, block) -> np.ndarray:
        samples = conditioner(block)
        if len(conditioner.last_repaired):
            hops, counts = np.unique(conditioner.last_repaired // self.hop_samples,
                                     return_counts=True)
            for hop, count in zip(hops.tolist(), counts.tolist()):
                self._repaired[hop] = self._repaired.get(hop, 0) + count
        return samples

    def _push(self, samples: np.ndarray) -> Iterator[Event]:
        while len(samples):
            take = min(len(samples), self.hop_samples - self._since_hop)
            self.ring.push(samples[:take])
            samples = samples[take:]
            self._since_hop += take
            if self._since_hop == self.hop_samples:
                self._since_hop = 0
                yield self._event()

    def run(self, source, sample_rate: int | None = None) -> Iterator[Event]:
        """Events for every hop of `source` (an iterable of blocks with a `sample_rate`)."""
        rate = sample_rate or getattr(source, "sample_rate", None)
        if rate is None:
            raise ValueError("the source has no sample_rate: pass sample_rate=")
        conditioner = Conditioner(rate, self.sample_rate)
        self.ring.reset()
        self.tagger.reset()
        self._since_hop = 0
        self._repaired = {}  # hop index -> frames of non-finite input replaced in it
        for block in source:
            yield from self._push(self._condition(conditioner, block))
        yield from self._push(conditioner.flush())
        if self._since_hop:
            # The stream ended between hops: its last audio still gets tagged.
            self._since_hop = 0
            yield self._event(last=True)

    def lines(self, source: Iterable, top_k: int = 5, sample_rate: int | None = None):
        for event in self.run(source, sample_rate):
            yield self.tagger.json_line(event.result, event.time, event.partial, top_k,
                                        event.nan_samples)


def make_tagger(global_model, local_model, meta: dict, threads: int = 1,
                streaming: bool = False, crop_budget: int = CROP_BUDGET) -> Tagger:
    """The exact pair's Tagger, or the StreamingTagger of the same variant's streaming models."""
    if not streaming:
        return Tagger(global_model, local_model, meta, threads=threads)
    name = os.path.basename(os.fspath(global_model))
    found = [files for files in meta.get("variants", {}).values() if files.get("global") == name]
    if not found:
        raise ValueError(f"metadata.json lists no variant whose global model is {name}")
    missing = [p for p in PARTS if p not in found[0]]
    if missing:
        raise ValueError(f"{name}'s variant has no streaming models {missing}: export with "
                         "glat-export tflite --streaming")
    folder = os.path.dirname(os.fspath(global_model))
    return StreamingTagger({p: os.path.join(folder, found[0][p]) for p in PARTS}, meta, threads,
                           crop_budget)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge_runtime.stream",
        description="Tag an audio stream with an exported GL-AT LiteRT pair; one JSON line per hop.")
    p.add_argument("--global", dest="global_model", required=True, help="global_<variant>.tflite")
    p.add_argument("--local", dest="local_model", required=True, help="local_<variant>.tflite")
    p.add_argument("--input", required=True, help="an audio file, '-' for raw PCM on stdin, or 'mic'")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between outputs (default 1.0)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads per model (default 1)")
    p.add_argument("--top-k", type=int, default=5, help="labels per line (default 5)")
    p.add_argument("--offline", action="store_true",
                   help="read a file as fast as possible instead of in real time")
    p.add_argument("--streaming", action="store_true",
                   help="run the feature-streaming models of --global's variant (exported with "
                        "glat-export tflite --streaming): a short chunk per hop instead of the "
                        "whole window and N crops")
    p.add_argument("--crop-budget", type=int, default=CROP_BUDGET,
                   help=f"with --streaming: new local crops run per hop at most (default "
                        f"{CROP_BUDGET}); "
                        "other picks are scored from local features until their turn")
    p.add_argument("--metadata", help="metadata.json (default: beside --global)")
    p.add_argument("--rate", type=int, help="sample rate of raw PCM on stdin (default: the model's)")
    p.add_argument("--format", default="s16le", choices=sorted(PCM_FORMATS),
                   help="sample format of raw PCM on stdin (default s16le)")
    p.add_argument("--channels", type=int, default=1, help="channels of raw PCM on stdin")
    p.add_argument("--device", help="sounddevice input device for --input mic")
    return p


@one_line_errors("python -m edge_runtime.stream")
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
        meta = read_metadata(args.global_model, args.metadata)
        tagger = make_tagger(args.global_model, args.local_model, meta, args.threads,
                             args.streaming, args.crop_budget)
        stream = StreamTagger(tagger, args.hop)
        if stream.hop_samples > tagger.window_samples:
            print(f"warning: hop {args.hop} s is longer than the window "
                  f"{tagger.window_samples / tagger.sample_rate} s: some audio is never tagged",
                  file=sys.stderr)
        source = open_source(args.input, paced=not args.offline,
                             pcm_rate=args.rate or tagger.sample_rate, pcm_format=args.format,
                             pcm_channels=args.channels, device=args.device)
        for line in stream.lines(source, args.top_k):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        dropped = getattr(source, "dropped_bytes", 0)
        if dropped:
            print(f"warning: the stream ended inside a frame; dropped {dropped} trailing bytes",
                  file=sys.stderr)
    except (ValueError, RuntimeError, OSError) as err:
        if isinstance(err, BrokenPipeError):
            # The reader went away (e.g. `| head`): stop quietly, and keep Python's exit
            # flush of stdout from failing on the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        raise  # one line from one_line_errors (--debug: the traceback)
    return 0


if __name__ == "__main__":
    sys.exit(main())
