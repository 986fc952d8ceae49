"""The machine a benchmark ran on, stored in its JSON: CPU, cores, SIMD flags, load, TensorFlow, date.

    from machine import Machine          # in main(), after parse_args: bench/ is sys.path[0]
                                         # when a bench script runs (not when a test loads it)
    here = Machine()                     # at the start: load average and date
    result["machine"] = here.record()    # at the end: the same plus the load then

TF-free (reads /proc/cpuinfo and package metadata), so the ingest and edge benches and the
README check can use it without importing TensorFlow. On a shared machine a timing means
little without the load it met: the record keeps the 1/5/15-minute load averages at both ends.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import sys

# The flags that pick oneDNN's kernels (and so change timings and float rounding).
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu() -> dict:
    """{"cpu": model name, "cores": n, "flags": [the SIMD_FLAGS present]} from /proc/cpuinfo."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: the platform's own words
        pass
    return {"cpu": name or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "flags": [f for f in SIMD_FLAGS if f in flags]}


def describe(record: dict | None = None) -> str:
    """'AMD EPYC, 2 cores, AVX-512': how the README names the machine of a record."""
    record = record or cpu()
    flags = set(record["flags"])
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{record['cpu']}, {record['cores']} cores, {simd}" + (" + AMX" if "amx_tile" in flags
                                                                 else "")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Machine:
    """Load and date when created; `record()` adds the CPU and the load at the end."""

    def __init__(self):
        self.started = _now()
        self.load_start = [round(x, 2) for x in os.getloadavg()]

    def record(self) -> dict:
        here = cpu()
        return {**here, "summary": describe(here), "python": platform.python_version(),
                "tensorflow": _version("tensorflow"), "started": self.started,
                "finished": _now(), "load_start": self.load_start,
                "load_end": [round(x, 2) for x in os.getloadavg()]}


def command(argv: list[str] | None = None) -> str:
    """The command line that made a result, as a shell would take it back."""
    argv = sys.argv[1:] if argv is None else argv
    script = os.path.relpath(sys.argv[0]) if sys.argv[0] else "bench"
    return shlex.join(["python", script, *argv])
