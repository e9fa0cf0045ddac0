"""GRec-TF: the Generalist Recommender (task-sentence routed sparse MoE) on TensorFlow Recommenders.

The public API, from a notebook or a script::

    import grec_tf

    experiment = grec_tf.load_experiment("configs/telecom.yaml", overrides=["data.rows=30000"])
    model = experiment.build_model()
    model.fit(experiment.dataset("train", shuffle=True), validation_data=experiment.dataset("valid"),
              epochs=experiment.config.train.epochs)
    print(grec_tf.metrics_table(experiment.evaluate(model)))
    experiment.export(model, "exports")

Importing this package is cheap: it selects Keras 2 (tf-keras) for TensorFlow, which TFRS requires, by
setting ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is loaded (and refuses to continue if TensorFlow was
already imported with ``tf.keras`` bound to Keras 3), and it keeps TensorFlow's CPU start-up noise out of
stderr (:mod:`grec_tf.native_log_filter`). TensorFlow itself loads only when a name below that needs it is
first used, so ``--help`` and configuration errors answer at once.
"""
import importlib
import os
import sys
from typing import Any

from grec_tf import native_log_filter

__version__ = "0.1.0"

#: public name -> "module:attribute", imported on first use (PEP 562)
_PUBLIC = {
    "Experiment": "grec_tf.experiment:Experiment",
    "load_experiment": "grec_tf.experiment:load_experiment",
    "load_run": "grec_tf.experiment:load_run",
    "TrainingRun": "grec_tf.training.trainer:TrainingRun",
    "build_ranker": "grec_tf.models.factory:build_ranker",
    "MultiTaskRanker": "grec_tf.models.multi_task_ranker:MultiTaskRanker",
    "metrics_table": "grec_tf.metrics.report:metrics_table",
    "ExperimentConfig": "grec_tf.config:ExperimentConfig",
    "load_config": "grec_tf.config:load_config",
    "parse_config": "grec_tf.config:parse_config",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'grec_tf' has no attribute {name!r}")
    module_name, attribute = _PUBLIC[name].split(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def _select_legacy_keras() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep oneDNN/CUDA banners out of user output
    if "tensorflow" not in sys.modules:
        native_log_filter.install()
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
