"""Streaming GL-AT tagger CLI: audio in, one JSON line per hop out (python -m edge_runtime.stream)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Iterable, Iterator

import numpy as np

from glat_core import console
from glat_core.cli_errors import add_debug_flag, one_line_errors
from edge_runtime.contract import ExportMetadata
from edge_runtime.ring_buffer import RingBuffer
from glat_core.audio import PCM_FORMATS, Conditioner, open_source
from edge_runtime.pipeline import CROP_BUDGET, DEFAULT_MODE, HopResult, Pipeline


def read_metadata(folder) -> ExportMetadata:
    """The validated metadata.json of an export folder (or of the file itself)."""
    return ExportMetadata.read(folder)


@dataclasses.dataclass
class Event:
    """One hop: the window ending at stream `time` seconds, and its scores (the stream's
    samples the result covers are `result.start`, `result.end`)."""

    time: float
    partial: bool
    result: HopResult
    nan_samples: int = 0
    final: bool = False  # the answer for the whole input at its end (run(final=True))


class StreamRunner:
    """Runs a Pipeline every `hop_seconds` of a stream, over a ring buffer of the global window.

    Blocks at the source's rate are mixed down, cleaned and resampled to the
    model's rate; a block that crosses a hop boundary is split there, so hop k's
    window is exactly the stream's samples [k*hop - window, k*hop) (zeros before
    0: `partial`). The buffer holds what the tagger asks for (`history_samples`:
    the window, or more in streaming mode). At the end of the stream, audio since the last hop gets one
    more event. Memory is constant whatever the stream's length.

    Example:
        stream = StreamRunner(tagger, hop_seconds=1.0)
        for event in stream.run(FileSource("clip.wav")):
            print(tagger.json_line(event.result, partial=event.partial))
    """

    def __init__(self, tagger: Pipeline, hop_seconds: float = 1.0):
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

    def run(self, source, sample_rate: int | None = None, final: bool = False) -> Iterator[Event]:
        """Events for every hop of `source` (an iterable of blocks with a `sample_rate`).

        With `final` (a file, or any finite input), the stream's end gets a non-partial
        answer for the whole input: the last event, whose window ends there; when the input
        is shorter than the window, that event answers the exact pipeline on all of it (the
        input at its own length, as the Keras model tags it).
        """
        rate = sample_rate or getattr(source, "sample_rate", None)
        if rate is None:
            raise ValueError("the source has no sample_rate: pass sample_rate=")
        conditioner = Conditioner(rate, self.sample_rate)
        self.ring.reset()
        self.tagger.reset()
        self._since_hop = 0
        self._repaired = {}  # hop index -> frames of non-finite input replaced in it
        held = None  # the newest event, held back until we know whether it is the last

        def events():
            for block in source:
                yield from self._push(self._condition(conditioner, block))
            yield from self._push(conditioner.flush())
            if self._since_hop:
                # The stream ended between hops: its last audio still gets tagged.
                self._since_hop = 0
                yield self._event(last=True)
        for event in events():
            if not final:
                yield event  # live: never hold an answer back
                continue
            if held is not None:
                yield held
            held = event
        if final and 0 < self.ring.total < self.tagger.window_samples and held is not None:
            # The whole input is shorter than the window: its answer is the exact pipeline
            # on all of it (the exact mode's last event already is).
            if self.tagger.mode != "exact":
                heard = self.ring.window()[self.ring.capacity - self.ring.total:]
                held = dataclasses.replace(held, result=self.tagger.exact(heard))
            held = dataclasses.replace(held, partial=False)
        if held is not None:
            yield dataclasses.replace(held, final=final and not held.partial)

    def lines(self, source: Iterable, top_k: int = 5, sample_rate: int | None = None,
              final: bool = False, file: str | None = None):
        for event in self.run(source, sample_rate, final):
            yield self.tagger.json_line(event.result, top_k, file, event.partial, event.final,
                                        event.nan_samples)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge_runtime.stream",
        description="Tag an audio stream with an exported GL-AT LiteRT model; one JSON line per hop. "
                    f"Default mode: {DEFAULT_MODE} if the export has its models, else exact "
                    "(--exact or --streaming choose).")
    p.add_argument("--export", required=True,
                   help="the folder glat-export tflite wrote (metadata.json and the models)")
    p.add_argument("--variant", default="int8",
                   help="which exported variant to run: f32, f16, dyn or int8 (default int8)")
    p.add_argument("--input", required=True, help="an audio file, '-' for raw PCM on stdin, or 'mic'")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between outputs (default 1.0)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads per model (default 1)")
    p.add_argument("--top-k", type=int, default=5, help="labels per line (default 5)")
    p.add_argument("--offline", action="store_true",
                   help="read a file as fast as possible instead of in real time")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--exact", dest="mode", action="store_const", const="exact",
                      help="the exact mode: the global model on the whole window and the local "
                           "model on N crops every hop")
    mode.add_argument("--streaming", dest="mode", action="store_const", const="streaming",
                      help="the streaming mode (export --streaming): backbones on a short chunk "
                           "per hop, exact crop scores within a budget; the default when the "
                           "export has its models")
    p.set_defaults(mode="auto")
    p.add_argument("--crop-budget", type=int, default=CROP_BUDGET,
                   help=f"streaming: budget of new local crops per hop (default {CROP_BUDGET}; "
                        "a crop through the edge model costs 1, a window clamped to the "
                        "window's edge its whole crop's cost); other picks are scored from "
                        "local features until their turn")
    p.add_argument("--no-final", dest="final", action="store_false",
                   help="no final answer for the whole input at the end of a file or stdin")
    p.add_argument("--rate", type=int, help="sample rate of raw PCM on stdin (default: the model's)")
    p.add_argument("--format", default="s16le", choices=sorted(PCM_FORMATS),
                   help="sample format of raw PCM on stdin (default s16le)")
    p.add_argument("--channels", type=int, default=1, help="channels of raw PCM on stdin")
    p.add_argument("--device", help="sounddevice input device for --input mic")
    console.add_verbose(p)
    add_debug_flag(p)
    return p


@one_line_errors("python -m edge_runtime.stream")
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
        # Arguments before the export is read: each names its flag.
        for flag, value, low in (("--hop", args.hop, 0), ("--rate", args.rate, 0),
                                 ("--crop-budget", args.crop_budget, -1)):
            if value is not None and not value > low:
                raise ValueError(f"{flag} must be {'> 0' if low == 0 else '>= 0'}, got {value}")
        tagger = Pipeline.from_export(args.export, args.variant, args.mode, args.threads,
                                    args.crop_budget)
        stream = StreamRunner(tagger, args.hop)
        if stream.hop_samples > tagger.window_samples:
            print(f"warning: hop {args.hop} s is longer than the window "
                  f"{tagger.window_samples / tagger.sample_rate} s: some audio is never tagged",
                  file=sys.stderr)
        source = open_source(args.input, paced=not args.offline,
                             pcm_rate=args.rate or tagger.sample_rate, pcm_format=args.format,
                             pcm_channels=args.channels, device=args.device)
        final = args.final and args.input != "mic"
        for line in stream.lines(source, args.top_k, final=final, file=args.input):
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
