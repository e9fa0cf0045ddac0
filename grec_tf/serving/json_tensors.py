"""JSON request values -> ``tf.Tensor``: TF's C++ list conversion where it is exact, the codec's checks elsewhere.

:func:`grec_tf.serving.request_codec.to_array` checks every JSON value against TF Serving's rules in
numpy, element by element in Python for strings and through a float64 detour for numbers. For the
values a well-formed request carries - lists of JSON strings for ``DT_STRING`` inputs, lists of JSON
decimals for ``DT_FLOAT``/``DT_DOUBLE`` inputs - ``tf.constant`` builds the same tensor in C++, 3-4x
faster (a 256 x 64 float list: 63 us vs 265 us; 256 x 12 strings: 35 us vs 165 us). It is used only
where it cannot differ from the checked path:

- the first leaf decides: a list whose first leaf is a ``str`` (string input) or a ``float`` (float
  input); lists of ints (exactness checks apply), bools, objects (``{"b64": ...}``) and empty lists
  take the checked path;
- anything ``tf.constant`` refuses (a number among strings, ragged rows, ...) is converted again
  by the checked path, which gives the error message; so is a float result holding an infinity (an
  overflow, which TF Serving refuses, or an ``Infinity`` token), a NaN or a magnitude of 2**63 or
  more (an int the checked path refuses as inexact), and a string result with a dimension
  of 1 after the batch (``tf.constant`` reads a string where a one-element list belongs as that
  list: ``[["a"], "b"]`` becomes ``[[a], [b]]``, where TF Serving refuses the ragged value).

``tests/serving/test_json_tensors.py`` holds both paths to the same tensors and the same errors.
"""
from typing import Any, Union

import numpy as np
import tensorflow as tf

from grec_tf.serving.request_codec import InputSpec, to_array

_FAST_LEAF_TYPES = {"string": str, "float32": float, "float64": float}
# The checked path converts through numpy, which cannot hold an int beyond int64 and refuses it as
# inexact; a float result at or beyond this bound (or NaN) is handed to it to decide.
_INT64_BOUND = 2.0 ** 63


def _first_leaf(value: Any) -> Any:
    while type(value) is list:
        if not value:
            return None
        value = value[0]
    return value


def to_tensor(value: Any, spec: InputSpec, where: str) -> Union[tf.Tensor, np.ndarray]:
    """Convert one JSON value to ``spec``'s dtype: a ``tf.Tensor`` on the fast path, else
    :func:`~grec_tf.serving.request_codec.to_array`'s numpy array (or its ``ServingError``)."""
    leaf_type = _FAST_LEAF_TYPES.get(spec.dtype)
    if leaf_type is not None and type(value) is list and type(_first_leaf(value)) is leaf_type:
        try:
            tensor = tf.constant(value, dtype=spec.dtype)
        except Exception:  # noqa: BLE001 - the checked path below explains what was wrong
            tensor = None
        if tensor is not None and ((np.abs(tensor.numpy()) < _INT64_BOUND).all() if leaf_type is float
                                   else 1 not in tensor.shape[1:]):
            return tensor
    return to_array(value, spec, where)
