"""glat-tf: GL-AT (global-local attention for weakly labelled audio tagging) in Keras 3."""

import importlib.util as _util

__version__ = "0.1.0"

# The device install (`pip install ".[edge]"`) leaves TensorFlow out; say how to get it here,
# once, instead of a ModuleNotFoundError deep in some import. find_spec does not load TF.
_MISSING = [name for name in ("tensorflow", "keras") if _util.find_spec(name) is None]
if _MISSING:
    raise ImportError(f"glat_tf needs {' and '.join(_MISSING)}, which the device install leaves "
                      'out: pip install "glat-tf[train]"')


def __getattr__(name):
    # Lazy, so `glat_tf.config` or the data tools do not pay for building the model module.
    if name == "GlatModel":
        from glat_tf.model import GlatModel
        return GlatModel
    raise AttributeError(f"module 'glat_tf' has no attribute {name!r}")


__all__ = ["GlatModel", "__version__"]
