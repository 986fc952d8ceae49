"""A GlatModel -> ONE LiteRT model of the whole GL-AT pass, with TFLite Model Metadata.

The file MediaPipe Tasks' AudioClassifier (Android, iOS, web, Python) loads as is, the way
YAMNet ships: input `waveform` [1, window] float32 with AudioProperties (sample rate,
channels); four heads, each [1, L] with the labels as a TENSOR_AXIS_LABELS file: `fused`
(first: what a task library reads as the answer), `global`, `local`, and
`clip_start_seconds`, for each class the start of the clip GL-AT chose for it in seconds
from the window's start, -1 for the classes that chose none (MediaPipe takes every output as
a score head and refuses int32: the clips travel as a labelled per-class value).

MediaPipe zero-pads the last window of a recording (and a recording shorter than the
window): the model cannot tell padding from digital silence, so it treats trailing exact
zeros as padding and tags the audio before them at its own length (at least one crop), as
the Keras model tags that audio. The graph is GlatModel.__call__ itself (its stages),
converted with builtin ops only; int8 keeps the frontend, the selection, the classifier and
the sigmoids float, as the pair export does, and also the padding trim, the clip head and
the fusion (SINGLE_FILE_FLOAT_SCOPES).
"""

from __future__ import annotations

import io
import pathlib
import zipfile

import tensorflow as tf

from edge_runtime.contract import SingleFileRecord
from export import calibration as calibration_lib
from export import litert_convert
from export.plan import ExportPlan
from export.tflite import INT8_FLOAT_OPS, INT8_FLOAT_SCOPES, check_exportable
from glat_tf.model import FUSE_SCOPE

VARIANTS = ("f32", "int8")
# Output order of the file: MediaPipe reads the first output as its classification head.
OUTPUTS = ("fused", "global", "local", "clip_start_seconds")
LABELS_FILE = "labels.txt"
# Metadata schema version whose features this file uses (AudioProperties came in 1.3.0);
# readers older than it refuse the file.
MIN_PARSER_VERSION = "1.3.0"
# Kept float in int8 besides the pair's float scopes: the padding trim compares samples with
# exact zero (an int8 waveform and an int8 zero of another scale never compare equal: the
# whole 10 s window was tagged, crops chosen in the padding) and the clip head's arithmetic
# (one scale for -1 and the starts in seconds put every class 6-8 s into the window), and
# the fusion of the sigmoids' outputs, which the pair's runtime does in float (and the
# ops writing the outputs): 0.40 fused off Keras on the real clip before, 0.032 after.
TRIM_SCOPE, CLIP_SCOPE = "trim_padding", "clip_start_head"
SINGLE_FILE_FLOAT_SCOPES = INT8_FLOAT_SCOPES + (TRIM_SCOPE, CLIP_SCOPE, FUSE_SCOPE)


def without_padding(waveform, shortest: int):
    """(1, window) -> (1, n): the audio before its trailing exact zeros, at least `shortest`
    samples (MediaPipe's padding of a last window; all zeros: `shortest` zeros)."""
    with tf.name_scope(TRIM_SCOPE):
        samples = tf.shape(waveform)[1]
        position = tf.range(1, samples + 1)  # (samples,)
        heard = tf.reduce_max(position * tf.cast(tf.not_equal(waveform[0], 0.0), tf.int32))
        return tf.slice(waveform, [0, 0], [1, tf.maximum(heard, shortest)])


def clip_start_seconds(out, num_classes: int, sample_rate: int):
    """(1, L): for each class, its clip's start in seconds (-1: no clip chose it). The N
    selected classes are distinct (the top N), so each has at most one clip."""
    with tf.name_scope(CLIP_SCOPE):
        picks = tf.one_hot(out["selected_classes"], num_classes)  # (1, N, L)
        seconds = tf.cast(out["clip_starts"], tf.float32) / float(sample_rate)  # (1, N)
        return tf.reduce_sum(picks * tf.expand_dims(seconds + 1.0, 2), axis=1) - 1.0


def whole_pass(model):
    """waveform (1, window) -> the heads of OUTPUTS: GlatModel's own call (global stage,
    local stage on the clips it picks, fusion) on the waveform without its zero padding."""
    def serve(waveform):
        out = model(without_padding(waveform, model.crop_samples), training=False)
        return {"fused": out["fused"], "global": out["global"], "local": out["local"],
                "clip_start_seconds": clip_start_seconds(out, model.num_classes,
                                                         model.sample_rate)}
    return serve


