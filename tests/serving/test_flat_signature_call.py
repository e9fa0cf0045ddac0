"""FlatSignatureCall: a served signature called without TF's argument binding answers like the public call."""
import grec_tf  # noqa: F401
import numpy as np
import pytest
import tensorflow as tf

from grec_tf.serving.flat_signature_call import FlatSignatureCall
from grec_tf.serving.model_registry import load_served_model
from grec_tf.serving.status import ServingError
from tests.serving.toy_model import make_batch


@pytest.fixture(scope="module")
def model(toy_exports):
    return load_served_model("toy", 1, toy_exports["v1"])


def _tensors(signature, rows: int = 7, seed: int = 3) -> dict:
    return {k: tf.constant(v, dtype=signature._tf_dtypes[k]) for k, v in make_batch(rows, seed=seed).items()
            if k in signature.inputs}


def _assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(expected[name]))


@pytest.mark.parametrize("name", ["serving_default", "score_all"])
def test_flat_call_equals_the_public_call(model, name):
    signature = model.signatures[name]
    flat = FlatSignatureCall.of(signature.fn)
    assert flat is not None
    for rows, seed in ((1, 0), (7, 3), (64, 5)):
        tensors = _tensors(signature, rows, seed)
        _assert_same({k: v.numpy() for k, v in flat(tensors).items()},
                     {k: v.numpy() for k, v in signature.fn(**tensors).items()})


def test_predict_calls_flat_and_falls_back_to_the_public_call(model, monkeypatch):
    signature = model.signatures["serving_default"]
    tensors = _tensors(signature, 5)
    expected = {k: v.numpy() for k, v in signature.fn(**tensors).items()}
    public_calls = []
    public = signature.fn
    monkeypatch.setattr(signature, "fn", lambda **kw: public_calls.append(sorted(kw)) or public(**kw))
    _assert_same(signature.predict(tensors), expected)
    _assert_same(signature.predict(make_batch(5, seed=3)), expected)  # numpy arrays, converted first
    assert public_calls == []
    # A fixed dim of another size goes the public way, and is answered as it was before the flat call.
    with pytest.raises(ServingError) as e:
        signature.predict({**tensors, "image_emb": tf.zeros([5, 3])})
    assert e.value.code == "INVALID_ARGUMENT" and "signature 'serving_default'" in str(e.value)
    assert len(public_calls) == 1


def test_flat_call_refuses_what_the_signature_does_not_take(model):
    signature = model.signatures["serving_default"]
    flat = FlatSignatureCall.of(signature.fn)
    tensors = _tensors(signature, 4)
    assert flat(tensors) is not None
    refused = {
        "fixed dim": {**tensors, "image_emb": tf.zeros([4, 5])},
        "rank": {**tensors, "price": tf.zeros([4, 1])},
        "dtype": {**tensors, "item_id": tf.zeros([4], tf.int32)},
        "numpy array": {**tensors, "price": np.zeros(4, np.float32)},
        "missing input": {k: v for k, v in tensors.items() if k != "flow"},
        "extra input": {**tensors, "other": tf.zeros([4])},
    }
    for case, feeds in refused.items():
        assert flat(feeds) is None, case
    # Unknown dims take any size: a longer history is still the plain case.
    assert flat({**tensors, "viewed_items": tf.zeros([4, 9], tf.int64)}) is not None


def test_of_returns_none_unless_the_function_is_a_plain_keyword_signature():
    assert FlatSignatureCall.of(lambda **kw: kw) is None
    positional = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([None], tf.float32))
    assert FlatSignatureCall.of(positional) is None
