"""The gRPC API against TF Serving's, driven by the stock client code of ``tensorflow-serving-api``."""
import os
import re
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from grec_tf.serving.grpc_server import tensor_to_input
from grec_tf.serving.request_codec import InputSpec
from tests.serving.conftest import MODEL
from tests.serving.toy_model import USE_CASES, make_batch

TIMEOUT = 30.0  # seconds, on every RPC: a hung server fails the test instead of hanging it
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def stubs(both_apis):
    channel = grpc.insecure_channel(both_apis["grpc_address"])
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel), both_apis["registry"])
    channel.close()


def _request(batch, signature_name="", version=None, model=MODEL) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature_name:
        request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for name, values in batch.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return request


def _in_process(registry, batch, signature="serving_default"):
    return registry.get(MODEL).signature(signature).predict(batch)


def _rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


def _assert_still_serving(stub, registry):
    batch = make_batch(3, seed=11)
    response = stub.Predict(_request(batch), timeout=TIMEOUT)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probability"]),
                               _in_process(registry, batch)["probability"], rtol=1e-6)


@pytest.mark.parametrize("version", [None, 1])
def test_predict_equals_the_in_process_call(stubs, version):
    stub, _, registry = stubs
    batch = make_batch(7, seed=3)
    response = stub.Predict(_request(batch, version=version), timeout=TIMEOUT)
    assert list(response.outputs) == ["probability"]
    got = tf.make_ndarray(response.outputs["probability"])
    assert got.dtype == np.float32 and got.shape == (7,)
    np.testing.assert_allclose(got, _in_process(registry, batch)["probability"], rtol=1e-6)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (MODEL, 1, "serving_default")


def test_score_all_and_output_filter(stubs):
    stub, _, registry = stubs
    batch = make_batch(4, seed=5)
    expected = _in_process(registry, batch, "score_all")
    response = stub.Predict(_request(batch, "score_all"), timeout=TIMEOUT)
    assert set(response.outputs) == {"probabilities", "use_cases"}
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"],
                               rtol=1e-6)
    assert tf.make_ndarray(response.outputs["use_cases"]).tolist() == [[u.encode() for u in USE_CASES]] * 4
    request = _request(batch, "score_all")
    request.output_filter.append("probabilities")
    response = stub.Predict(request, timeout=TIMEOUT)
    assert list(response.outputs) == ["probabilities"]
    request.output_filter.append("logits")
    error = _rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: logits" in error.details()


def _labelled(request: predict_pb2.PredictRequest, label: str) -> predict_pb2.PredictRequest:
    request.model_spec.version_label = label
    return request


def _without(batch, name):
    return {k: v for k, v in batch.items() if k != name}


@pytest.mark.parametrize("case, code, needles", [
    ("missing input", "INVALID_ARGUMENT", ["Missing but required: {price}", "'price' (DT_FLOAT of shape [-1])"]),
    ("extra input", "INVALID_ARGUMENT", ["Sent extra: {coupon}", "Missing but required: {}"]),
    ("int32 for int64", "INVALID_ARGUMENT", ["input 'item_id'", "DT_INT64", "got a DT_INT32 tensor",
                                             "dtype=tf.int64"]),
    ("wrong shape", "INVALID_ARGUMENT", ["input 'image_emb'", "[-1, 4]", "shape [2, 3]"]),
    ("unknown signature", "INVALID_ARGUMENT", ['Serving signature name: "rank" not found in signature def',
                                               "score_all, serving_default"]),
    ("unknown version", "NOT_FOUND", ["Specific(toy, 7)", "serves version 1"]),
    ("unknown model", "NOT_FOUND", ["Latest(nope)"]),
    ("no model name", "INVALID_ARGUMENT", ["Missing model name"]),
    ("version label", "UNIMPLEMENTED", ["version labels are not supported"]),
])
def test_bad_requests_get_tf_serving_status_codes(stubs, case, code, needles):
    stub, _, registry = stubs
    batch = make_batch(2, seed=1)
    request = {
        "missing input": lambda: _request(_without(batch, "price")),
        "extra input": lambda: _request({**batch, "coupon": np.array([1.0, 2.0], np.float32)}),
        "int32 for int64": lambda: _request({**batch, "item_id": batch["item_id"].astype(np.int32)}),
        "wrong shape": lambda: _request({**batch, "image_emb": batch["image_emb"][:, :3]}),
        "unknown signature": lambda: _request(batch, "rank"),
        "unknown version": lambda: _request(batch, version=7),
        "unknown model": lambda: _request(batch, model="nope"),
        "no model name": lambda: _request(batch, model=""),
        "version label": lambda: _labelled(_request(batch), "stable"),
    }[case]
    error = _rpc_error(stub.Predict, request())
    assert error.code() == grpc.StatusCode[code], error.details()
    for needle in needles:
        assert needle in error.details(), error.details()
    _assert_still_serving(stub, registry)