def convert(model, variants, window_samples: int, calibration=None) -> dict[str, bytes]:
    """{variant: flatbuffer without metadata}, outputs in OUTPUTS order."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"--single-file writes {', '.join(VARIANTS)}, not {unknown}")
    if "int8" in variants and (calibration is None or len(calibration) == 0):
        raise ValueError("the int8 variant needs calibration clips (real audio)")
    signature = [tf.TensorSpec([1, window_samples], tf.float32, name="waveform")]
    out = {}
    with litert_convert.saved_model(whole_pass(model), signature, [model]) as path:
        f32 = litert_convert.convert_saved_model(path)
        if "f32" in variants:
            out["f32"] = f32
        if "int8" in variants:
            windows = calibration_lib.fit_length(calibration, window_samples)
            out["int8"] = litert_convert.convert_saved_model(
                path, optimizations=[tf.lite.Optimize.DEFAULT], int8_ops=True,
                representative_dataset=lambda: ([w[None]] for w in windows),
                float_scopes=SINGLE_FILE_FLOAT_SCOPES, float_ops=INT8_FLOAT_OPS,
                float_outputs=True, reference=f32)
    return {variant: order_outputs(flatbuffer, OUTPUTS) for variant, flatbuffer in out.items()}


def order_outputs(flatbuffer: bytes, names) -> bytes:
    """The subgraph's outputs in the order of the signature names `names` (the converter
    orders them by its own tensor numbering; task libraries read them by position)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    signature = model.signatureDefs[0]
    by_name = {t.name.decode(): t.tensorIndex for t in signature.outputs}
    graph = model.subgraphs[signature.subgraphIndex]
    graph.outputs = [by_name[name] for name in names]
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_metadata(flatbuffer: bytes, labels, sample_rate: int, *, name: str,
                  description: str) -> bytes:
    """`flatbuffer` with TFLite Model Metadata: AudioProperties on the input, the label
    names as a TENSOR_AXIS_LABELS associated file on the first output (fused)."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    def tensor(tensor_name, text, properties_type, properties, files=()):
        md = fb.TensorMetadataT()
        md.name, md.description = tensor_name, text
        md.content = fb.ContentT()
        md.content.contentPropertiesType, md.content.contentProperties = properties_type, properties
        md.associatedFiles = list(files) or None
        return md

    audio = fb.AudioPropertiesT()
    audio.sampleRate, audio.channels = int(sample_rate), 1
    axis_labels = fb.AssociatedFileT()
    axis_labels.name, axis_labels.type = LABELS_FILE, fb.AssociatedFileType.TENSOR_AXIS_LABELS
    axis_labels.description = "class names, one per column"
    feature = fb.ContentProperties.FeatureProperties

    def head(name, text):  # every head's columns are the classes: each carries the labels
        return tensor(name, text, feature, fb.FeaturePropertiesT(), [axis_labels])
    outputs = [head("fused", "GL-AT fused scores (probabilities)"),
               head("global", "global stream scores (probabilities)"),
               head("local", "local stream scores (probabilities, max-mean over the clips)"),
               head("clip_start_seconds", "start (s from the window's start) of the clip "
                                          "chosen for each class; -1: none chosen")]
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [tensor(
        "waveform", f"mono float32 audio in [-1, 1] at {sample_rate} Hz",
        fb.ContentProperties.AudioProperties, audio)]
    subgraph.outputTensorMetadata = outputs
    model_md = fb.ModelMetadataT()
    model_md.name, model_md.description = name, description
    model_md.subgraphMetadata = [subgraph]
    model_md.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(model_md.Pack(builder), b"M001")
    return attach(flatbuffer, bytes(builder.Output()),
                  {LABELS_FILE: "\n".join(labels.names) + "\n"})


def attach(flatbuffer: bytes, metadata: bytes, files: dict) -> bytes:
    """The model with `metadata` under TFLITE_METADATA and `files` {name: text} zipped
    after the flatbuffer: what the metadata populator writes. mediapipe 1.2.3's populator
    cannot be imported (its version-check extension is missing from the wheel)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    model.metadata = [m for m in model.metadata or [] if m.name != b"TFLITE_METADATA"]
    buffer = schema.BufferT()
    buffer.data = list(metadata)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = b"TFLITE_METADATA", len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    archive = io.BytesIO(bytes(builder.Output()))
    with zipfile.ZipFile(archive, "a") as zf:  # appended: the flatbuffer stays readable
        for name, text in files.items():
            zf.writestr(name, text)
    return archive.getvalue()


def export_single_file(model, out_dir, labels, *, variants=("f32",), window_samples=None,
                       calibration=None) -> dict:
    """Writes `glat_<v>.tflite` per variant (metadata inside) and `single_file.json`
    (a SingleFileRecord: the model's fixed sizes and file names); returns that record."""
    check_exportable(model)
    if not model.n_clips:
        raise ValueError("--single-file exports a GlatModel; a baseline's global_<v>.tflite "
                         "is already the whole pass")
    plan = ExportPlan.of(model, labels, window_samples)
    window_samples = plan.window_samples
    if not model.built:
        model(tf.zeros([1, window_samples]), training=False)
    facts = plan.facts()
    converted = convert(model, variants, window_samples, calibration)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for variant, flatbuffer in converted.items():
        files[variant] = f"glat_{variant}.tflite"
        (out / files[variant]).write_bytes(with_metadata(
            flatbuffer, labels, model.sample_rate, name=f"glat-tf {facts['backbone']} {variant}",
            description=f"GL-AT tagger: {window_samples} samples at {model.sample_rate} Hz -> "
                        f"{model.num_classes} fused scores, N={model.n_clips} windows of "
                        f"tau={model.tau} s"))
    record = SingleFileRecord(**facts, outputs=OUTPUTS, variants=files).validate()
    record.write(out)
    return record.to_dict()


def export_cli(model, out_dir, labels, *, variants, window_samples, calibration,
               streaming=False) -> dict:
    """glat-export tflite --single-file: export_single_file with the pair's arguments."""
    if streaming:
        raise ValueError("--single-file and --streaming are separate exports: run them apart")
    record = export_single_file(model, out_dir, labels, variants=variants,
                                window_samples=window_samples, calibration=calibration)
    return {**record, "record": SingleFileRecord.FILE, "variants": {v: {"single_file": name}
                                   for v, name in record["variants"].items()}}
