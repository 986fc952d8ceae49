"""glat-export; it needs the [train] extra. Checked without importing glat_tf: the TF Serving
answerer (export/serving_answer.py) runs where only TensorFlow is installed."""

import importlib.util as _util

_MISSING = [name for name in ("tensorflow", "keras") if _util.find_spec(name) is None]
if _MISSING:
    raise ImportError(f"glat_tf needs {' and '.join(_MISSING)}, which the device install leaves "
                      'out: pip install "glat-tf[train]"')
