"""GRec-TF: the Generalist Recommender (task-sentence routed sparse MoE) on TensorFlow Recommenders.

Importing this package selects Keras 2 (tf-keras) for TensorFlow, which TFRS requires: it sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is loaded, and refuses to continue if TensorFlow was
already imported and bound ``tf.keras`` to Keras 3.
"""
import os
import sys

__version__ = "0.1.0"


def _select_legacy_keras() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep oneDNN/CUDA banners out of user output
    if "tensorflow" not in sys.modules:
        return
    # TensorFlow resolves tf.keras lazily on first attribute access, so setting the variable
    # still helps when TF is imported but tf.keras was never touched; check what it bound to.
    import tensorflow as tf

    bound_to = getattr(tf.keras, "__name__", "")
    if not bound_to.startswith("tf_keras"):
        raise ImportError(
            "grec_tf needs Keras 2 (tf-keras), but TensorFlow was imported before grec_tf and bound "
            f"tf.keras to Keras 3 ({bound_to}). Import grec_tf before tensorflow, or set "
            "TF_USE_LEGACY_KERAS=1 in the environment before starting Python."
        )


_select_legacy_keras()
