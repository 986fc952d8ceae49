"""Runs a test body in a forked child under an address-space limit and a time limit."""

from __future__ import annotations

import os
import resource
import select
import signal
import time
import traceback

import pytest


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def run_limited(body, extra_bytes: int = 1 << 30, seconds: float = 60.0):
    """body() in a forked child whose address space may grow by at most `extra_bytes` beyond
    what it inherits (the parent may hold TensorFlow's mappings); its failure, a crash or a
    hang past `seconds` fails the calling test with the child's traceback."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            limit = _vm_size() + extra_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(
                resource.RLIMIT_AS)[1]))
            body()
            code = 0
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(write_end, traceback.format_exc()[-30000:].encode())
        finally:
            os._exit(code)
    os.close(write_end)
    output, deadline = b"", time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"child still running after {seconds} s (a hang?)\n"
                            + output.decode(errors="replace"))
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                output += chunk
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        pytest.fail(f"child failed (wait status {status}):\n" + output.decode(errors="replace"))
