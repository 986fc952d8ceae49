"""TF Serving's Predict / GetModelMetadata protocol on the SavedModel, answered in a fresh
process that never imports glat_tf (export/serving_answer.py)."""

import ast
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow_serving.apis")

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2  # noqa: E402

from export.saved_model import export_saved_model  # noqa: E402
from glat_tf import GlatModel  # noqa: E402
from glat_tf.data.labels import LabelMap  # noqa: E402
from tests.harness import check  # noqa: E402
from tests.paths import ROOT  # noqa: E402

OUTPUTS = GlatModel.output_keys  # what the signature serves: the model's own outputs

README = ROOT / "README.md"
ANSWER = ("import json, sys\nfrom export import serving_answer\n"
          "codes = [serving_answer.main(job) for job in json.load(open(sys.argv[1]))]\n"
          "assert 'glat_tf' not in sys.modules, 'the answering process imported glat_tf'\n"
          "print(json.dumps(codes))\n")


def answer(tmp_path, model_dir, jobs):
    """Runs [(kind, request bytes)] in one fresh process; [(exit code, response or None)], stderr."""
    spec = []
    for i, (kind, body) in enumerate(jobs):
        (tmp_path / f"req{i}").write_bytes(body)
        spec.append([str(model_dir), kind, str(tmp_path / f"req{i}"), str(tmp_path / f"res{i}")])
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-c", ANSWER, str(tmp_path / "jobs.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    return [(code, (tmp_path / f"res{i}").read_bytes() if code == 0 else None)
            for i, code in enumerate(codes)], done.stderr


def predict_request(inputs: dict, signature="serving_default"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "glat"
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request.SerializeToString()


@pytest.mark.slow
def test_predict_and_metadata_protocol(tmp_path):
    model = GlatModel.from_preset("cnn10_tiny", num_classes=3, n_clips=2, tau=1.0)
    labels = LabelMap(("/m/a", "/m/b", "/m/c"), ("a", "b", "c"))
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal([2, 3 * 32000])).astype(np.float32)
    reference = {k: np.asarray(v) for k, v in model(waveform, training=False).items()}
    model_dir = export_saved_model(model, tmp_path / "serving", labels)

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "glat"
    metadata.metadata_field.append("signature_def")
    readme_body = re.search(r"json\.dumps\((\{'signature_name'.*?\})\)\)", README.read_text())
    body = ast.literal_eval(readme_body.group(1).replace("x.tolist()", "0"))
    body["inputs"]["waveform"] = waveform[:1].tolist()  # the README's [x.tolist()] with x the clip
    jobs = [("predict", predict_request({"waveform": waveform})),
            ("metadata", metadata.SerializeToString()),
            ("predict", predict_request({"audio": waveform})),
            ("predict", predict_request({"waveform": waveform.astype(np.float64)})),
            ("predict", predict_request({"waveform": waveform[None]})),
            ("rest", json.dumps(body).encode())]
    results, stderr = answer(tmp_path, model_dir, jobs)

    code, data = results[0]
    assert code == 0
    response = predict_pb2.PredictResponse.FromString(data)
    assert sorted(response.outputs) == sorted(OUTPUTS)
    got = {key: tf.make_ndarray(response.outputs[key]) for key in OUTPUTS}
    assert {k: v.dtype for k, v in got.items()} == {k: reference[k].dtype for k in OUTPUTS}
    check.assert_outputs_close(got, reference, "glat_model", keys=OUTPUTS)
    assert tf.make_ndarray(response.outputs["clip_starts"]).dtype == np.int32

    code, data = results[1]
    meta = get_model_metadata_pb2.GetModelMetadataResponse.FromString(data)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(defs)
    serving = defs.signature_def["serving_default"]
    assert list(serving.inputs) == ["waveform"]
    assert serving.inputs["waveform"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in serving.inputs["waveform"].tensor_shape.dim] == [-1, -1]
    assert sorted(serving.outputs) == sorted(OUTPUTS)
    assert serving.outputs["clip_starts"].dtype == tf.int32.as_datatype_enum

    assert [code for code, _ in results[2:5]] == [2, 2, 2]
    assert "input 'audio' is not in signature 'serving_default', which takes ['waveform']" in stderr
    assert "input 'waveform' has dtype float64, the signature takes float32" in stderr
    assert "input 'waveform' has rank 3" in stderr and "takes rank 2 [-1, -1]" in stderr

    code, data = results[5]
    rest = json.loads(data)["outputs"]
    check.assert_outputs_close({k: np.asarray(rest[k]) for k in OUTPUTS},
                               {k: reference[k][:1] for k in OUTPUTS}, "glat_model")
