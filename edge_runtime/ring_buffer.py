"""A fixed-size audio ring buffer: the last `capacity` samples of a stream, zeros before it began."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Holds the most recent `capacity` float32 samples of a mono stream in constant memory.

    `push(x)` appends samples of any length (older ones fall out); `window()`
    returns the (capacity,) window oldest-first, zero-padded at the front until
    `capacity` samples have arrived (`full` tells which). `total` counts every
    sample ever pushed, so stream time is `total / sample_rate`.

    Example:
        ring = RingBuffer(4); ring.push(np.array([1, 2, 3], np.float32))
        ring.window()  # array([0., 1., 2., 3.]); ring.full is False
        ring.push(np.array([4, 5], np.float32)); ring.window()  # [2., 3., 4., 5.]
    """

    def __init__(self, capacity: int):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity!r}")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, np.float32)
        self._pos = 0  # where the next sample goes; also the oldest sample once full
        self.total = 0

    @property
    def full(self) -> bool:
        return self.total >= self.capacity

    def push(self, samples) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"push takes mono samples of shape (n,), got shape {samples.shape}")
        n = len(samples)
        self.total += n
        if n >= self.capacity:
            # Only the newest `capacity` samples can survive; writing them from 0 keeps it simple.
            self._data[:] = samples[-self.capacity:]
            self._pos = 0
            return
        first = min(n, self.capacity - self._pos)
        self._data[self._pos:self._pos + first] = samples[:first]
        self._data[:n - first] = samples[first:]
        self._pos = (self._pos + n) % self.capacity

    def window(self, out: np.ndarray | None = None) -> np.ndarray:
        """The buffer oldest-first as a (capacity,) float32 array (into `out` if given)."""
        if out is None:
            out = np.empty(self.capacity, np.float32)
        elif out.shape != (self.capacity,):
            raise ValueError(f"out must have shape ({self.capacity},), got {out.shape}")
        tail = self.capacity - self._pos
        out[:tail] = self._data[self._pos:]
        out[tail:] = self._data[:self._pos]
        return out

    def reset(self) -> None:
        self._data[:] = 0.0
        self._pos = 0
        self.total = 0
