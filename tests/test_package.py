"""The package selects Keras 2 (tf-keras) for TensorFlow, as TFRS requires."""
import os
import subprocess
import sys

ENV = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)


def test_import_selects_tf_keras():
    result = _run("import grec_tf, os, tensorflow as tf; "
                  "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    flag, module = result.stdout.split()
    assert flag == "1" and module.startswith("tf_keras")


def test_import_after_keras3_fails_clearly():
    result = _run("import tensorflow as tf; tf.keras.layers; import grec_tf")
    assert result.returncode != 0
    assert "grec_tf needs Keras 2 (tf-keras)" in result.stderr
    assert "Import grec_tf before tensorflow" in result.stderr
