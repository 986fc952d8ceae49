"""One check every layer and model test reuses: config round trip and .keras save/load."""

import keras
import numpy as np


def _as_dict(outputs):
    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {str(i): np.asarray(v) for i, v in enumerate(outputs)}
    return {"0": np.asarray(outputs)}


def assert_round_trips(obj, inputs, tmp_path, atol=0.0):
    """from_config(get_config()) rebuilds the same class; .keras save/load keeps outputs."""
    expected = _as_dict(obj(*inputs, training=False))
    clone = obj.__class__.from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    if isinstance(obj, keras.Model):
        path = tmp_path / "model.keras"
        obj.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(obj)
        got = _as_dict(loaded(*inputs, training=False))
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], atol=atol, rtol=0, err_msg=key)
    return expected


def assert_litert_matches(fn, waveform, track, expected: dict, atol=1e-4):
    """`fn` (reading the variables of `track`) converts as export converts it (f32, builtin
    ops only) and, run as the edge runtime runs a model, gives `expected` {output: array}
    on `waveform` within atol. Returns (op names, LiteRT outputs)."""
    import tensorflow as tf

    from edge_runtime.lite import LiteModel
    from export.litert_convert import op_names
    from export.tflite import convert_callable

    signature = [tf.TensorSpec(waveform.shape, tf.float32)]
    flatbuffer = convert_callable(fn, signature, track, ["f32"])["f32"]
    ops = op_names(flatbuffer)
    assert not [op for op in ops if op.startswith("Flex")], ops
    lite = LiteModel(flatbuffer, 1, waveform.shape, tuple(expected), "converted")(waveform)
    for key, value in expected.items():
        np.testing.assert_allclose(lite[key], value, atol=atol, rtol=0, err_msg=key)
    return ops, lite


def bench_module(name):
    """A bench/ script imported as a module (bench/ is not a package)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
