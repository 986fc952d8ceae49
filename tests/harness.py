"""One test harness per stage, in the style of keras-hub's TestCase: every backbone, frontend,
model and export test runs its checks through these methods, with the stage's tolerance
declared once below.

    from tests.harness import StageTestCase
    check = StageTestCase()                       # or subclass it, as keras-hub's tests do
    out = check.run_backbone_test(net, (wave,), {"clipwise_logits": (2, 7)}, "backbone")
    check.run_export_test(lambda w: net(w, training=False), wave, net, expected, "backbone")
"""

import dataclasses
import pathlib
import tempfile

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class StageTolerance:
    """Absolute tolerances (rtol 0) of one stage's float32 outputs."""
    saving: float | None  # .keras save/load, in the same process, against the original
    export: float | None  # the exported artifact (LiteRT f32, SavedModel) against Keras


# Why these numbers: a .keras reload runs the same kernels on the same weights in the same
# process, so it differs only where Keras re-traces a graph (1e-6 on probabilities, 1e-5 on a
# backbone's unbounded logits). An f32 export runs the same float graph as Keras in other
# kernels (TFLite's, or a SavedModel's graph-mode fusions): only summation order differs,
# about 1e-7 relative per op, which grows with depth and with the size of the values.
TOLERANCES = {
    # log-mel in dB: 10*log10 turns float32's relative rounding of small mel powers into
    # absolute dB error, so the frontend's export compares at 0.01 dB.
    "frontend": StageTolerance(saving=None, export=0.01),
    # A backbone alone: logits (unbounded, tens of units) through tens of conv layers.
    "backbone": StageTolerance(saving=1e-5, export=1e-4),
    # GlatModel: sigmoid scores in [0, 1]; the export is the exported pair (LiteRT f32 or
    # SavedModel) run on one window by the runtime, against the Keras model's call.
    "glat_model": StageTolerance(saving=1e-6, export=1e-5),
    # Baseline (a backbone and its sigmoid): save/load restores the weights bit for bit and
    # reruns the same eager kernels in the same process, so its outputs are equal.
    "baseline": StageTolerance(saving=0.0, export=1e-5),
    # A whole file through a tagger (MediaPipe, glat_tf.Tagger, the streaming runner against
    # the exact pipeline): windows and crops are re-cut by the runtime, features reused, and
    # each piece is an f32 LiteRT run, so the errors of several runs add up.
    "tagger": StageTolerance(saving=None, export=1e-4),
    # MediaPipe's runner against the interpreter on the same .tflite file: one arithmetic.
    "mediapipe": StageTolerance(saving=None, export=1e-6),
}


def as_dict(outputs) -> dict:
    """A model's outputs as {name: numpy array} (lists and single tensors numbered)."""
    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {str(i): np.asarray(v) for i, v in enumerate(outputs)}
    return {"0": np.asarray(outputs)}


class StageTestCase:
    """The checks of keras-hub's TestCase for audio stages: run_backbone_test,
    run_model_saving_test and run_export_test, each at the stage's TOLERANCES."""

    tolerances = TOLERANCES

    def tolerance(self, stage: str, kind: str) -> float:
        value = getattr(self.tolerances[stage], kind)
        assert value is not None, f"stage {stage!r} declares no {kind} tolerance"
        return value

    def assert_outputs_close(self, got: dict, expected: dict, stage: str, keys=None,
                             kind: str = "export"):
        """`got` equals `expected` on `keys` (default: all of expected's) within the stage's
        tolerance; integer outputs (window starts, classes) exactly."""
        atol = self.tolerance(stage, kind)
        for key in expected if keys is None else keys:
            want, have = np.asarray(expected[key]), np.asarray(got[key])
            if np.issubdtype(want.dtype, np.integer):
                np.testing.assert_array_equal(have, want, err_msg=key)
            else:
                np.testing.assert_allclose(have, want, atol=atol, rtol=0, err_msg=key)

    def run_backbone_test(self, model, inputs, expected_shapes: dict, stage: str,
                          variable_inputs=(), int_outputs=(), directory=None) -> dict:
        """Inference outputs on `inputs` have `expected_shapes` ({name: shape}, None for any
        size), dtype float32 (int32 for `int_outputs`), no NaN or Inf; the config rebuilds
        the same class and config; each of `variable_inputs` (other lengths) gives the same
        output names, batch and finite values; a .keras save/load keeps the outputs
        (run_model_saving_test). Returns the outputs on `inputs` as numpy arrays."""
        out = as_dict(model(*inputs, training=False))
        assert set(expected_shapes) <= set(out), (sorted(expected_shapes), sorted(out))
        for key, shape in expected_shapes.items():
            got = out[key].shape
            assert len(got) == len(shape) and all(
                want is None or want == n for want, n in zip(shape, got)), (key, got, shape)
        self._assert_dtypes_and_finite(out, int_outputs)
        clone = model.__class__.from_config(model.get_config())
        assert type(clone) is type(model) and clone.get_config() == model.get_config()
        for other in variable_inputs:
            varied = as_dict(model(*other, training=False))
            assert varied.keys() == out.keys()
            batch = np.shape(other[0])[0]
            assert all(v.shape[0] == batch for v in varied.values()), (
                {k: v.shape for k, v in varied.items()})
            self._assert_dtypes_and_finite(varied, int_outputs)
        if isinstance(model, keras.Model):
            self.run_model_saving_test(model, inputs, stage, directory, expected=out)
        return out

    @staticmethod
    def _assert_dtypes_and_finite(out: dict, int_outputs):
        for key, value in out.items():
            want = np.int32 if key in int_outputs else np.float32
            assert value.dtype == want, (key, value.dtype)
            assert np.isfinite(value).all(), f"{key} has NaN or Inf"

    def run_model_saving_test(self, model, inputs, stage: str, directory=None, expected=None):
        """model.keras saved and loaded back is the same class with the same outputs (within
        the stage's saving tolerance). Saved into `directory` (kept) or a temporary one.
        Returns the loaded model."""
        if expected is None:
            expected = as_dict(model(*inputs, training=False))
        with tempfile.TemporaryDirectory() as scratch:
            path = pathlib.Path(directory or scratch) / "model.keras"
            model.save(path)
            loaded = keras.models.load_model(path)
        assert type(loaded) is type(model)
        got = as_dict(loaded(*inputs, training=False))
        assert got.keys() == expected.keys()
        self.assert_outputs_close(got, expected, stage, kind="saving")
        return loaded

    def run_export_test(self, fn, waveform, track, expected: dict, stage: str):
        """`fn` (reading the variables of `track`) converts as export converts it (f32,
        builtin ops only, no Flex) and, run as the edge runtime runs a model, gives
        `expected` {output: array} on `waveform` within the stage's export tolerance.
        Returns (op names, LiteRT outputs)."""
        import tensorflow as tf

        from edge_runtime.lite import LiteModel
        from export.litert_convert import op_names
        from export.tflite import convert_callable

        signature = [tf.TensorSpec(waveform.shape, tf.float32)]
        flatbuffer = convert_callable(fn, signature, track, ["f32"])["f32"]
        ops = op_names(flatbuffer)
        assert not [op for op in ops if op.startswith("Flex")], ops
        lite = LiteModel(flatbuffer, 1, waveform.shape, tuple(expected), "converted")(waveform)
        self.assert_outputs_close(lite, expected, stage)
        return ops, lite


check = StageTestCase()  # for test functions; test classes may subclass StageTestCase


def bench_module(name):
    """A bench/ script imported as a module (bench/ is not a package)."""
    import importlib.util
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
