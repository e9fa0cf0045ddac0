"""Prometheus metrics at /monitoring/prometheus/metrics, counted over both APIs."""
import grpc
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from grec_tf.serving.monitoring import METRICS_PATH, UNKNOWN_MODEL
from tests.serving.conftest import MODEL
from tests.serving.toy_model import make_batch, to_instances_json

TIMEOUT = 30.0


def _scrape(client) -> dict:
    """{(sample name, sorted label items): value} of one scrape."""
    status, text = client.get(METRICS_PATH)
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _requests(labels: dict) -> tuple:
    return "grec_serving_requests_total", tuple(sorted(labels.items()))


def _grpc_predict(address, batch, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for name, values in batch.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    with grpc.insecure_channel(address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=TIMEOUT)


def test_scrape_counts_good_and_bad_requests_of_both_apis(both_apis):
    rest, address = both_apis["rest"], both_apis["grpc_address"]
    batch = make_batch(3, seed=1)
    before = _scrape(rest)
    for _ in range(2):
        assert rest.post(f"/v1/models/{MODEL}:predict", {"instances": to_instances_json(batch)})[0] == 200
    assert rest.post(f"/v1/models/{MODEL}:predict", {"instances": [{"price": 1.0}]})[0] == 400
    assert rest.post("/v1/models/other:predict", {"instances": to_instances_json(batch)})[0] == 404
    assert rest.get(f"/v1/models/{MODEL}/metadata")[0] == 200
    assert rest.get("/v1/models/no-such-page-is-counted/versions/x")[0] == 400  # not an API call: no label
    _grpc_predict(address, batch, "score_all")
    with pytest.raises(grpc.RpcError):
        _grpc_predict(address, {k: v for k, v in batch.items() if k != "price"})
    after = _scrape(rest)

    def added(api, method, signature, status, model=MODEL):
        key = _requests({"model": model, "api": api, "method": method, "signature": signature, "status": status})
        return after.get(key, 0.0) - before.get(key, 0.0)
    assert added("rest", "predict", "serving_default", "OK") == 2
    assert added("rest", "predict", "serving_default", "INVALID_ARGUMENT") == 1
    assert added("rest", "predict", "", "NOT_FOUND", model=UNKNOWN_MODEL) == 1
    assert added("rest", "metadata", "", "OK") == 1
    assert added("grpc", "predict", "score_all", "OK") == 1
    assert added("grpc", "predict", "serving_default", "INVALID_ARGUMENT") == 1
    total = sum(v for (name, _), v in after.items() if name == "grec_serving_requests_total")
    assert total - sum(v for (name, _), v in before.items() if name == "grec_serving_requests_total") == 7

    # Latency histogram: one observation per counted request, in cumulative buckets
    count = ("grec_serving_request_latency_seconds_count",
             (("api", "rest"), ("method", "predict"), ("model", MODEL), ("signature", "serving_default")))
    assert after[count] - before.get(count, 0.0) == 3
    inf_bucket = ("grec_serving_request_latency_seconds_bucket", tuple(sorted(dict(count[1], le="+Inf").items())))
    assert after[inf_bucket] == after[count]
    assert after[("grec_serving_request_latency_seconds_sum", count[1])] > 0


def test_loaded_versions_per_model(both_apis):
    after = _scrape(both_apis["rest"])
    assert after[("grec_serving_model_versions", (("model", MODEL), ("state", "AVAILABLE")))] == 1
    assert after[("grec_serving_model_versions", (("model", MODEL), ("state", "END")))] == 0
    assert after[("grec_serving_model_version_available", (("model", MODEL), ("version", "1")))] == 1


def test_metrics_take_get_only(both_apis):
    status, body = both_apis["rest"].post(METRICS_PATH, {})
    assert status == 405 and "metrics take GET" in body["error"]
