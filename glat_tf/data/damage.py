"""The damaged shard records this process met: shared by every reader (the streaming
pipeline, the index sampler, the eval reader) and read by the training loop."""

from __future__ import annotations

import collections
import re
import threading


class ShardDamage:
    """Damaged shards the readers met in this process: the loop logs and counts them.

    `report` never raises: it runs inside tf.data's Python functions, and an exception
    thrown out of one leaves the pipeline's worker threads to be torn down by the
    interpreter's exit, which can hang (they wait for the GIL that the exiting thread
    holds). The readers turn a report into a graph-side assertion instead (see `fail_on`).
    A reader ends a streamed file at its first unreadable record (TFRecord has no sync
    marks to resume from), so a damaged streamed file loses that record and the rest of it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.skipped = 0  # records lost, summed over passes
        self.last = None  # the latest damage, one line
        self.lines = collections.deque(maxlen=64)  # recent lines, to name the file of an error

    def report(self, line: str, lost: int) -> str:
        """Counts `lost` records of the file that `line` names; returns `line`."""
        with self._lock:
            self.skipped += lost
            self.last = line
            self.lines.append(line)
        return line

    def line_in(self, message: str) -> str | None:
        """The reported line that an error message carries, if any."""
        with self._lock:
            return next((line for line in reversed(self.lines) if line in message), None)


DAMAGE = ShardDamage()


def fail_on(line, skip: bool):
    """Graph side: an InvalidArgumentError carrying `line` (a string tensor) unless it is
    empty or `skip`; returns the op to depend on (None when skipping)."""
    import tensorflow as tf

    if skip:
        return None
    return tf.debugging.Assert(tf.equal(tf.strings.length(line), 0), [line])


def plain_message(exc: BaseException) -> str:
    """A TensorFlow error's message on one line, without its graph-node and op decorations."""
    text = getattr(exc, "message", None) or str(exc)
    text = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]", "", text)
    return " ".join(text.split()) or type(exc).__name__
