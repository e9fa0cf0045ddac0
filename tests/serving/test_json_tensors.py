"""The server's JSON -> tensor fast path gives exactly what the checked numpy path gives, errors included."""
import base64

import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.serving.json_tensors import to_tensor
from grec_tf.serving.request_codec import InputSpec, decode_predict_request, to_array
from grec_tf.serving.status import ServingError

WHERE = "input 'x'"
STRING_VALUES = [
    ["a", "b"], [["home", "phones", ""], ["deals", "", ""]], ["é", "日本", "\U0001F4F1"], ["\ud800"],
    ["a", 1], ["a", None], ["a", True], ["a", 2.5], ["a", {"b64": "YQ=="}], [{"b64": "YQ=="}, "a"],
    ["a", ["b"]], [["a"], ["b", "c"]], [["a"], "b"], [["a", 2.5]], [], [[]], "abc", [{"b64": "not base64!"}],
]
FLOAT_VALUES = [
    [1.5, 2], [1.5, -0.0, 3.25e-30], [[0.5, 1], [2, 3.25]], [1.5, True], [True, 1.5], [1.5, "x"], [1.5, None],
    [1e39, 1.0], [1.0, 1e39], [1.5, float("inf")], [float("-inf")], [float("nan"), 1.0], [[0.5], [1.0, 2.0]],
    [1.5, 2 ** 70], [1.5, 2 ** 25 + 1], [3, 1.5], [2 ** 25 + 1, 1.5], [[1.5, [2.0]]], [1.5, {"b64": "AA=="}],
    [], [[]], 3.0, [[0.5, 1.0]], [1.7976931348623157e308, 0.5],
]
CASES = ([(v, InputSpec("x", "string", s)) for v in STRING_VALUES for s in [(None,), (None, None)]]
         + [(v, InputSpec("x", d, s)) for v in FLOAT_VALUES for d in ("float32", "float64")
            for s in [(None,), (None, 2)]]
         + [([1, 2], InputSpec("x", "int64", (None,))), ([True], InputSpec("x", "bool", (None,))),
            ([1.5], InputSpec("x", "int64", (None,)))])


def _outcome(convert, value, spec):
    try:
        out = convert(value, spec, WHERE)
    except ServingError as e:
        return "error", e.code, str(e)
    return "ok", out.numpy() if isinstance(out, tf.Tensor) else out


@pytest.mark.parametrize("value,spec", CASES, ids=[f"{s.dtype}-{i}" for i, (_, s) in enumerate(CASES)])
def test_fast_path_equals_the_checked_path(value, spec):
    fast, checked = _outcome(to_tensor, value, spec), _outcome(to_array, value, spec)
    assert fast[0] == checked[0], (fast, checked)
    if fast[0] == "error":
        assert fast == checked
    else:
        assert fast[1].dtype == checked[1].dtype and fast[1].shape == checked[1].shape
        np.testing.assert_array_equal(fast[1], checked[1])


@pytest.mark.parametrize("value,dtype", [
    (["a", "b"], "string"), ([["a", ""], ["b", "c"]], "string"), ([1.5, 2], "float32"),
    ([[0.5, 1], [2.25, 3]], "float64"),
])
def test_well_formed_values_take_the_tensor_path(value, dtype):
    out = to_tensor(value, InputSpec("x", dtype, None), WHERE)
    assert isinstance(out, tf.Tensor) and out.dtype == tf.as_dtype(dtype)


def test_overflow_and_infinity_take_the_checked_path():
    spec = InputSpec("x", "float32", (None,))
    with pytest.raises(ServingError, match="without loss of precision"):
        to_tensor([1.0, 1e39], spec, WHERE)
    out = to_tensor([1.0, float("inf")], spec, WHERE)  # an Infinity token is a value, not an overflow
    assert isinstance(out, np.ndarray) and out[1] == np.inf


def test_whole_requests_decode_alike():
    specs = {"flow": InputSpec("flow", "string", (None,)), "seq": InputSpec("seq", "string", (None, None)),
             "price": InputSpec("price", "float32", (None,)), "emb": InputSpec("emb", "float32", (None, 3)),
             "n": InputSpec("n", "int64", (None,))}
    rows = [{"flow": "AAL", "seq": ["a", "b"], "price": 9.5, "emb": [0.5, 1, -2.0], "n": 3},
            {"flow": {"b64": base64.b64encode(b"\xffEUP").decode()}, "seq": ["c", ""], "price": 10,
             "emb": [0.25, 0.0, 1e-3], "n": -4}]
    for doc in ({"instances": rows}, {"inputs": {k: [r[k] for r in rows] for k in specs}}):
        fast, fmt_fast = decode_predict_request(doc, specs, "serving_default", to_tensor)
        checked, fmt_checked = decode_predict_request(doc, specs, "serving_default")
        assert fmt_fast == fmt_checked and set(fast) == set(specs)
        for name in specs:
            got = fast[name].numpy() if isinstance(fast[name], tf.Tensor) else fast[name]
            assert got.dtype == checked[name].dtype
            np.testing.assert_array_equal(got, checked[name])
        assert isinstance(fast["seq"], tf.Tensor) and isinstance(fast["emb"], tf.Tensor)
