"""glat-tf: GL-AT (global-local attention for weakly labelled audio tagging) in Keras 3."""

__version__ = "0.1.0"

from glat_tf import console as _console  # noqa: E402  before TensorFlow: quiet glat-* CLIs
_console.quiet_startup()

# Importing the models registers every class a saved .keras file names (GlatModel,
# BackboneTagger, the backbones and their layers): `import glat_tf` is enough for
# keras.saving.load_model.
from glat_tf.baseline import BackboneTagger  # noqa: E402
from glat_tf.config import FrontendConfig  # noqa: E402
from glat_tf.model import GlatModel  # noqa: E402

from glat_tf.tagger import Tagger  # noqa: E402

__all__ = ["BackboneTagger", "FrontendConfig", "GlatModel", "Tagger", "__version__"]
