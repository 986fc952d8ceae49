"""glat-tf: GL-AT (global-local attention for weakly labelled audio tagging) in Keras 3."""

import importlib.util as _util

__version__ = "0.1.0"

# The device install (`pip install ".[edge]"`) leaves TensorFlow out; say how to get it here,
# once, instead of a ModuleNotFoundError deep in some import. find_spec does not load TF.
_MISSING = [name for name in ("tensorflow", "keras") if _util.find_spec(name) is None]
if _MISSING:
    raise ImportError(f"glat_tf needs {' and '.join(_MISSING)}, which the device install leaves "
                      'out: pip install "glat-tf[train]"')

from glat_core import console as _console  # noqa: E402  before TensorFlow: quiet glat-* CLIs
_console.quiet_startup()

# Importing the models registers every class a saved .keras file names (GlatModel,
# Baseline, the backbones and their layers): `import glat_tf` is enough for
# keras.saving.load_model.
from glat_tf.baseline import Baseline  # noqa: E402
from glat_tf.config import FrontendConfig  # noqa: E402
from glat_tf.model import GlatModel  # noqa: E402

from glat_core.tagger import Tagger  # noqa: E402

__all__ = ["Baseline", "FrontendConfig", "GlatModel", "Tagger", "__version__"]
