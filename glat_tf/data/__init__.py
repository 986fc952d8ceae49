"""Data: AudioSet-format ingest into TFRecord shards, the tf.data input pipeline, the demo set.

Submodules are imported where used (`glat_tf.data.pipeline`, `glat_tf.data.ingest`, ...):
ingest workers and the synthetic generator must not pay for a TensorFlow import.
"""
