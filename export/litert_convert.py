"""Keras callables -> LiteRT flatbuffers with builtin ops only, and a way to run them in tests."""

from __future__ import annotations

import re
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf


class FlexOpsError(RuntimeError):
    """A converted model needs TensorFlow (Flex/select-TF) ops: it would not run on a device."""


def convert(fn, input_signature, track, *, optimizations=(), representative_dataset=None,
            int8_ops=False, supported_types=None, float_scopes=(), float_ops=()) -> bytes:
    """Converts `fn(*inputs)` (returning a dict of tensors) at a static signature.

    `track` is the Keras layer or model (or a list of them) whose variables `fn`
    reads. Goes through a Keras ExportArchive SavedModel: a concrete function, or
    a plain tf.Module holding the model, left resource variables unfrozen here
    (VAR_HANDLE/READ_VARIABLE ops and NaN outputs).
    Only TFLITE_BUILTINS are allowed, so an op LiteRT lacks fails the conversion
    instead of silently pulling in Flex.

    `float_scopes` (name scopes such as "frontend") and `float_ops` (LiteRT op names)
    stay float in a quantized conversion: with a representative dataset through the
    selective quantizer's deny lists, without one (dynamic range) by restoring the
    float weights of those ops after conversion.
    """
    archive = keras.export.ExportArchive()
    for layer in track if isinstance(track, (list, tuple)) else [track]:
        archive.track(layer)
    archive.add_endpoint("serving_default", fn, input_signature=input_signature)
    keep_float = bool(float_scopes or float_ops) and bool(optimizations)
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        settings = dict(int8_ops=int8_ops, supported_types=supported_types)
        reference = _converter(tmp).convert() if keep_float else None
        converter = _converter(tmp, optimizations=optimizations,
                               representative_dataset=representative_dataset, **settings)
        if keep_float and representative_dataset is not None:
            flatbuffer = _selective_int8(converter, representative_dataset,
                                         _scoped_tensors(reference, float_scopes), float_ops)
        elif keep_float:
            flatbuffer = _float_weights(converter.convert(), reference, float_scopes, float_ops)
        else:
            flatbuffer = converter.convert()
    flex = [op for op in op_names(flatbuffer) if op.startswith("Flex")]
    if flex:
        raise FlexOpsError(f"converted model uses TensorFlow ops {flex}; only builtins run on devices")
    return flatbuffer


def _converter(saved_model_dir, *, optimizations=(), representative_dataset=None, int8_ops=False,
               supported_types=None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8_ops:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
    converter.target_spec.supported_ops = ops
    if supported_types:
        converter.target_spec.supported_types = list(supported_types)
    converter.optimizations = list(optimizations)
    if representative_dataset is not None:
        converter.representative_dataset = representative_dataset
    return converter


def _in_scopes(name: str, scopes) -> bool:
    # Keras suffixes scopes on re-entry (frontend_1/...): match the stem of every path part.
    parts = {re.sub(r"_\d+$", "", part) for chunk in name.split(";") for part in chunk.split("/")}
    return any(scope in parts for scope in scopes)


def _scoped_tensors(flatbuffer: bytes, scopes) -> list[str]:
    """Names of the tensors that ops inside `scopes` output (the deny list's node names)."""
    interpreter = _interpreter(flatbuffer)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return sorted({names[i] for op in interpreter._get_ops_details() for i in op["outputs"]
                   if _in_scopes(names[i], scopes)})


def _selective_int8(converter, representative_dataset, float_nodes, float_ops) -> bytes:
    """Full-integer quantization except the denied nodes and op types, which stay float."""
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(float_nodes) or None, denylisted_ops=list(float_ops) or None)
    with warnings.catch_warnings():
        # The debugger runs its instrumented model through the deprecated tf.lite.Interpreter.
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset, debug_options=options)
        return debugger.get_nondebug_quantized_model()


def _float_weights(quantized: bytes, reference: bytes, scopes, float_ops) -> bytes:
    """Puts the float weights of `reference` back into the ops of `quantized` in `scopes`.

    Dynamic-range quantization has no deny list, and it turns the mel filterbank into
    an int8 hybrid FULLY_CONNECTED that quantizes the power spectrum per frame (log-mel
    up to 90 dB off); with float weights the same op runs in float.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(quantized), 0)
    ref = schema.ModelT.InitFromPackedBuf(bytearray(reference), 0)
    ref_tensors = {t.name: t for t in ref.subgraphs[0].tensors}
    op_codes = [code.builtinCode for code in model.operatorCodes]
    wanted = {getattr(schema.BuiltinOperator, op) for op in float_ops}
    for graph in model.subgraphs:
        for op in graph.operators:
            names = [graph.tensors[i].name.decode() for i in op.outputs]
            if not (op_codes[op.opcodeIndex] in wanted or any(_in_scopes(n, scopes) for n in names)):
                continue
            for index in op.inputs:
                tensor = graph.tensors[index] if index >= 0 else None
                if tensor is None or tensor.type != schema.TensorType.INT8:
                    continue
                source = ref_tensors.get(tensor.name)
                if source is None or source.type != schema.TensorType.FLOAT32:
                    raise ValueError(f"no float weights named {tensor.name!r} in the reference")
                tensor.type, tensor.quantization = schema.TensorType.FLOAT32, None
                model.buffers[tensor.buffer].data = ref.buffers[source.buffer].data
    builder = flatbuffers.Builder(len(quantized) + len(reference))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _interpreter(flatbuffer: bytes, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=flatbuffer, num_threads=threads)


def signature_runner(flatbuffer: bytes, threads: int = 1, signature="serving_default"):
    """A reusable callable runner(name=array, ...) -> dict of outputs (one interpreter)."""
    return _interpreter(flatbuffer, threads).get_signature_runner(signature)


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
