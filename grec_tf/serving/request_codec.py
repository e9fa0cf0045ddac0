"""JSON <-> tensor conversion of TF Serving's REST predict API (``api_rest.md``), numpy-vectorized.

Requests (``POST .../models/NAME[/versions/N]:predict``) carry either
- ``"instances"`` (row format): a list with one entry per example; with several named inputs each
  entry is an object ``{input_name: value}``; every entry must give an input the same shape. The
  tensor fed to the model is ``[len(instances)] + entry shape``. Answered as ``{"predictions": ...}``:
  a list of values when the signature has one output, else a list of ``{output_name: value}``.
- ``"inputs"`` (columnar format): an object ``{input_name: nested list}`` (or the bare value when
  the signature has a single input), each value being the whole tensor. Answered as
  ``{"outputs": ...}``: the bare tensor when the signature has one output, else an object.

Values follow TF Serving's JSON mapping: numbers for ints and floats (``NaN``/``Infinity`` accepted),
``true``/``false`` for bool, strings for ``DT_STRING``, and ``{"b64": "..."}`` for binary strings;
output tensors whose name ends in ``_bytes`` are written as ``{"b64": ...}``. Conversion is checked
against the signature's input specs - dtype, rank, fixed dimensions, equal shapes across rows - and
every error names the input at fault and what was expected.

This module uses numpy only (no TensorFlow): :class:`InputSpec` describes an input by dtype name
and shape.
"""
import base64
import binascii
import json
import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from grec_tf.serving.status import ServingError, invalid_argument

try:  # orjson parses and writes JSON (and numpy arrays) several times faster than the stdlib
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _orjson = None

ROW = "row"
COLUMNAR = "columnar"
DEFAULT_SIGNATURE = "serving_default"

# tf.DType.name -> TF Serving's DataType name (used in messages and metadata).
TF_DTYPE_NAMES = {
    "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
    "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
    "bool": "DT_BOOL", "string": "DT_STRING",
}
_FLOAT_TYPES = {"float16": np.float16, "bfloat16": np.float32, "float32": np.float32, "float64": np.float64}
# Largest integer each float type holds exactly; TF Serving refuses lossy int -> float conversions.
_FLOAT_EXACT_INT = {"float16": 2 ** 11, "bfloat16": 2 ** 8, "float32": 2 ** 24, "float64": 2 ** 53}
_INT_TYPES = {n: getattr(np, n) for n in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")}


@dataclass(frozen=True)
class InputSpec:
    """One named input of a signature: ``dtype`` is a ``tf.DType.name``; ``shape`` has ``None`` for
    unknown dimensions, and is ``None`` itself when the rank is unknown."""
    name: str
    dtype: str
    shape: Optional[Tuple[Optional[int], ...]]

    @property
    def tf_type(self) -> str:
        return TF_DTYPE_NAMES.get(self.dtype, self.dtype)

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.tf_type} of any shape"
        dims = ", ".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.tf_type} of shape [{dims}]"


# --------------------------------------------------------------------------------------- parsing
def parse_json(body: bytes) -> Any:
    """Parse a request body; ``NaN``/``Infinity``/``-Infinity`` tokens are accepted like TF Serving."""
    if not body or not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    if _orjson is not None:
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError as e:
            first_error = e  # orjson rejects NaN/Infinity; the stdlib parser accepts them
        except RecursionError:
            raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    else:
        first_error = None
    try:
        return json.loads(body)
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid_argument(f"JSON Parse error: {first_error or e}") from None


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, allow_nan=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return type(value).__name__