def _proto(dtype: int, dims, **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
    return proto


MALFORMED_PRICE = {
    "content not a multiple of 4 bytes": (_proto(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 7),
                                          "cannot read the TensorProto"),
    "content for 3 values, shape of 2": (_proto(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 12),
                                         "cannot read the TensorProto"),
    "more float_val than the shape holds": (_proto(types_pb2.DT_FLOAT, [2], float_val=[1.0, 2.0, 3.0]),
                                            "cannot read the TensorProto"),
    "a billion elements, one value": (_proto(types_pb2.DT_FLOAT, [10 ** 9], float_val=[1.0]),
                                      "more than the server's limit"),
    "dimensions overflowing int64": (_proto(types_pb2.DT_FLOAT, [2 ** 62, 2 ** 62]), "more than the server's limit"),
    "a negative dimension": (_proto(types_pb2.DT_FLOAT, [-1], float_val=[1.0, 2.0]), "negative dimension"),
    "unknown rank": (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                            tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True)),
                     "unknown rank"),
    "DT_INVALID": (_proto(types_pb2.DT_INVALID, [2]), "expected DT_FLOAT"),
    "a dtype enum TensorFlow lacks": (_proto(999, [2]), "not a TensorFlow DataType"),
    "a scalar": (_proto(types_pb2.DT_FLOAT, [], float_val=[1.0]), "rank 0"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PRICE))
def test_malformed_tensor_protos_are_invalid_arguments(stubs, case):
    stub, _, registry = stubs
    proto, needle = MALFORMED_PRICE[case]
    request = _request(make_batch(2, seed=2))
    request.inputs["price"].CopyFrom(proto)
    error = _rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "input 'price'" in error.details() and needle in error.details(), error.details()
    _assert_still_serving(stub, registry)


# (values, dtype, how the proto carries them): the encodings read straight into a tensor and those
# left to tf.make_ndarray (repeated *_val fields, a short list padded with its last value).
ENCODINGS = {
    "float32 tensor_content": (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, tf.float32, "tensor_content"),
    "float64 tensor_content": (np.array([1e300, -0.5, np.nan]), tf.float64, "tensor_content"),
    "int64 tensor_content": (np.array([[2 ** 40, -7]]), tf.int64, "tensor_content"),
    "int32 tensor_content": (np.array([3, -4, 5], np.int32), tf.int32, "tensor_content"),
    "strings 1-d": (np.array([b"a", b"", b"\xff\x00"], object), tf.string, "string_val"),
    "a 1-d string of one": (np.array([b"only"], object), tf.string, "string_val"),
    "strings 2-d": (np.array([[b"a", b""], [b"\xff\x00", "\u00e9".encode()]], object), tf.string, "string_val"),
    "a string scalar": (np.array(b"x", object), tf.string, "string_val"),
    "float_val": (np.array([1.5, -2.0], np.float32), tf.float32, "float_val"),
    "a short float_val padded": (np.array([4.0, 4.0, 4.0], np.float32), tf.float32, "float_val=[4.0]"),
    "a short string_val padded": (np.array([b"a", b"b", b"b"], object), tf.string, "string_val=[a, b]"),
    "int64_val": (np.array([9, -9]), tf.int64, "int64_val"),
}


def _encoded(values: np.ndarray, dtype: tf.DType, how: str) -> tensor_pb2.TensorProto:
    if how == "tensor_content" or how == "string_val":
        proto = tf.make_tensor_proto(values, dtype=dtype)
        assert bool(proto.tensor_content) == (how == "tensor_content")
        return proto
    field = how.split("=")[0]
    sent = {"float_val=[4.0]": [4.0], "string_val=[a, b]": [b"a", b"b"]}.get(how, values.tolist())
    return _proto(dtype.as_datatype_enum, values.shape, **{field: sent})


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_tensor_protos_decode_to_their_values(case):
    values, dtype, how = ENCODINGS[case]
    proto = _encoded(values, dtype, how)
    spec = InputSpec(case, dtype.name, tuple(None for _ in values.shape))
    decoded = tensor_to_input(proto, spec, 1 << 20)
    # tf.make_tensor_proto's encodings of a whole array become tensors without a numpy detour.
    assert isinstance(decoded, tf.Tensor) == (how in ("tensor_content", "string_val"))
    got = np.asarray(decoded)
    assert got.shape == values.shape and got.dtype == values.dtype
    np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(got, tf.make_ndarray(proto))


