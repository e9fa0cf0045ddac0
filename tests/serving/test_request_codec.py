"""JSON <-> tensor conversion in TF Serving's row and columnar formats (no server, no TensorFlow)."""
import base64
import json
from collections import OrderedDict

import numpy as np
import pytest

from grec_tf.serving.request_codec import (COLUMNAR, ROW, InputSpec, decode_predict_request,
                                           encode_predict_response, parse_json, read_signature_name)
from grec_tf.serving.status import ServingError

SPECS = {
    "flow": InputSpec("flow", "string", (None,)),
    "item_id": InputSpec("item_id", "int64", (None,)),
    "price": InputSpec("price", "float32", (None,)),
    "seq": InputSpec("seq", "int64", (None, None)),
    "emb": InputSpec("emb", "float32", (None, 2)),
    "flag": InputSpec("flag", "bool", (None,)),
}
ROWS = [
    {"flow": "AAL", "item_id": 3, "price": 9.5, "seq": [1, 2, 0], "emb": [0.5, 1], "flag": True},
    {"flow": {"b64": base64.b64encode(b"\xffEUP").decode()}, "item_id": -4, "price": 10, "seq": [3, 0, 0],
     "emb": [2, 3.25], "flag": False},
]


def _decode(doc, specs=SPECS):
    return decode_predict_request(doc, specs, "serving_default")


def _err(doc, specs=SPECS) -> str:
    with pytest.raises(ServingError) as e:
        _decode(doc, specs)
    assert e.value.code == "INVALID_ARGUMENT" and e.value.http_status == 400
    return str(e.value)


def test_row_and_columnar_give_the_same_tensors():
    row, fmt = _decode({"instances": ROWS})
    assert fmt == ROW
    cols = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    col, fmt = _decode({"inputs": cols})
    assert fmt == COLUMNAR
    for k in SPECS:
        np.testing.assert_array_equal(row[k], col[k])
    assert row["flow"].dtype == object and row["flow"].tolist() == [b"AAL", b"\xffEUP"]
    assert row["item_id"].dtype == np.int64 and row["item_id"].tolist() == [3, -4]
    assert row["price"].dtype == np.float32 and row["price"].tolist() == [9.5, 10.0]
    assert row["seq"].shape == (2, 3) and row["emb"].dtype == np.float32
    assert row["flag"].dtype == np.bool_


def test_single_input_plain_lists():
    spec = {"x": InputSpec("x", "float32", (None, 2))}
    t, fmt = _decode({"instances": [[1, 2], [3, 4.5]]}, spec)
    assert fmt == ROW and t["x"].tolist() == [[1, 2], [3, 4.5]]
    t, fmt = _decode({"inputs": [[1, 2]]}, spec)
    assert fmt == COLUMNAR and t["x"].shape == (1, 2)
    s = {"s": InputSpec("s", "string", (None,))}
    t, _ = _decode({"instances": [{"b64": "YWJj"}, "d"]}, s)
    assert t["s"].tolist() == [b"abc", b"d"]


def test_nan_and_infinity_tokens_are_accepted():
    doc = parse_json(b'{"inputs": {"x": [NaN, Infinity, -Infinity, 1e3]}}')
    t, _ = _decode(doc, {"x": InputSpec("x", "float32", (None,))})
    assert np.isnan(t["x"][0]) and t["x"][1] == np.inf and t["x"][2] == -np.inf and t["x"][3] == 1000


def test_signature_name():
    assert read_signature_name({"instances": []}) == "serving_default"
    assert read_signature_name({"signature_name": "score_all"}) == "score_all"
    with pytest.raises(ServingError, match="must be a string"):
        read_signature_name({"signature_name": 3})
    with pytest.raises(ServingError, match="Is not object"):
        read_signature_name([1, 2])


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b'{"a": }', b"\xff\xfe"])
def test_malformed_json(body):
    with pytest.raises(ServingError, match="JSON Parse error"):
        parse_json(body)