def is_b64_object(value: Any) -> bool:
    """``{"b64": "<base64 string>"}`` with that single key, as TF Serving defines binary values."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def read_signature_name(doc: Any) -> str:
    """Validate the top level of a predict request and return its signature name."""
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_short(doc)} Is not object; expected a JSON object "
                               "with 'instances' (row format) or 'inputs' (columnar format)")
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {_short(name)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name or DEFAULT_SIGNATURE


# ------------------------------------------------------------------------------ value conversion
def _where(name: str, fmt: str) -> str:
    return f"input '{name}'" + (" of 'instances'" if fmt == ROW else "")


def _shape_of(value: Any) -> Tuple[int, ...]:
    """Shape implied by the first element at every nesting level (TF Serving's GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _fmt_shape(shape: Sequence[Optional[int]]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def _walk(value: Any, leaf, where: str) -> Tuple[List[Any], Tuple[int, ...]]:
    """Flatten a dense nested list, converting leaves with ``leaf``; precise errors when ragged."""
    shape = _shape_of(value)
    flat: List[Any] = []

    def visit(v: Any, level: int) -> None:
        if isinstance(v, list):
            if level >= len(shape):
                raise invalid_argument(f"{where}: found a list nested {level + 1} deep where a value was "
                                       f"expected (the first element implies shape {_fmt_shape(shape)}); "
                                       "lists must be dense, not ragged")
            if len(v) != shape[level]:
                raise invalid_argument(f"{where}: found a list of length {len(v)} at nesting level {level} "
                                       f"where {shape[level]} was expected (the first element implies shape "
                                       f"{_fmt_shape(shape)}); lists must be dense, not ragged - pad "
                                       "sequences to a common length")
            for x in v:
                visit(x, level + 1)
        else:
            if level != len(shape):
                raise invalid_argument(f"{where}: found value {_short(v)} at nesting level {level} where a "
                                       f"list was expected (the first element implies shape "
                                       f"{_fmt_shape(shape)}); lists must be dense, not ragged")
            flat.append(leaf(v))

    visit(value, 0)
    return flat, shape


def _string_leaf(where: str):
    def leaf(v: Any) -> bytes:
        if type(v) is str:
            return v.encode("utf-8", "surrogatepass")
        if is_b64_object(v):
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument(f"{where}: unable to base64 decode {_short(v)}") from None
        raise invalid_argument(f"{where}: JSON Value: {_short(v)} Type: {_json_type(v)} is not of expected "
                               "type: DT_STRING (a JSON string, or {\"b64\": \"...\"} for binary data)")
    return leaf


def _object_array(flat: List[Any], shape: Tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


def _to_strings(value: Any, where: str) -> np.ndarray:
    # Fast paths for [n] and [n, L] lists of strings (JSON strings are the only values with .encode);
    # anything else - b64 objects, deeper nesting, ragged rows, wrong types - takes the checked walk.
    if type(value) is list:
        try:
            if not value or type(value[0]) is not list:
                return _object_array([v.encode("utf-8", "surrogatepass") for v in value], (len(value),))
            width = len(value[0])
            if all(type(row) is list and len(row) == width for row in value):
                flat = [v.encode("utf-8", "surrogatepass") for row in value for v in row]
                return _object_array(flat, (len(value), width))
        except AttributeError:
            pass
    flat, shape = _walk(value, _string_leaf(where), where)
    return _object_array(flat, shape)


def _diagnose_numeric(value: Any, spec: InputSpec, where: str) -> ServingError:
    """Explain why a value did not convert to a dense numeric array (slow path, errors only)."""
    def leaf(v: Any) -> Any:
        ok = (type(v) is bool) if spec.dtype == "bool" else (type(v) in (int, float))
        if not ok:
            raise invalid_argument(f"{where}: JSON Value: {_short(v)} Type: {_json_type(v)} is not of "
                                   f"expected type: {spec.tf_type}")
        if type(v) is int and spec.dtype in _INT_TYPES:
            info = np.iinfo(_INT_TYPES[spec.dtype])
            if not info.min <= v <= info.max:
                raise invalid_argument(f"{where}: JSON Value: {v} is out of the range of {spec.tf_type}")
        if type(v) is int and spec.dtype in _FLOAT_TYPES and abs(v) > _FLOAT_EXACT_INT[spec.dtype]:
            raise invalid_argument(f"{where}: Cannot convert JSON value: {v} to {spec.dtype} without loss "
                                   "of precision.")
        return v
    _walk(value, leaf, where)
    return invalid_argument(f"{where}: could not convert {_short(value)} to {spec.tf_type}")


def _first(arr: np.ndarray, mask: np.ndarray) -> Any:
    idx = np.flatnonzero(mask)
    return arr.reshape(-1)[idx[0] if idx.size else 0].item()


def _to_numeric(value: Any, spec: InputSpec, where: str) -> np.ndarray:
    try:
        arr = np.array(value)
    except (ValueError, OverflowError, RecursionError):
        raise _diagnose_numeric(value, spec, where) from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise _diagnose_numeric(value, spec, where)
    if arr.size == 0:
        return arr.astype(_FLOAT_TYPES.get(spec.dtype) or _INT_TYPES.get(spec.dtype) or np.bool_)
    dt = spec.dtype
    if dt == "bool":
        if kind != "b":
            raise invalid_argument(f"{where}: JSON Value: {_short(arr.reshape(-1)[0].item())} Type: Number is "
                                   "not of expected type: DT_BOOL (true or false)")
        return arr
    if kind == "b":
        raise invalid_argument(f"{where}: JSON Value: {_short(arr.reshape(-1)[0].item())} Type: "
                               f"{'True' if arr.reshape(-1)[0] else 'False'} is not of expected type: {spec.tf_type}")
    if dt in _INT_TYPES:
        if kind == "f":
            bad = _first(arr, arr != np.floor(arr))
            raise invalid_argument(f"{where}: JSON Value: {_short(bad)} Type: Number (decimal) is not of "
                                   f"expected type: {spec.tf_type} (write integers without a decimal point)")
        info = np.iinfo(_INT_TYPES[dt])
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise invalid_argument(f"{where}: JSON Value: {bad} is out of the range of {spec.tf_type}")
        return arr.astype(_INT_TYPES[dt], copy=False)
    if dt in _FLOAT_TYPES:
        target = _FLOAT_TYPES[dt]
        if kind in "iu":
            limit = _FLOAT_EXACT_INT[dt]
            big = np.abs(arr) > limit
            if big.any():
                raise invalid_argument(f"{where}: Cannot convert JSON value: {_first(arr, big)} to {dt} "
                                       "without loss of precision.")
            return arr.astype(target)
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(target, copy=False)
        if target is not np.float64:
            overflow = np.isinf(out) & np.isfinite(arr)
            if overflow.any():
                raise invalid_argument(f"{where}: Cannot convert JSON value: {_first(arr, overflow)} to {dt} "
                                       "without loss of precision.")
        return out
    raise ServingError(f"{where}: conversion of JSON values to {spec.tf_type} is not supported", "UNIMPLEMENTED")


def to_array(value: Any, spec: InputSpec, where: str) -> np.ndarray:
    """Convert one JSON value (nested lists) to a numpy array of ``spec``'s dtype (strings as bytes)."""
    if spec.dtype == "string":
        return _to_strings(value, where)
    if is_b64_object(value) or isinstance(value, dict):
        raise invalid_argument(f"{where}: JSON Value: {_short(value)} Type: Object is not of expected type: "
                               f"{spec.tf_type}")
    return _to_numeric(value, spec, where)


# (value, spec, where) -> a dense array-like with .shape/.ndim; raises ServingError naming ``where``.
Converter = Callable[[Any, InputSpec, str], Any]


def shape_fits(shape: Sequence[Optional[int]], dims: Optional[Sequence[Optional[int]]]) -> bool:
    """Whether ``shape`` fits a signature input's ``dims`` (None: any rank): the same rank, and every
    fixed dim equal."""
    return dims is None or (len(shape) == len(dims) and all(d is None or d == a for d, a in zip(dims, shape)))


def check_shape(arr: Any, spec: InputSpec, name: str, fmt: str) -> None:
    if shape_fits(arr.shape, spec.shape):
        return
    if fmt == ROW:
        want = _fmt_shape(spec.shape[1:]) if spec.shape else "[] (a scalar)"
        raise invalid_argument(
            f"input '{name}': each instance must hold a value of shape {want} (the signature expects "
            f"{spec.describe()}, batch first), but the instances give shape {_fmt_shape(arr.shape[1:])} "
            f"(batch tensor {_fmt_shape(arr.shape)})")
    raise invalid_argument(f"input '{name}': expected {spec.describe()} (rank {len(spec.shape)}), got a tensor of "
                           f"shape {_fmt_shape(arr.shape)} (rank {arr.ndim})")


def _row_column(column: List[Any], name: str, spec: InputSpec, convert: Converter) -> Any:
    where = _where(name, ROW)
    try:
        return convert(column, spec, where)
    except ServingError:
        # Name the first instance whose shape differs from the first one: the usual mistake is a
        # sequence of a different length in some row (ragged batch).
        first_shape = _shape_of(column[0])
        for i, item in enumerate(column[1:], start=1):
            shape = _shape_of(item)
            if shape != first_shape:
                raise invalid_argument(
                    f"input '{name}': element {i} of 'instances' has shape {_fmt_shape(shape)} but element 0 has "
                    f"shape {_fmt_shape(first_shape)}; in row format every instance must give an input the "
                    "same shape (pad sequences to a common length, or use the columnar 'inputs' format)"
                ) from None
        raise


def decode_predict_request(doc: Mapping[str, Any], specs: Mapping[str, InputSpec], signature_name: str,
                           convert: Converter = to_array) -> Tuple[Dict[str, Any], str]:
    """Convert a parsed predict request to ``({input_name: array}, ROW | COLUMNAR)``.

    ``convert`` turns one input's JSON value (the whole column) into a dense array: numpy via
    :func:`to_array` by default; the server passes
    :func:`grec_tf.serving.json_tensors.to_tensor`, which builds ``tf.Tensor`` s directly."""
    if not specs:
        raise invalid_argument(f"Failed to get input map for signature: {signature_name}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument("Not formatted correctly: expecting only one of 'inputs' or 'instances' keys "
                               "to exist, got both")
    if not has_instances and not has_inputs:
        raise invalid_argument("Missing 'inputs' or 'instances' key: send {\"instances\": [...]} (row format) or "
                               f"{{\"inputs\": {{...}}}} (columnar format); signature '{signature_name}' takes "
                               f"{expected_inputs(specs)}")
    if has_instances:
        return _decode_instances(doc["instances"], specs, signature_name, convert), ROW
    return _decode_inputs(doc["inputs"], specs, signature_name, convert), COLUMNAR


def expected_inputs(specs: Mapping[str, InputSpec]) -> str:
    """``'name' (DT_FLOAT of shape [-1, 3]), ...``: built only when an error message needs it, not per request."""
    return ", ".join(f"'{n}' ({s.describe()})" for n, s in specs.items())


def _is_object(value: Any) -> bool:
    """A JSON object other than a ``{"b64": ...}`` binary value: named inputs, not one input's value."""
    return isinstance(value, dict) and not is_b64_object(value)


def _only_input(specs: Mapping[str, InputSpec], signature_name: str, sent: str) -> Tuple[str, InputSpec]:
    """The signature's one input, for a request that sent a single unnamed value (``sent`` says how)."""
    if len(specs) > 1:
        raise invalid_argument(f"{sent} as multiple input tensors required as per tensorinfo_map: signature "
                               f"'{signature_name}' takes {expected_inputs(specs)}")
    (name, spec), = specs.items()
    return name, spec


def _decode_input(value: Any, name: str, spec: InputSpec, fmt: str, convert: Converter) -> Any:
    """One input's whole JSON value (a row-format column or a columnar tensor) -> a dense array whose
    shape the signature accepts."""
    arr = _row_column(value, name, spec, convert) if fmt == ROW else convert(value, spec, _where(name, fmt))
    check_shape(arr, spec, name, fmt)
    return arr


def _decode_instances(instances: Any, specs: Mapping[str, InputSpec], signature_name: str,
                      convert: Converter) -> Dict[str, Any]:
    """Row format: ``instances`` (one entry per example) -> ``{input_name: batch array}``."""
    if not isinstance(instances, list):
        raise invalid_argument("Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' array")
    if not _is_object(instances[0]):
        name, spec = _only_input(specs, signature_name,
                                 "instances is a plain list, but expecting list of objects")
        for i, inst in enumerate(instances):
            if _is_object(inst):
                raise invalid_argument(f"Expecting value/list but got object at item {i} of input list")
        return {name: _decode_input(instances, name, spec, ROW, convert)}
    columns = _instance_columns(instances, list(specs))
    if columns is None:  # some instance is not a plain dict of exactly the input names
        _check_instance_keys(instances, specs, signature_name)  # raises, naming it (unless dict subclasses)
        columns = [[inst[name] for inst in instances] for name in specs]
    return {name: _decode_input(column, name, spec, ROW, convert)
            for (name, spec), column in zip(specs.items(), columns)}


def _instance_columns(instances: List[Any], names: List[str]) -> Optional[List[List[Any]]]:
    """Row format's instances -> one list per input, in ``names`` order; None unless every instance
    is a dict with exactly those keys (a dict of len(names) keys that holds every name).

    One ``itemgetter`` pass and a ``zip`` transpose: 0.5x the CPU of a key-set comparison per instance
    followed by a list comprehension per input (256 instances of 20 inputs: 79 us vs 149 us)."""
    count = len(names)
    if not all(type(inst) is dict and len(inst) == count for inst in instances):
        return None
    try:
        rows = list(map(operator.itemgetter(*names), instances))
    except KeyError:
        return None
    if count == 1:  # itemgetter of one key gives the value itself, not a 1-tuple
        return [rows]
    return [list(column) for column in zip(*rows)]


def _check_instance_keys(instances: List[Any], specs: Mapping[str, InputSpec], signature_name: str) -> None:
    """Every instance must be an object whose keys are exactly the signature's input names."""
    names = set(specs)
    for i, inst in enumerate(instances):
        if type(inst) is dict and inst.keys() == names:
            continue  # the common case, checked cheaply
        if not _is_object(inst):
            raise invalid_argument(f"Expecting object but got {_json_type(inst)} at item {i} of input list")
        if inst.keys() == names:
            continue
        missing = sorted(names - inst.keys())
        extra = sorted(inst.keys() - names)
        parts = []
        if missing:
            parts.append("missing input(s) " + ", ".join(f"'{n}'" for n in missing))
        if extra:
            parts.append("unexpected key(s) " + ", ".join(f"'{n}'" for n in extra))
        raise invalid_argument(f"Failed to process element: {i} of 'instances' list: "
                               f"{'; '.join(parts)}; keys must be equal to: {','.join(sorted(names))} "
                               f"(signature '{signature_name}' takes {expected_inputs(specs)})")


def _decode_inputs(inputs: Any, specs: Mapping[str, InputSpec], signature_name: str,
                   convert: Converter) -> Dict[str, Any]:
    """Columnar format: ``inputs`` (the bare tensor of a single input, or ``{input_name: tensor}``)."""
    if not _is_object(inputs):
        name, spec = _only_input(specs, signature_name, "inputs is a plain value/list, but expecting an object")
        return {name: _decode_input(inputs, name, spec, COLUMNAR, convert)}
    tensors: Dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object (signature "
                                   f"'{signature_name}' takes {expected_inputs(specs)})")
        tensors[name] = _decode_input(inputs[name], name, spec, COLUMNAR, convert)
    return tensors


# ------------------------------------------------------------------------------------- encoding
def _output_value(name: str, arr: np.ndarray) -> Tuple[Any, bool]:
    """Return (JSON-ready value, has_non_finite). Numeric arrays stay numpy (serialized by orjson)."""
    if arr.dtype == object or arr.dtype.kind in "SU":
        as_b64 = name.endswith("_bytes")

        def conv(b: Any) -> Any:
            if isinstance(b, str):
                b = b.encode("utf-8")
            if as_b64:
                return {"b64": base64.b64encode(b).decode("ascii")}
            return b.decode("utf-8", errors="replace")
        flat = [conv(b) for b in arr.reshape(-1)]
        return (_object_array(flat, arr.shape).tolist() if arr.ndim else flat[0]), False
    if arr.dtype.kind not in "biuf" or arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    non_finite = arr.dtype.kind == "f" and not np.isfinite(arr).all()
    return np.ascontiguousarray(arr), non_finite


def dump_json(doc: Any, non_finite: bool = False) -> bytes:
    """Serialize (numpy arrays included); ``non_finite`` selects the stdlib writer for NaN/Infinity."""
    if _orjson is not None and not non_finite:
        return _orjson.dumps(doc, option=_orjson.OPT_SERIALIZE_NUMPY)

    def plain(x: Any) -> Any:  # stdlib json: numpy -> lists; writes NaN/Infinity like TF Serving
        if isinstance(x, np.ndarray) or isinstance(x, np.generic):
            return x.tolist()
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x
    return json.dumps(plain(doc), allow_nan=True, separators=(",", ":")).encode("utf-8")


def encode_predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """Write ``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar) like TF Serving."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    values, non_finite = {}, False
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        values[name], nf = _output_value(name, arr)
        non_finite = non_finite or nf
    if fmt == COLUMNAR:
        body = next(iter(values.values())) if len(values) == 1 else values
        return dump_json({"outputs": body}, non_finite)
    batch = None
    for name, arr in outputs.items():
        shape = np.shape(arr)
        if not shape:
            raise invalid_argument(f"Tensor name: {name} has no shape information; row format ('instances') needs "
                                   "every output batched - use the columnar 'inputs' format for this signature")
        if batch is not None and shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: "
                                   f"{batch}; use the columnar 'inputs' format for this signature")
        batch = shape[0]
    if len(values) == 1:
        return dump_json({"predictions": next(iter(values.values()))}, non_finite)
    names = list(values)
    cols = [values[n] for n in names]
    rows = [{n: c[i] for n, c in zip(names, cols)} for i in range(batch)]
    return dump_json({"predictions": rows}, non_finite)


def error_body(message: str) -> bytes:
    """``{"error": "<message>"}``, TF Serving's error body."""
    return json.dumps({"error": message}).encode("utf-8")