def test_string_input_sent_as_tensor_content_and_garbage_bytes(stubs, both_apis):
    stub, _, registry = stubs
    request = _request(make_batch(2, seed=2))
    request.inputs["flow"].CopyFrom(_proto(types_pb2.DT_STRING, [2], tensor_content=b"\x01" * 16))
    error = _rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 'flow'" in error.details()
    # Bytes that are no PredictRequest at all: gRPC refuses them before the servicer runs.
    with grpc.insecure_channel(both_apis["grpc_address"]) as channel:
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
        rng = np.random.default_rng(0)
        for _ in range(5):
            with pytest.raises(grpc.RpcError):
                raw(rng.bytes(int(rng.integers(1, 200))), timeout=TIMEOUT)
    _assert_still_serving(stub, registry)


def test_classify_is_unimplemented(stubs):
    stub, _, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    assert _rpc_error(stub.Classify, request).code() == grpc.StatusCode.UNIMPLEMENTED


def test_metadata_packs_the_signature_def_map(stubs, both_apis):
    stub, _, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=TIMEOUT)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    sd = signature_defs.signature_def["serving_default"]
    assert sd.method_name == "tensorflow/serving/predict"
    assert set(sd.inputs) == {"flow", "use_case", "item_id", "price", "viewed_items", "image_emb"}
    assert sd.inputs["viewed_items"].dtype == types_pb2.DT_INT64
    assert [d.size for d in sd.inputs["image_emb"].tensor_shape.dim] == [-1, 4]
    assert set(signature_defs.signature_def["score_all"].outputs) == {"probabilities", "use_cases"}
    # The same map as the REST metadata endpoint
    rest = both_apis["rest"].get(f"/v1/models/{MODEL}/metadata")[1]["metadata"]["signature_def"]
    assert json_format.MessageToDict(signature_defs, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True) == rest
    request.ClearField("metadata_field")
    error = _rpc_error(stub.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in error.details()
    request.metadata_field.append("warmup")
    assert "Metadata field warmup is not supported" in _rpc_error(stub.GetModelMetadata, request).details()


def test_model_status(stubs):
    _, model_stub, _ = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = model_stub.GetModelStatus(request, timeout=TIMEOUT)
    [status] = response.model_version_status
    assert (status.version, status.state, status.status.error_code) == (
        1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    request.model_spec.version.value = 3
    error = _rpc_error(model_stub.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "Could not find version 3 of model toy" in error.details()


def test_concurrent_clients_get_their_own_answers(stubs):
    stub, _, registry = stubs
    batches = [make_batch(5 + i, seed=100 + i) for i in range(8)]
    expected = [_in_process(registry, b)["probability"] for b in batches]
    results = [None] * len(batches)

    def call(i):
        results[i] = tf.make_ndarray(stub.Predict(_request(batches[i]), timeout=TIMEOUT).outputs["probability"])
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT)
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_documented_grpc_client_runs(both_apis):
    # docs/serving.md's gRPC client, verbatim but for the address, against this server.
    with open(os.path.join(REPO, "docs", "serving.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.DOTALL)
    [code] = [b for b in blocks if "PredictionServiceStub" in b]
    assert code.count('"localhost:8500"') == 1
    namespace = {}
    exec(compile(code.replace('"localhost:8500"', repr(both_apis["grpc_address"])), "docs/serving.md", "exec"),
         namespace)
    batch = make_batch(3, seed=9)
    outputs = namespace["predict"](batch, model_name=MODEL)
    np.testing.assert_allclose(outputs["probability"], _in_process(both_apis["registry"], batch)["probability"],
                               rtol=1e-6)
    assert namespace["model_status"](MODEL)[0]["state"] == "AVAILABLE"
    assert "score_all" in namespace["signatures"](MODEL)
    namespace["channel"].close()