def test_request_shape_errors():
    assert "only one of 'inputs' or 'instances'" in _err({"instances": ROWS, "inputs": {}})
    assert "Missing 'inputs' or 'instances'" in _err({"examples": ROWS})
    assert "No values in 'instances'" in _err({"instances": []})
    assert "to be an list/array" in _err({"instances": {"flow": "AAL"}})
    assert "plain list" in _err({"instances": [1, 2]})
    assert "plain value/list" in _err({"inputs": [1, 2]})
    msg = _err({"instances": [ROWS[0], 5]})
    assert "Expecting object" in msg and "item 1" in msg


def test_missing_and_extra_inputs_name_the_input():
    rows = [dict(ROWS[0]), dict(ROWS[1])]
    del rows[1]["price"]
    msg = _err({"instances": rows})
    assert "element: 1" in msg and "missing input(s) 'price'" in msg
    rows = [dict(ROWS[0], label=1), ROWS[1]]
    assert "unexpected key(s) 'label'" in _err({"instances": rows})
    cols = {k: [r[k] for r in ROWS] for k in ROWS[0] if k != "seq"}
    msg = _err({"inputs": cols})
    assert "Missing named input: seq" in msg and "'seq' (DT_INT64 of shape [-1, -1])" in msg  # what it takes


@pytest.mark.parametrize("key,value,needle", [
    ("item_id", 1.5, "item_id"), ("item_id", "7", "item_id"), ("item_id", True, "item_id"),
    ("price", "9.5", "price"), ("price", None, "price"), ("price", {"b64": "AA=="}, "price"),
    ("flow", 3, "flow"), ("flow", ["AAL"], "flow"), ("flow", {"b64": "not base64!"}, "base64"),
    ("flag", 1, "DT_BOOL"), ("item_id", 2 ** 70, "item_id"),
])
def test_wrong_dtype_names_the_input(key, value, needle):
    rows = [dict(ROWS[0]), dict(ROWS[1])]
    rows[0][key] = value
    rows[1][key] = value
    assert needle in _err({"instances": rows})


def test_int_range_and_lossy_float():
    s = {"x": InputSpec("x", "int32", (None,))}
    assert "out of the range of DT_INT32" in _err({"inputs": {"x": [1, 2 ** 31]}}, s)
    f = {"x": InputSpec("x", "float32", (None,))}
    assert "without loss of precision" in _err({"inputs": {"x": [2 ** 25 + 1]}}, f)
    assert "without loss of precision" in _err({"inputs": {"x": [1e39]}}, f)


def test_ragged_batch_names_the_row():
    rows = [dict(ROWS[0]), dict(ROWS[1], seq=[1, 2])]
    msg = _err({"instances": rows})
    assert "input 'seq'" in msg and "element 1" in msg and "[2]" in msg and "[3]" in msg
    cols = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    cols["seq"] = [[1, 2, 3], [1]]
    msg = _err({"inputs": cols})
    assert "input 'seq'" in msg and "ragged" in msg


def test_rank_and_fixed_dims_are_checked():
    rows = [dict(r, emb=[1, 2, 3]) for r in ROWS]
    msg = _err({"instances": rows})
    assert "input 'emb'" in msg and "[2]" in msg and "[3]" in msg
    rows = [dict(r, seq=5) for r in ROWS]
    assert "input 'seq'" in _err({"instances": rows})
    cols = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    cols["price"] = 3.0
    assert "input 'price'" in _err({"inputs": cols})


def test_encode_single_and_multiple_outputs():
    p = np.array([0.1, 0.25], dtype=np.float32)
    assert json.loads(encode_predict_response({"probability": p}, ROW)) == {"predictions": [0.1, 0.25]}
    assert json.loads(encode_predict_response({"probability": p}, COLUMNAR)) == {"outputs": [0.1, 0.25]}
    outs = {"probabilities": np.array([[0.5, 1.0], [0.0, 0.2]], np.float32),
            "use_cases": np.array([[b"CTR", b"CVR"], [b"CTR", b"CVR"]], dtype=object),
            "raw_bytes": np.array([b"\xff", b"a"], dtype=object)}
    row = json.loads(encode_predict_response(outs, ROW))
    assert row["predictions"][1] == {"probabilities": [0.0, 0.2], "use_cases": ["CTR", "CVR"],
                                     "raw_bytes": {"b64": "YQ=="}}
    col = json.loads(encode_predict_response(outs, COLUMNAR))
    assert col["outputs"]["use_cases"] == [["CTR", "CVR"], ["CTR", "CVR"]]
    assert col["outputs"]["raw_bytes"] == [{"b64": "/w=="}, {"b64": "YQ=="}]
    # float32 values are written with the shortest exact decimal, like TF Serving
    assert b"0.2," in encode_predict_response({"p": np.array([0.2, 1], np.float32)}, COLUMNAR) \
        or b"0.2]" in encode_predict_response({"p": np.array([1, 0.2], np.float32)}, COLUMNAR)


