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


def bench_module(name):
    """A bench/ script imported as a module (bench/ is not a package)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
