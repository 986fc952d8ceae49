"""What users of the command lines see: no TensorFlow start-up noise, log-friendly progress.

Imported first by glat_tf/__init__ (it imports no TensorFlow itself). When the running
program is one of the glat-* CLIs (by console script or `python -m`) and `--verbose` is not
on its command line, TensorFlow is imported with the process's stderr closed: its C++
start-up lines (oneDNN, cuda, cpu feature guard, absl's "before InitializeLog") are written
by libraries before any log level applies. Later C++ logs are held at errors-off
(TF_CPP_MIN_LOG_LEVEL=3) and Python's TensorFlow/absl loggers at ERROR. Python errors still
reach the user: only the import's own stderr writes are dropped.
"""

from __future__ import annotations

import logging
import os
import sys

PROGRAMS = ("glat-ingest", "glat-fit", "glat-eval", "glat-export", "glat-tag")
MODULES = ("glat_tf.data.ingest", "train.fit", "train.evaluate", "export.cli", "glat_core.tag")
VERBOSE_HELP = "show TensorFlow's start-up and info logs"


def running_cli() -> bool:
    """True when this process runs one of the glat-* command lines."""
    if os.path.basename(sys.argv[0]) in PROGRAMS:
        return True
    argv = getattr(sys, "orig_argv", [])
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in MODULES


def quiet_startup() -> None:
    if "tensorflow" in sys.modules or not running_cli() or "--verbose" in sys.argv[1:]:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401  the noisy import, while stderr is closed
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)


def add_verbose(parser) -> None:
    """The --verbose flag quiet_startup reads (declared so argparse accepts it)."""
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


try:
    from tqdm import tqdm as _tqdm
except ImportError:  # the edge extra may run without tqdm; progress is then plain
    _tqdm = None


class Progress(_tqdm or object):
    """tqdm that, when its stream is not a terminal, prints one plain line every few
    percent (or every 30 s without a total) instead of redrawing with carriage returns."""

    def __init__(self, *args, percent: float = 5.0, **kwargs):
        stream = kwargs.get("file") or sys.stderr
        self.plain = not getattr(stream, "isatty", lambda: False)()
        if self.plain:
            total = kwargs.get("total")
            if total is None and args and hasattr(args[0], "__len__"):
                total = len(args[0])
            kwargs["file"] = _Lines(stream)
            if total:
                kwargs.setdefault("miniters", max(1, int(total * percent / 100)))
                kwargs.setdefault("mininterval", 0)
            else:
                kwargs.setdefault("mininterval", 30)
            kwargs.setdefault("maxinterval", float("inf"))
            kwargs.setdefault("ncols", 80)
        super().__init__(*args, **kwargs)

    # A new postfix or description shows with the next line instead of printing one itself.
    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh and not self.plain, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh and not self.plain)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh and not self.plain)


class _Lines:
    """A stream that turns tqdm's carriage-return redraws into one line each."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for line in text.replace("\r", "\n").split("\n"):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()