def test_encode_non_finite_and_inconsistent_batch():
    body = encode_predict_response({"p": np.array([np.nan, np.inf], np.float32)}, ROW)
    assert body == b'{"predictions":[NaN,Infinity]}'
    with pytest.raises(ServingError, match="inconsistent batch size"):
        encode_predict_response({"a": np.zeros(2), "names": np.array([b"x", b"y", b"z"], dtype=object)}, ROW)
    # the columnar format has no batch constraint
    json.loads(encode_predict_response({"a": np.zeros(2), "names": np.array([b"x"], dtype=object)}, COLUMNAR))


def test_padded_string_sequences():
    spec = {"pages": InputSpec("pages", "string", (None, None))}
    t, _ = _decode({"instances": [["home", "phones", ""], ["deals", "", ""]]}, spec)
    assert t["pages"].shape == (2, 3) and t["pages"][0, 1] == b"phones"
    assert "ragged" in _err({"inputs": [["home", "phones"], ["deals"]]}, spec)
    assert "element 1" in _err({"instances": [["home", "phones"], ["deals"]]}, spec)
    assert "DT_STRING" in _err({"inputs": [["home", 3], ["deals", "x"]]}, spec)
    assert "pages" in _err({"inputs": [["home"], "deals"]}, spec)


def test_row_instances_in_any_key_order_give_the_columnar_tensors():
    rows = [dict(reversed(list(ROWS[0].items()))), ROWS[1]]  # keys in another order than the signature's
    row, _ = _decode({"instances": rows})
    col, _ = _decode({"inputs": {k: [r[k] for r in ROWS] for k in SPECS}})
    for k in SPECS:
        assert row[k].dtype == col[k].dtype
        np.testing.assert_array_equal(row[k], col[k])


def test_an_instance_with_a_renamed_key_is_refused_with_both_names():
    # As many keys as the signature has inputs, one of them wrong: refused naming the first bad instance.
    rows = [ROWS[0], dict(ROWS[1]), dict(ROWS[1])]
    rows[1]["cost"] = rows[1].pop("price")
    rows[2]["label"] = rows[2].pop("flag")
    msg = _err({"instances": rows})
    assert msg.startswith("Failed to process element: 1 of 'instances' list: missing input(s) 'price'; "
                          "unexpected key(s) 'cost'; keys must be equal to: emb,flag,flow,item_id,price,seq "
                          "(signature 'serving_default' takes 'flow' (DT_STRING of shape [-1]), "), msg


def test_a_binary_value_where_an_instance_belongs_is_refused():
    msg = _err({"instances": [ROWS[0], {"b64": "YWJj"}]})
    assert msg == "Expecting object but got Object at item 1 of input list"


def test_instances_of_one_named_input_and_dict_subclasses():
    spec = {"x": InputSpec("x", "float32", (None, 2))}
    t, fmt = _decode({"instances": [{"x": [1, 2]}, {"x": [3, 4.5]}]}, spec)
    assert fmt == ROW and t["x"].dtype == np.float32 and t["x"].tolist() == [[1, 2], [3, 4.5]]
    rows = [OrderedDict(r) for r in ROWS]  # not what a JSON parser gives, but objects all the same
    t, _ = _decode({"instances": rows})
    np.testing.assert_array_equal(t["seq"], [[1, 2, 0], [3, 0, 0]])
    assert t["flow"].tolist() == [b"AAL", b"\xffEUP"]
