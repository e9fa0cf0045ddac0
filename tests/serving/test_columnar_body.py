"""The simdjson columnar path takes well-formed columnar bodies and gives exactly the checked path's tensors;
every body it takes the checked path must accept too (it never accepts what TF Serving's rules refuse)."""
import json
import random

import grec_tf  # noqa: F401
import numpy as np
import orjson
import pytest
import tensorflow as tf

from grec_tf.serving import columnar_body
from grec_tf.serving.json_tensors import to_tensor
from grec_tf.serving.request_codec import InputSpec, decode_predict_request, parse_json
from grec_tf.serving.status import ServingError

SPECS = {
    "flow": InputSpec("flow", "string", (None,)),
    "seq": InputSpec("seq", "string", (None, None)),
    "price": InputSpec("price", "float32", (None,)),
    "emb": InputSpec("emb", "float32", (None, 3)),
    "wide": InputSpec("wide", "float64", (None, 2)),
    "n": InputSpec("n", "int64", (None,)),
}
INPUTS = {
    "flow": ["AAL", "EUP[1]", "日本"],
    "seq": [["a", "b"], ["c", ""], ["[d]", "e"]],
    "price": [9.5, 10, -0.0],
    "emb": [[0.5, 1, -2.0], [0.25, 0.0, 1e-3], [3.0, -1.5, 7]],
    "wide": [[1e-300, 2.5], [-3.0, 4], [16777217, 0.1]],
    "n": [3, -4, 5],
}
# Values one input can take instead of its well-formed one: each either converts like the checked path or
# must send the body down it (nested, ragged, non-numeric, non-finite, inexact and empty values).
REPLACEMENTS = {
    "emb": [[[1.5, [2.5], 3.0], [1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6, 7], [8, 9]],
            [[1, 2], [3, 4, 5], [6, 7, 8, 9]], [[1.5, 2, 3], [4, 5, 6], [7, 8, [[9]]]], [[1, 2, 3], 4, [5, 6]],
            [[1, 2, 3], [4, 5, 6], [7, 8, "9"]], [[1, 2, 3], [4, 5, None], [7, 8, 9]], [[2 ** 24 + 1, 0, 0]] * 3,
            [[2 ** 24, 0, 0]] * 3, [[1e39, 0, 0]] * 3, [[1, 2, 3], [4, 5, 6]], [[1, 2]] * 3, [[[1, 2, 3]]] * 3,
            [], [[]], [1, 2, 3], 1.5, [[1, 2, 3], [4, 5, 6], [7, 8, True]], [[{"b64": "AA=="}, 1, 2]] * 3],
    "price": [[1.5, [2.5], 3.0], [[1.5], [2.5], [3.0]], [1.5, 2.5], [1.5, 2.5, "x"], [2 ** 53 + 1, 1, 2],
              [1.5, 2.5, 1e39], "1.5", []],
    "wide": [[[2 ** 53 + 1, 0]] * 3, [[1, [2]], [3, 4], [5, 6]], [[1, 2], [3, 4], [5, 6, 7]]],
    "seq": [[["a"], ["b", "c"], ["d"]], [["a", "b"], "cd", ["e", "f"]], [["a", 1], ["b", "c"], ["d", "e"]],
            [["a", ["b"]], ["c", "d"], ["e", "f"]], [["a"], ["b"], ["c"]], [{"b64": "YQ=="}] * 3, ["a", "b", "c"]],
    "flow": [["a", "b"], ["a", 1, "b"], [{"b64": "YQ=="}, "a", "b"], [["a"], "b", "c"], "abc"],
    "n": [[1.5, 2, 3], [1, 2], [2 ** 70, 1, 2]],
}


def _dumps(doc) -> bytes:
    """orjson's bytes (unescaped UTF-8, as the fast path takes); the stdlib writes ints beyond 64 bits."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc, ensure_ascii=False).encode()


def _checked(body: bytes):
    """The checked path's ``(tensors, None)`` or ``(None, message)``."""
    try:
        doc = parse_json(body)
        if not isinstance(doc, dict):
            return None, "not an object"
        return decode_predict_request(doc, SPECS, "serving_default", to_tensor)[0], None
    except ServingError as e:
        return None, str(e)


def _fast(body: bytes):
    parsed = columnar_body.parse(body)
    return None if parsed is None else parsed.tensors(SPECS)


