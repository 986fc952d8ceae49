"""The count of damaged shard records this process met: shared by every reader (the streaming
pipeline and the index sampler) and read by the training loop."""

from __future__ import annotations

import threading

import tensorflow as tf


class ShardDamage:
    """Damaged shards the readers met in this process: the loop logs and counts them.

    A reader ends a file at its first unreadable record (TFRecord has no sync marks to
    resume from), so a damaged file loses that record and every one after it in that pass.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.skipped = 0  # records lost, summed over passes
        self.last = None  # the latest damage, one line

    def report(self, line: str, lost: int, skip: bool) -> None:
        """`line` names the file; `lost` records are gone; raises unless `skip`."""
        with self._lock:
            self.skipped += lost
            self.last = line
        if not skip:
            raise tf.errors.DataLossError(None, None, line)


DAMAGE = ShardDamage()
