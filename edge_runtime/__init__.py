"""Streaming GL-AT audio tagging on LiteRT: numpy, ai-edge-litert, soundfile and soxr only, never TensorFlow."""

from edge_runtime.contract import ExportMetadata, StreamingPlan
from edge_runtime.ring_buffer import RingBuffer
from glat_core.audio import ArraySource, Conditioner, FileSource, MicSource, PcmSource
from edge_runtime.pipeline import HopResult, Pipeline

_FROM_STREAM = ("Event", "StreamRunner", "read_metadata")
__all__ = ["ArraySource", "Conditioner", "ExportMetadata", "FileSource", "HopResult", "MicSource",
           "PcmSource", "RingBuffer", "StreamingPlan", "Pipeline", *_FROM_STREAM]


def __getattr__(name):
    # Imported on first use, so `python -m edge_runtime.stream` does not load its own module twice.
    if name in _FROM_STREAM:
        from edge_runtime import stream
        return getattr(stream, name)
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
