"""TF Serving columnar predict bodies read by simdjson, float tensors taken from its buffers.

Where it sits: the REST server (:mod:`grec_tf.serving.rest_server`) tries :func:`parse` on every predict
body first; a ``None`` anywhere sends the body down the checked path (``request_codec.parse_json``,
``decode_predict_request`` with :func:`~grec_tf.serving.json_tensors.to_tensor`), which also writes every
error message. So this module only has to be fast on well-formed columnar requests and never accept a
body the checked path would refuse, nor read one differently.

Why: the checked path builds a Python object for every JSON value. On the telecom model's 256-row
columnar request (448 KB, two 64-d float embeddings) that is 32,768 float objects, and parsing plus
conversion cost 1.7 ms a request, one at a time. A server that skipped both (a measuring hack) served
0.95x the in-process throughput under load, against 0.85x (``docs/serving.md``).
simdjson parses the body without building objects (0.4 ms) and copies a homogeneous numeric array into
a buffer that numpy reads (0.02 ms for 256 x 64).

What it takes, and why each rule keeps the result equal to the checked path's:

- no escape (``\\``) in the body: a ``[`` inside a string is then a literal ``[``, and simdjson's and
  orjson's string decoding cannot differ (surrogates, for one);
- a top-level object of the keys ``inputs`` (an object of exactly the signature's input names) and
  optionally ``signature_name`` (a string), each key once;
- float inputs (``DT_FLOAT``, ``DT_DOUBLE``) of known rank >= 1: nested arrays of numbers, every array
  of one level the same nonzero length, every magnitude below the largest integer the float type holds
  exactly (an integer there converts exactly, as the checked path requires; NaN and infinities fall
  back). ``as_buffer`` flattens any nesting, so a nested array where a number belongs is caught by
  counting arrays: the body's ``[`` characters must equal the arrays the shapes imply plus the ``[``
  characters inside its strings;
- every other input: simdjson's Python objects (equal to orjson's for the bodies above) through the same
  :func:`~grec_tf.serving.json_tensors.to_tensor` as the checked path; its ``ServingError`` falls back too,
  so that the checked path names the error.

``tests/serving/test_columnar_body.py`` holds both paths to the same tensors on real and fuzzed bodies.
"""
from __future__ import annotations

import threading
from itertools import chain
from math import prod
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import simdjson
import tensorflow as tf

from grec_tf.serving.json_tensors import to_tensor
from grec_tf.serving.request_codec import DEFAULT_SIGNATURE, InputSpec, shape_fits
from grec_tf.serving.status import ServingError

_OPEN_BRACKET = ord("[")
_scratch = threading.local()
_TOP_KEYS = frozenset(("inputs", "signature_name"))
# float dtype name -> (tf dtype, numpy dtype, bound: every magnitude below it holds an integer exactly)
_FLOATS = {"float32": (tf.float32, np.float32, 2.0 ** 24), "float64": (tf.float64, np.float64, 2.0 ** 53)}


class ColumnarBody:
    """A parsed columnar body whose top level passed the rules above; :meth:`tensors` converts its inputs."""

    def __init__(self, body: bytes, inputs: "simdjson.Object", signature_name: str, brackets_in_keys: int):
        self._body, self._inputs = body, inputs
        self.signature_name = signature_name
        self._brackets_in_keys = brackets_in_keys

    def tensors(self, specs: Mapping[str, InputSpec]) -> Optional[Dict[str, tf.Tensor]]:
        """``{input_name: tensor}`` with the checked path's values and shapes, or None to take that path."""
        names = list(self._inputs.keys())
        if len(names) != len(specs) or set(names) != set(specs):
            return None
        out, arrays, string_values = {}, 0, []
        try:
            for name, spec in specs.items():
                value = self._inputs[name]
                if spec.dtype in _FLOATS and type(value) is simdjson.Array:
                    tensor = _float_tensor(value, spec)
                else:
                    plain = value.as_list() if type(value) is simdjson.Array else (
                        value.as_dict() if type(value) is simdjson.Object else value)
                    tensor = to_tensor(plain, spec, f"input '{name}'")
                    if spec.dtype == "string":
                        string_values.append(plain)
                shape = None if tensor is None else tuple(tensor.shape)
                if shape is None or not shape_fits(shape, spec.shape):  # check_shape's rule; a refusal falls back
                    return None
                arrays += _arrays_of_shape(shape)
                out[name] = tensor
        except (ServingError, ValueError, TypeError, RuntimeError):
            return None  # the checked path decides, and names the error
        brackets = _count_open_brackets(self._body)
        if brackets == arrays + self._brackets_in_keys:
            return out
        # Strings may hold "[" too; counted only when the body has more "[" than the arrays and keys explain.
        in_strings = [_brackets_in_strings(v) for v in string_values]
        if None in in_strings or brackets != arrays + self._brackets_in_keys + sum(in_strings):
            return None  # an array where a number belongs (as_buffer flattened it)
        return out


