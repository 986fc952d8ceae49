"""Seeded runs repeat bit for bit on one machine: every seed set, and TensorFlow's deterministic ops.

What made the demo's seed-0 numbers move (fused mAP 0.41 to 0.54 over four runs): the seed never
arrived (train/demo.py dropped a 0 flag), so each run drew its own. With the seed, the input
pipeline is already ordered and CPU kernels were bit-identical run to run here; enabling op
determinism keeps that so where kernels race (GPU reductions, scatter ops), at some speed.
"""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, then deterministic op kernels (before any op runs)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
