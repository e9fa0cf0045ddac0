"""Keeps TensorFlow's start-up noise on CPU machines out of the user's terminal.

Importing TensorFlow writes a handful of native log lines to file descriptor 2 *before* absl logging is
initialized, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them: "All log messages before
absl::InitializeLog()...", "oneDNN custom operations are on", "Could not find cuda drivers", the CPU
feature banner and, when the first device is created, "failed call to cuInit". On a machine without a GPU
they are noise that hides the lines a user needs.

:class:`QuietTensorFlowImport` is a ``sys.meta_path`` finder that wraps the import of the top-level
``tensorflow`` module (and its first device initialization) in :func:`filtered_stderr`: fd 2 is captured to
a temporary file and every captured line that does not match :data:`NOISE` is written back, so real errors
still reach the terminal. It imports nothing heavy itself.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from typing import Iterator

#: Native start-up lines that carry no information on a CPU machine.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|cpu_feature_guard|To enable the following instructions|"
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning")


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures fd 2 for the duration of the block and replays every line that is not :data:`NOISE`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            # The cuInit probe runs when the first device is created; do it here, inside the filter.
            module.config.list_physical_devices()


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the regular machinery and loads it inside :func:`filtered_stderr`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Puts :class:`QuietTensorFlowImport` first on ``sys.meta_path`` (once; no-op after TF is loaded)."""
    if "tensorflow" in sys.modules or any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, QuietTensorFlowImport())