def _assert_same(fast, checked):
    assert set(fast) == set(checked)
    for name in checked:
        want = checked[name].numpy() if isinstance(checked[name], tf.Tensor) else checked[name]
        got = fast[name].numpy() if isinstance(fast[name], tf.Tensor) else fast[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def _assert_never_more_lenient(body: bytes) -> bool:
    """Fast-path tensors, when there are any, equal the checked path's; True when the fast path took the body."""
    fast = _fast(body)
    checked, error = _checked(body)
    if fast is None:
        return False
    assert error is None, f"the fast path accepted a body the checked path refuses ({error}): {body[:300]!r}"
    _assert_same(fast, checked)
    return True


def test_a_well_formed_body_takes_the_fast_path_with_the_checked_tensors():
    body = orjson.dumps({"inputs": INPUTS})
    parsed = columnar_body.parse(body)
    assert parsed is not None and parsed.signature_name == "serving_default"
    fast = parsed.tensors(SPECS)
    assert fast is not None
    assert all(isinstance(fast[n], tf.Tensor) for n in SPECS if n != "n")  # ints take the checked numpy path
    _assert_same(fast, _checked(body)[0])
    assert fast["emb"].dtype == tf.float32 and fast["wide"].dtype == tf.float64
    assert fast["wide"].numpy()[2, 0] == 16777217.0  # an exact int in a double input


def test_signature_name_is_read():
    parsed = columnar_body.parse(orjson.dumps({"signature_name": "score_all", "inputs": INPUTS}))
    assert parsed.signature_name == "score_all"
    assert columnar_body.parse(orjson.dumps({"signature_name": "", "inputs": INPUTS})).signature_name == \
        "serving_default"


@pytest.mark.parametrize("name,index", [(n, i) for n, values in REPLACEMENTS.items() for i in range(len(values))])
def test_a_replaced_input_converts_like_the_checked_path_or_falls_back(name, index):
    inputs = dict(INPUTS, **{name: REPLACEMENTS[name][index]})
    _assert_never_more_lenient(_dumps({"inputs": inputs}))


@pytest.mark.parametrize("value", [
    [[1.5, [2.5], 3.0], [1, 2, 3], [4, 5, 6]],   # a one-element array where a number belongs: counts alone agree
    [[1, 2, 3], [4, 5, 6], [7, 8, [[9]]]],
    [[1, 2, 3], [4, 5], [6, 7, 8, 9]],           # ragged rows whose lengths add up to 3 x 3
    [[1, 2, 3], [4, 5, 6, 7], [8, 9]],
])
def test_nesting_that_as_buffer_flattens_is_refused(value):
    assert _checked(orjson.dumps({"inputs": dict(INPUTS, emb=value)}))[1] is not None
    assert _fast(orjson.dumps({"inputs": dict(INPUTS, emb=value)})) is None


@pytest.mark.parametrize("doc", [
    {"instances": [{k: v[0] for k, v in INPUTS.items()}]},             # row format
    {"inputs": INPUTS, "instances": []},                                # both
    {"inputs": INPUTS, "extra": 1},                                     # a key the fast path does not read
    {"inputs": {k: v for k, v in INPUTS.items() if k != "n"}},          # a missing input
    {"inputs": dict(INPUTS, more=[1, 2, 3])},                           # an input the signature lacks
    {"inputs": INPUTS, "signature_name": 3},
    {"inputs": {"b64": "YQ=="}},
    {"inputs": [1, 2, 3]},
])
def test_other_request_shapes_take_the_checked_path(doc):
    assert _fast(orjson.dumps(doc)) is None


def test_escapes_and_duplicate_keys_take_the_checked_path():
    escaped = json.dumps({"inputs": INPUTS}).encode()  # ensure_ascii writes \\u65e5 for the non-ASCII flow
    assert b"\\u" in escaped and columnar_body.parse(escaped) is None
    body = orjson.dumps({"inputs": INPUTS})
    duplicated = body.replace(b'{"inputs":', b'{"inputs":{"flow":1},"inputs":', 1)
    assert columnar_body.parse(duplicated) is None
    duplicated_input = body.replace(b'"flow":', b'"flow":["x"],"flow":', 1)
    assert _fast(duplicated_input) is None
    assert orjson.loads(duplicated_input)["inputs"]["flow"] == INPUTS["flow"]


def test_byte_level_fuzz_never_accepts_what_the_checked_path_refuses():
    body = orjson.dumps({"inputs": INPUTS})
    rng = random.Random(0)
    taken = 0
    for _ in range(400):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mutated))
            action = rng.choice(("insert", "delete", "replace"))
            piece = rng.choice([b"[", b"]", b",", b"1", b".5", b'"', b"[1]", b"-", b"e9", b"{}", b" "])
            if action == "insert":
                mutated[at:at] = piece
            elif action == "delete":
                del mutated[at]
            else:
                mutated[at:at + 1] = piece
        taken += _assert_never_more_lenient(bytes(mutated))
    assert taken > 0  # some mutations stay well-formed (whitespace, a changed digit) and take the fast path
