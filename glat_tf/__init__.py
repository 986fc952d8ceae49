"""glat-tf: GL-AT (global-local attention for weakly labelled audio tagging) in Keras 3."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so `glat_tf.config` or the data tools do not pay for building the model module.
    if name == "GlatModel":
        from glat_tf.model import GlatModel
        return GlatModel
    raise AttributeError(f"module 'glat_tf' has no attribute {name!r}")


__all__ = ["GlatModel", "__version__"]
