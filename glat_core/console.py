"""What users of the command lines see: no library noise, log-friendly progress.

Imported first by glat_tf/__init__ (it imports no TensorFlow itself). When the running
program is one of our CLIs (console script, `python -m`, or `python train/fit.py`) and
`--verbose` is not on its command line, the process is *quiet*: TensorFlow is imported with
fd 2 pointed at /dev/null (its C++ start-up lines, oneDNN, cuda, cpu feature guard, absl's
"before InitializeLog", are written by libraries before any log level applies), later C++
logs are held at TF_CPP_MIN_LOG_LEVEL=3, Python's TensorFlow/absl/Keras loggers at ERROR, and
`quiet_fd2()` drops what the TFLite converter and LiteRT write straight to fd 2 around those
calls. GLAT_QUIET=1 in the environment carries the choice to worker processes (ingest's pool).
Python errors still reach the user: only the libraries' own writes are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings

PROGRAMS = ("glat-ingest", "glat-fit", "glat-eval", "glat-export", "glat-tag")
MODULES = ("glat_tf.data.ingest", "train.fit", "train.evaluate", "export.cli", "export.report",
           "glat_core.tag", "glat_tf.convert.panns", "glat_tf.data.synthetic",
           "edge_runtime.stream")
SCRIPTS = ("train/fit.py",)
VERBOSE_HELP = "show the libraries' start-up and info logs (TensorFlow, LiteRT, converter)"
ENV = "GLAT_QUIET"


def running_cli() -> bool:
    """True when this process runs one of our command lines."""
    if os.path.basename(sys.argv[0]) in PROGRAMS:
        return True
    if sys.argv[0].replace(os.sep, "/").endswith(SCRIPTS):
        return True
    argv = getattr(sys, "orig_argv", [])
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in MODULES


def is_quiet() -> bool:
    """Quiet: a CLI without --verbose, or a worker process of one (GLAT_QUIET=1)."""
    if os.environ.get(ENV) is not None:
        return os.environ[ENV] == "1"
    return running_cli() and "--verbose" not in sys.argv[1:]


@contextlib.contextmanager
def quiet_fd2(quiet: bool | None = None):
    """Points fd 2 at /dev/null for the block when quiet (C++ writes no logger can stop:
    the converter's "fully_quantize: 0, ..." lines, LiteRT's XNNPACK INFO line)."""
    if not (is_quiet() if quiet is None else quiet):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_startup(import_tensorflow: bool = True) -> None:
    """Makes a quiet process quiet (see the module docstring); nothing otherwise."""
    if not is_quiet():
        return
    os.environ[ENV] = "1"  # inherited by worker processes
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("keras", "tensorflow", "absl", "ai_edge_litert", "tf_keras"):
        warnings.filterwarnings("ignore", module=module)
    if not import_tensorflow or "tensorflow" in sys.modules:
        return
    with quiet_fd2(True):
        import tensorflow  # noqa: F401  the noisy import, while fd 2 is closed
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)


@contextlib.contextmanager
def step(what: str, file=None):
    """One stderr line when a step of a long job ends, with its time: `what (12.3 s)`.
    For steps that give no count to make a bar of (a conversion, a model load)."""
    start = time.perf_counter()
    yield
    step_done(what, start, file)


def step_done(what: str, started: float, file=None) -> None:
    """`what (12.3 s)` on stderr: the step that began at time.perf_counter() `started`."""
    print(f"{what} ({time.perf_counter() - started:.1f} s)", file=file or sys.stderr, flush=True)


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
