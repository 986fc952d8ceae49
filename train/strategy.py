"""tf.distribute strategies by name (`default`, `mirrored`, `multiworker`) and who the chief is."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy `name`; `mirrored` uses every local GPU, or every logical CPU when none.

    `multiworker` reads the cluster from the TF_CONFIG environment variable and
    must be created before any other TensorFlow op runs in the process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs MirroredStrategy would take one CPU: spread over the logical CPUs
        # instead, which is how the tests run it on a machine without GPUs.
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if not os.environ.get("TF_CONFIG"):
        raise ValueError("strategy='multiworker' needs the TF_CONFIG environment variable "
                         '({"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker", '
                         '"index": i}}); see the README for launching two workers')
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_role(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """(is_chief, task index). Outside multi-worker training the one process is the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, task_id


def tf_config(workers: list[str], index: int) -> str:
    """The TF_CONFIG JSON of worker `index` in a cluster of `workers` (host:port strings)."""
    if not 0 <= index < len(workers):
        raise ValueError(f"index={index} is not a worker of {len(workers)}")
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": "worker", "index": index}})
