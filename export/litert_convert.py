"""Keras callables -> LiteRT flatbuffers with builtin ops only (through a SavedModel)."""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings

import keras
import tensorflow as tf

from glat_core.console import quiet_fd2


def stage_outputs(stage, keys):
    """`stage` (a GlatModel stage) returning only `keys` of its outputs: the exported
    signature's output names are the stage's own; the rest is pruned from the model."""
    def serve(x):
        out = stage(x)
        return {key: out[key] for key in keys}
    return serve


class FlexOpsError(RuntimeError):
    """A converted model needs TensorFlow (Flex/select-TF) ops: it would not run on a device."""


@contextlib.contextmanager
def saved_model(fn, input_signature, track):
    """A temporary SavedModel of `fn` (returning a dict of tensors) at `input_signature`:
    written once, converted to several variants by convert_saved_model.

    `track` is the Keras layer or model (or a list of them) whose variables `fn` reads.
    Goes through a Keras ExportArchive SavedModel: a concrete function, or a plain
    tf.Module holding the model, left resource variables unfrozen here
    (VAR_HANDLE/READ_VARIABLE ops and NaN outputs).
    """
    archive = keras.export.ExportArchive()
    for layer in track if isinstance(track, (list, tuple)) else [track]:
        archive.track(layer)
    archive.add_endpoint("serving_default", fn, input_signature=input_signature)
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        yield tmp


@quiet_fd2()  # the converter's C++ lines (fully_quantize: 0, ...) go straight to fd 2
def convert_saved_model(path, *, optimizations=(), representative_dataset=None, int8_ops=False,
                        supported_types=None, float_scopes=(), float_ops=(),
                        float_outputs=False, reference=None) -> bytes:
    """Converts the `serving_default` of a SavedModel at `path` with builtin ops only.

    `float_scopes` (name scopes such as "frontend") and `float_ops` (LiteRT op names)
    stay float in a quantized conversion: with a representative dataset through the
    selective quantizer's deny lists (with `float_outputs` also the ops writing the
    signature's outputs: they carry the output's name, not their scope's), otherwise
    (float16, dynamic range) by putting the float32 constants of the plain conversion
    `reference` (made here if not given) back into those ops.
    """
    keep_float = bool(float_scopes or float_ops) and bool(optimizations)
    if keep_float and reference is None:
        reference = _converter(path).convert()
    converter = _converter(path, optimizations=optimizations,
                           representative_dataset=representative_dataset, int8_ops=int8_ops,
                           supported_types=supported_types)
    if keep_float and representative_dataset is not None:
        flatbuffer = _selective_int8(converter, representative_dataset,
                                     _scoped_tensors(reference, float_scopes, float_outputs),
                                     float_ops)
    elif keep_float:
        flatbuffer = restore_float_constants(converter.convert(), reference, float_scopes,
                                             float_ops)
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


def _scoped_tensors(flatbuffer: bytes, scopes, outputs: bool = False) -> list[str]:
    """Names of the tensors that ops inside `scopes` output (the deny list's node names);
    with `outputs` also the signature's outputs (their ops carry the output's name)."""
    interpreter = _interpreter(flatbuffer)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    found = {names[i] for op in interpreter._get_ops_details() for i in op["outputs"]
             if _in_scopes(names[i], scopes)}
    if outputs:
        found |= {t["name"] for t in interpreter.get_output_details()}
    return sorted(found)


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


def restore_float_constants(converted: bytes, reference: bytes, scopes, float_ops=()) -> bytes:
    """Gives the ops of `converted` inside `scopes` (or of type `float_ops`) the exact float32
    constants their twins in `reference` (the plain float conversion) read.

    Float16 and dynamic-range conversion have no deny list. Float16 rounds every constant
    (the log's floor 1e-10 becomes 0: log(0) on digital silence; frame centres move by
    samples); dynamic range turns the mel filterbank into an int8 hybrid FULLY_CONNECTED
    that quantizes the power spectrum per frame (log-mel up to 90 dB off). An int8 or
    float16 constant input is replaced in place; a float16 one behind a DEQUANTIZE op
    becomes a float32 constant and the DEQUANTIZE is dropped.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(converted), 0)
    ref = schema.ModelT.InitFromPackedBuf(bytearray(reference), 0)
    graph, ref_graph = model.subgraphs[0], ref.subgraphs[0]

    def outputs(g, op):
        return tuple(g.tensors[i].name.decode() for i in op.outputs)

    codes = [code.builtinCode for code in model.operatorCodes]
    ref_codes = [code.builtinCode for code in ref.operatorCodes]
    dequantize = schema.BuiltinOperator.DEQUANTIZE
    # Tensor names drift between conversions (suffixes), the op sequence does not: with
    # the inserted DEQUANTIZE ops left out, op i of one is op i of the other.
    body = [op for op in graph.operators if codes[op.opcodeIndex] != dequantize]
    if [codes[op.opcodeIndex] for op in body] != [ref_codes[op.opcodeIndex]
                                                  for op in ref_graph.operators]:
        raise ValueError("the converted model's ops do not line up with the float reference's")
    wanted = {getattr(schema.BuiltinOperator, op) for op in float_ops}
    producer = {i: op for op in graph.operators for i in op.outputs}
    dropped = set()
    for op, twin in zip(body, ref_graph.operators):
        if not (codes[op.opcodeIndex] in wanted
                or any(_in_scopes(n, scopes) for n in outputs(graph, op))):
            continue
        for index, ref_index in zip(op.inputs, twin.inputs):
            if index < 0 or ref_index < 0:
                continue
            source = ref_graph.tensors[ref_index]
            data = ref.buffers[source.buffer].data
            if source.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
                continue  # not a float constant in the reference: nothing to restore
            tensor = graph.tensors[index]
            maker = producer.get(index)
            if maker is not None and codes[maker.opcodeIndex] == dequantize:
                dropped.add(id(maker))
                model.buffers.append(schema.BufferT())
                tensor.buffer = len(model.buffers) - 1
            elif tensor.type == schema.TensorType.FLOAT32:
                continue
            tensor.type, tensor.quantization = schema.TensorType.FLOAT32, None
            model.buffers[tensor.buffer].data = data
    orphans = {i for op in graph.operators if id(op) in dropped for i in op.inputs}
    graph.operators = [op for op in graph.operators if id(op) not in dropped]
    orphans -= {i for op in graph.operators for i in op.inputs}
    for index in orphans:  # the float16 copies nothing reads any more
        model.buffers[graph.tensors[index].buffer].data = None
    builder = flatbuffers.Builder(len(converted) + len(reference))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@quiet_fd2()  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
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
