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

# dtype name -> (the JSON leaf type the fast path takes, the tf.DType it builds; a DType, as a name
# costs tf.constant a lookup per call).
_FAST_PATHS = {"string": (str, tf.string), "float32": (float, tf.float32), "float64": (float, tf.float64)}
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
    fast = _FAST_PATHS.get(spec.dtype)
    if fast is not None and type(value) is list and type(_first_leaf(value)) is fast[0]:
        try:
            tensor = tf.constant(value, dtype=fast[1])
        except Exception:  # noqa: BLE001 - the checked path below explains what was wrong
            tensor = None
        if tensor is not None and _fast_result_stands(tensor, fast[0]):
            return tensor
    return to_array(value, spec, where)


def _fast_result_stands(tensor: tf.Tensor, leaf_type: type) -> bool:
    """False for a result the checked path must decide (see the module docstring): a float tensor
    holding an infinity, a NaN (``max`` of an array with a NaN is NaN, and NaN < bound is False) or a
    magnitude of 2**63 or more; a string tensor with a dimension of 1 after the batch."""
    if leaf_type is float:
        return bool(np.abs(tensor.numpy()).max(initial=0.0) < _INT64_BOUND)
    return 1 not in tensor.shape.as_list()[1:]
