"""TF Serving's Predict and GetModelMetadata protocol answered from a SavedModel folder.

What a TF Serving server does with our SavedModel, without the server (it cannot be
installed here): a serialized `PredictRequest` is checked against the signature (input
names, dtype, rank), run through `tf.saved_model.load`, and answered as a
`PredictResponse`; `GetModelMetadataRequest` is answered with the SignatureDefMap. Uses
TensorFlow and tensorflow-serving-api only, never glat_tf: a client's view of the export.

    python -m export.serving_answer MODEL_DIR predict request.pb response.pb
    python -m export.serving_answer MODEL_DIR metadata request.pb response.pb
    python -m export.serving_answer MODEL_DIR rest body.json response.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

SIGNATURE = "serving_default"


class BadRequest(ValueError):
    """A request the signature cannot take; the message names the problem."""


def signature_defs(model_dir) -> dict:
    """{signature name: SignatureDef} read from saved_model.pb (as TF Serving does)."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((pathlib.Path(model_dir) / "saved_model.pb").read_bytes())
    return dict(saved.meta_graphs[0].signature_def)


class Server:
    """One SavedModel version answering the two protocol calls."""

    def __init__(self, model_dir, name: str = "glat"):
        self.model_dir = pathlib.Path(model_dir)
        self.name = name
        self.signatures = signature_defs(model_dir)
        self.loaded = tf.saved_model.load(str(model_dir))

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        if list(request.metadata_field) != ["signature_def"]:
            raise BadRequest(f"metadata_field must be ['signature_def'], got "
                             f"{list(request.metadata_field)}")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(self.spec(request.model_spec))
        defs = get_model_metadata_pb2.SignatureDefMap()
        for key, value in self.signatures.items():
            defs.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(defs)
        return response

    def spec(self, asked) -> model_pb2.ModelSpec:
        if asked.name and asked.name != self.name:
            raise BadRequest(f"model {asked.name!r} is not served here (serving {self.name!r})")
        spec = model_pb2.ModelSpec(name=self.name, signature_name=asked.signature_name or SIGNATURE)
        spec.version.value = int(self.model_dir.name) if self.model_dir.name.isdigit() else 1
        return spec

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = self.spec(request.model_spec)
        if spec.signature_name not in self.signatures or spec.signature_name.startswith("__"):
            raise BadRequest(f"signature {spec.signature_name!r} not found; the model has "
                             f"{sorted(k for k in self.signatures if not k.startswith('__'))}")
        signature = self.signatures[spec.signature_name]
        inputs = {}
        for name, proto in request.inputs.items():
            if name not in signature.inputs:
                raise BadRequest(f"input {name!r} is not in signature {spec.signature_name!r}, "
                                 f"which takes {sorted(signature.inputs)}")
            want = signature.inputs[name]
            if proto.dtype != want.dtype:
                raise BadRequest(f"input {name!r} has dtype {tf.dtypes.as_dtype(proto.dtype).name}"
                                 f", the signature takes {tf.dtypes.as_dtype(want.dtype).name}")
            value = tf.make_ndarray(proto)
            rank = len(want.tensor_shape.dim)
            if value.ndim != rank:
                dims = [d.size for d in want.tensor_shape.dim]
                raise BadRequest(f"input {name!r} has rank {value.ndim} (shape "
                                 f"{list(value.shape)}), the signature takes rank {rank} {dims}")
            inputs[name] = tf.constant(value)
        missing = sorted(set(signature.inputs) - set(inputs))
        if missing:
            raise BadRequest(f"missing inputs {missing} of signature {spec.signature_name!r}")
        wanted = list(request.output_filter) or sorted(signature.outputs)
        unknown = [k for k in wanted if k not in signature.outputs]
        if unknown:
            raise BadRequest(f"output_filter names {unknown}, not outputs of the signature "
                             f"({sorted(signature.outputs)})")
        try:
            out = self.loaded.signatures[spec.signature_name](**inputs)
        except tf.errors.InvalidArgumentError as error:
            raise BadRequest(error.message.splitlines()[0]) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(out[key].numpy()))
        return response

    def rest(self, body: dict) -> dict:
        """The REST API's predict (`/v1/models/<name>:predict`): columnar `inputs` or row
        `instances`, answered as `outputs` or `predictions` like the server does."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.model_spec.signature_name = body.get("signature_name", SIGNATURE)
        signature = self.signatures.get(request.model_spec.signature_name)
        if ("inputs" in body) == ("instances" in body):
            raise BadRequest("the body needs exactly one of 'inputs' (columnar) or "
                             "'instances' (row)")
        columns = body.get("inputs")
        if columns is None:
            rows = body["instances"]
            columns = ({k: [row[k] for row in rows] for k in rows[0]}
                       if rows and isinstance(rows[0], dict) else
                       {next(iter(signature.inputs)) if signature else "waveform": rows})
        if not isinstance(columns, dict):
            columns = {next(iter(signature.inputs)) if signature else "waveform": columns}
        for name, value in columns.items():
            dtype = (tf.dtypes.as_dtype(signature.inputs[name].dtype)
                     if signature and name in signature.inputs else None)
            array = np.asarray(value, dtype.as_numpy_dtype if dtype else None)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        response = self.predict(request)
        outputs = {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()}
        if "instances" in body:
            return {"predictions": [{k: outputs[k][i] for k in outputs}
                                    for i in range(len(body["instances"]))]}
        return {"outputs": outputs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="serving_answer", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("kind", choices=("predict", "metadata", "rest"))
    parser.add_argument("request")
    parser.add_argument("response")
    args = parser.parse_args(argv)
    server = Server(args.model_dir)
    data = pathlib.Path(args.request).read_bytes()
    try:
        if args.kind == "rest":
            answer = json.dumps(server.rest(json.loads(data))).encode()
        else:
            request = (predict_pb2.PredictRequest() if args.kind == "predict"
                       else get_model_metadata_pb2.GetModelMetadataRequest())
            request.ParseFromString(data)
            call = server.predict if args.kind == "predict" else server.metadata
            answer = call(request).SerializeToString()
    except BadRequest as error:
        print(f"serving_answer: error: {error}", file=sys.stderr)
        return 2
    pathlib.Path(args.response).write_bytes(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