def parse(body: bytes) -> Optional[ColumnarBody]:
    """The body's columnar top level, or None when the fast path does not take it (see the module)."""
    if b"\\" in body or b'"inputs"' not in body:
        return None
    try:
        doc = simdjson.Parser().parse(body)
    except (ValueError, RuntimeError, TypeError):
        return None
    if type(doc) is not simdjson.Object:
        return None
    keys = list(doc.keys())
    if len(keys) != len(set(keys)) or not set(keys) <= _TOP_KEYS or "inputs" not in keys:
        return None
    inputs = doc["inputs"]
    if type(inputs) is not simdjson.Object:
        return None
    input_keys = list(inputs.keys())
    if len(input_keys) != len(set(input_keys)) or input_keys == ["b64"]:
        return None  # a duplicate name, or a {"b64": ...} binary value (a single input's bare value)
    name = doc["signature_name"] if "signature_name" in keys else DEFAULT_SIGNATURE
    if type(name) is not str:
        return None
    brackets = sum(k.count("[") for k in chain(keys, input_keys)) + name.count("[")
    return ColumnarBody(body, inputs, name or DEFAULT_SIGNATURE, brackets)


def _float_tensor(value: "simdjson.Array", spec: InputSpec) -> Optional[tf.Tensor]:
    """A float input's tensor from simdjson's buffer, or None unless every rule of the module holds."""
    if spec.shape is None or not spec.shape:
        return None
    dims = _rectangular_dims(value, len(spec.shape))
    if dims is None:
        return None
    flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
    tf_dtype, np_dtype, bound = _FLOATS[spec.dtype]
    if flat.size != prod(dims) or not np.abs(flat).max(initial=0.0) < bound:
        return None
    return tf.constant(flat.reshape(dims).astype(np_dtype, copy=False), dtype=tf_dtype)


def _rectangular_dims(value: "simdjson.Array", rank: int) -> Optional[Tuple[int, ...]]:
    """The dims of ``rank`` levels of nested arrays, each level's arrays all of one nonzero length; else None.
    (A string or an object of that length passes here and fails ``as_buffer``; what lies below the
    last level is checked by the caller's counts.)"""
    dims, level = [], [value]
    for depth in range(rank):
        try:
            lengths = set(map(len, level))
        except TypeError:  # a number where an array belongs
            return None
        if len(lengths) != 1 or 0 in lengths:
            return None
        dims.append(lengths.pop())
        if depth + 1 < rank:
            level = [a for parent in level for a in parent]
    return tuple(dims)


def _arrays_of_shape(shape: Tuple[int, ...]) -> int:
    """JSON arrays in a rectangular nested list of ``shape``: 1 + d0 + d0*d1 + ... (none for a scalar)."""
    count, width = 0, 1
    for d in shape:
        count += width
        width *= d
    return count


def _brackets_in_strings(value: Any) -> Optional[int]:
    """``[`` characters inside a string input's value: a string (rank 0), a list of strings (rank 1) or a
    list of lists of strings (rank 2); None for anything else ({"b64": ...} objects, deeper nesting)."""
    if type(value) is str:
        return value.count("[")
    if type(value) is not list:
        return None
    try:
        flat = chain.from_iterable(value) if value and type(value[0]) is list else value
        return "".join(flat).count("[")
    except TypeError:
        return None


def _count_open_brackets(body: bytes) -> int:
    """``body.count(b"[")`` at a quarter of its CPU, into a per-thread buffer (no 0.5 MB allocation a request)."""
    scratch = getattr(_scratch, "mask", None)
    if scratch is None or scratch.size < len(body):
        scratch = _scratch.mask = np.empty(max(len(body), 1 << 20), dtype=bool)
    mask = scratch[:len(body)]
    np.equal(np.frombuffer(body, dtype=np.uint8), _OPEN_BRACKET, out=mask)
    return int(np.count_nonzero(mask))
