"""Keras callables -> LiteRT flatbuffers with builtin ops only, and a way to run them in tests."""

from __future__ import annotations

import tempfile

import keras
import numpy as np
import tensorflow as tf


class FlexOpsError(RuntimeError):
    """A converted model needs TensorFlow (Flex/select-TF) ops: it would not run on a device."""


def convert(fn, input_signature, track, *, optimizations=(), representative_dataset=None,
            int8_ops=False, supported_types=None) -> bytes:
    """Converts `fn(*inputs)` (returning a dict of tensors) at a static signature.

    `track` is the Keras layer or model (or a list of them) whose variables `fn`
    reads. Goes through a Keras ExportArchive SavedModel: a concrete function, or
    a plain tf.Module holding the model, left resource variables unfrozen here
    (VAR_HANDLE/READ_VARIABLE ops and NaN outputs).
    Only TFLITE_BUILTINS are allowed, so an op LiteRT lacks fails the conversion
    instead of silently pulling in Flex.
    """
    archive = keras.export.ExportArchive()
    for layer in track if isinstance(track, (list, tuple)) else [track]:
        archive.track(layer)
    archive.add_endpoint("serving_default", fn, input_signature=input_signature)
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8_ops:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
        converter.target_spec.supported_ops = ops
        if supported_types:
            converter.target_spec.supported_types = list(supported_types)
        converter.optimizations = list(optimizations)
        if representative_dataset is not None:
            converter.representative_dataset = representative_dataset
        flatbuffer = converter.convert()
    flex = [op for op in op_names(flatbuffer) if op.startswith("Flex")]
    if flex:
        raise FlexOpsError(f"converted model uses TensorFlow ops {flex}; only builtins run on devices")
    return flatbuffer


def _interpreter(flatbuffer: bytes, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=flatbuffer, num_threads=threads)


def op_names(flatbuffer: bytes) -> list[str]:
    """Sorted distinct operator names of a LiteRT model."""
    details = _interpreter(flatbuffer)._get_ops_details()
    return sorted({d["op_name"] for d in details})


def run(flatbuffer: bytes, *inputs, signature="serving_default", threads=1,
        **named) -> dict[str, np.ndarray]:
    """Runs a signature on numpy inputs, given by name (or positionally when it has one input)."""
    interpreter = _interpreter(flatbuffer, threads)
    names = interpreter.get_signature_list()[signature]["inputs"]
    if inputs:
        # The signature lists inputs alphabetically, not positionally: only one is unambiguous.
        if len(inputs) != 1 or len(names) != 1 or named:
            raise ValueError(f"pass inputs by name: the model takes {names}")
        named = {names[0]: inputs[0]}
    if sorted(named) != sorted(names):
        raise ValueError(f"model takes inputs {names}, got {sorted(named)}")
    runner = interpreter.get_signature_runner(signature)
    return runner(**{name: np.asarray(x) for name, x in named.items()})
