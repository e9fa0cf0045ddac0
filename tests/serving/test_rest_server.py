"""The local server against TF Serving's REST API v1: endpoints, both formats, errors, concurrency."""
import http.client
import json
import threading

import numpy as np
import orjson
import pytest

from grec_tf.serving import columnar_body

from tests.serving.conftest import MODEL
from tests.serving.toy_model import USE_CASES, make_batch, to_columnar_json, to_instances_json

PREDICT = f"/v1/models/{MODEL}:predict"


def _in_process(registry, batch, signature="serving_default"):
    return registry.get(MODEL).signature(signature).predict(batch)


def _assert_still_serving(client, registry):
    batch = make_batch(3, seed=11)
    status, body = client.post(PREDICT, {"instances": to_instances_json(batch)})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], _in_process(registry, batch)["probability"], rtol=1e-6)


def test_model_status(served):
    client, _ = served
    ok = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get(f"/v1/models/{MODEL}") == (200, ok)
    assert client.get(f"/v1/models/{MODEL}/versions/1") == (200, ok)
    assert client.get(f"/V1/MODELS/{MODEL}")[0] == 200  # TF Serving matches paths case-insensitively


def test_metadata(served):
    client, _ = served
    for path in (f"/v1/models/{MODEL}/metadata", f"/v1/models/{MODEL}/versions/1/metadata"):
        status, body = client.get(path)
        assert status == 200, body
        assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
        sigs = body["metadata"]["signature_def"]["signature_def"]
        assert {"serving_default", "score_all"} <= set(sigs)
        sd = sigs["serving_default"]
        assert sd["method_name"] == "tensorflow/serving/predict"
        assert set(sd["inputs"]) == {"flow", "use_case", "item_id", "price", "viewed_items", "image_emb"}
        seq = sd["inputs"]["viewed_items"]
        assert seq["dtype"] == "DT_INT64"
        assert seq["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "-1", "name": ""}],
                                       "unknown_rank": False}
        assert sd["inputs"]["flow"]["dtype"] == "DT_STRING"
        assert sd["outputs"]["probability"]["dtype"] == "DT_FLOAT"
        assert set(sigs["score_all"]["outputs"]) == {"probabilities", "use_cases"}


def test_a_columnar_body_is_read_by_simdjson(served, monkeypatch):
    """A well-formed columnar body takes grec_tf.serving.columnar_body (no Python object per value) and is
    answered like the in-process call; a malformed one still gets the checked path's message."""
    client, registry = served
    taken = []
    tensors = columnar_body.ColumnarBody.tensors

    def spy(self, specs):
        out = tensors(self, specs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(columnar_body.ColumnarBody, "tensors", spy)
    batch = make_batch(5, seed=4)
    status, body = client.post(PREDICT, raw=orjson.dumps({"inputs": to_columnar_json(batch)}))
    assert status == 200, body
    assert taken == [True]
    np.testing.assert_allclose(body["outputs"], _in_process(registry, batch)["probability"], rtol=1e-6)
    ragged = to_columnar_json(batch)
    ragged["image_emb"][1] = [ragged["image_emb"][1][:1]] + ragged["image_emb"][1][1:]  # a nested number
    status, body = client.post(PREDICT, raw=orjson.dumps({"inputs": ragged}))
    assert status == 400 and taken == [True, False]
    assert "image_emb" in body["error"], body


@pytest.mark.parametrize("versioned", [False, True])
def test_predict_row_and_columnar(served, versioned):
    client, registry = served
    path = f"/v1/models/{MODEL}/versions/1:predict" if versioned else PREDICT
    batch = make_batch(7, seed=3)
    expected = _in_process(registry, batch)["probability"]

    status, body = client.post(path, {"instances": to_instances_json(batch)})
    assert status == 200, body
    assert list(body) == ["predictions"]
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)  # one output: a list of values

    status, body = client.post(path, {"signature_name": "serving_default", "inputs": to_columnar_json(batch)})
    assert status == 200, body
    assert list(body) == ["outputs"]
    np.testing.assert_allclose(body["outputs"], expected, rtol=1e-6)


def test_predict_second_signature_with_several_outputs(served):
    client, registry = served
    batch = make_batch(4, seed=5)
    expected = _in_process(registry, batch, "score_all")
    status, body = client.post(PREDICT, {"signature_name": "score_all", "instances": to_instances_json(batch)})
    assert status == 200, body
    rows = body["predictions"]  # several outputs: one object per row
    assert len(rows) == 4 and set(rows[0]) == {"probabilities", "use_cases"}
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected["probabilities"], rtol=1e-6)
    assert rows[2]["use_cases"] == list(USE_CASES)

    status, body = client.post(PREDICT, {"signature_name": "score_all", "inputs": to_columnar_json(batch)})
    assert status == 200, body
    np.testing.assert_allclose(body["outputs"]["probabilities"], expected["probabilities"], rtol=1e-6)
    assert body["outputs"]["use_cases"] == [list(USE_CASES)] * 4


def test_b64_strings_and_unicode(served):
    client, registry = served
    batch = make_batch(2, seed=8)
    rows = to_instances_json(batch)
    rows[0]["flow"] = {"b64": "QUFM"}  # "AAL"
    rows[1]["flow"] = "Zürich ✓"
    batch["flow"] = np.array([b"AAL", "Zürich ✓".encode()], dtype=object)
    status, body = client.post(PREDICT, {"instances": rows})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], _in_process(registry, batch)["probability"], rtol=1e-6)


def _bad_requests():
    good = to_instances_json(make_batch(2, seed=1))
    cols = to_columnar_json(make_batch(2, seed=1))
    ragged = [dict(good[0]), dict(good[1], viewed_items=[1, 2])]
    missing = [dict(good[0]), {k: v for k, v in good[1].items() if k != "price"}]
    wrong_dtype = [dict(good[0], item_id="not a number"), dict(good[1], item_id="x")]
    return [
        # (name, method, path, raw body, expected status, substring of the error)
        ("malformed json", "POST", PREDICT, b'{"instances": [', 400, "JSON Parse error"),
        ("not an object", "POST", PREDICT, b"[1, 2]", 400, "Is not object"),
        ("deeply nested json", "POST", PREDICT, b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400,
         "JSON Parse error"),
        ("not utf-8", "POST", PREDICT, b'{"instances": ["\xff\xfe"]}', 400, "JSON Parse error"),
        ("both formats", "POST", PREDICT, json.dumps({"instances": good, "inputs": cols}).encode(), 400,
         "only one of 'inputs' or 'instances'"),
        ("neither format", "POST", PREDICT, b'{"signature_name": "serving_default"}', 400,
         "Missing 'inputs' or 'instances'"),
        ("unknown signature", "POST", PREDICT, json.dumps({"signature_name": "nope", "instances": good}).encode(),
         400, 'Serving signature name: "nope" not found'),
        ("wrong dtype", "POST", PREDICT, json.dumps({"instances": wrong_dtype}).encode(), 400, "item_id"),
        ("missing input", "POST", PREDICT, json.dumps({"instances": missing}).encode(), 400,
         "missing input(s) 'price'"),
        ("missing columnar input", "POST", PREDICT,
         json.dumps({"inputs": {k: v for k, v in cols.items() if k != "flow"}}).encode(), 400,
         "Missing named input: flow"),
        ("ragged batch", "POST", PREDICT, json.dumps({"instances": ragged}).encode(), 400, "input 'viewed_items'"),
        ("unknown model", "POST", "/v1/models/nope:predict", json.dumps({"instances": good}).encode(), 404,
         "Servable not found for request: Latest(nope)"),
        ("unknown version", "POST", f"/v1/models/{MODEL}/versions/42:predict",
         json.dumps({"instances": good}).encode(), 404, f"Specific({MODEL}, 42)"),
        ("unknown model status", "GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("unknown version status", "GET", f"/v1/models/{MODEL}/versions/42", None, 404,
         f"Could not find version 42 of model {MODEL}"),
        ("unknown version metadata", "GET", f"/v1/models/{MODEL}/versions/42/metadata", None, 404,
         f"Specific({MODEL}, 42)"),
        ("oversize body", "POST", PREDICT, b'{"instances": [' + b"1," * (600 * 1024) + b"1]}", 413,
         "exceeds the server's limit"),
        ("wrong method on predict", "GET", PREDICT, None, 405, "takes POST"),
        ("wrong method on status", "POST", f"/v1/models/{MODEL}", b"{}", 405, "take GET"),
        ("classify on a predict model", "POST", f"/v1/models/{MODEL}:classify", b'{"examples": [{}]}', 400,
         ":predict"),
        ("malformed v1 path", "GET", f"/v1/models/{MODEL}/versions/abc", None, 400, "Malformed request"),
        ("missing model name", "GET", "/v1/models", None, 400, "Missing model name"),
        ("unknown path", "GET", "/index.html", None, 404, "Not found"),
        ("huge version number", "GET", f"/v1/models/{MODEL}/versions/99999999999999999999", None, 400,
         "Failed to convert version"),
    ]


@pytest.mark.parametrize("name,method,path,raw,status,needle", _bad_requests(), ids=[c[0] for c in _bad_requests()])
def test_errors_answer_4xx_and_keep_serving(served, name, method, path, raw, status, needle):
    client, registry = served
    got_status, body = client.call(method, path, raw=raw)
    assert got_status == status, (name, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert needle in body["error"], body["error"]
    _assert_still_serving(client, registry)


def test_oversize_chunked_body_is_refused(served):
    client, registry = served
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=60)
    try:
        chunks = (b'{"instances": [' if i == 0 else b"1," * 4096 for i in range(300))  # ~2.4 MB, no length
        conn.request("POST", PREDICT, body=chunks, encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert "exceeds" in json.loads(resp.read())["error"]
    finally:
        conn.close()
    _assert_still_serving(client, registry)


def test_concurrent_clients_get_in_process_results(served):
    """8 clients x 200 requests over keep-alive connections: no error, every answer equals in-process."""
    client, registry = served
    n_clients, n_requests = 8, 200
    cases = []
    for i in range(8):  # a few distinct requests in both formats and both signatures
        batch = make_batch(1 + 3 * i, seed=100 + i)
        sig = "score_all" if i % 2 else "serving_default"
        expected = _in_process(registry, batch, sig)
        key = "probabilities" if sig == "score_all" else "probability"
        fmt = "instances" if i % 4 < 2 else "inputs"
        body = {"signature_name": sig, fmt: to_instances_json(batch) if fmt == "instances" else to_columnar_json(batch)}
        cases.append((json.dumps(body).encode(), fmt, key, expected[key]))
    errors = []

    def worker(c):
        conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=60)
        try:
            for r in range(n_requests):
                raw, fmt, key, expected = cases[(c + r) % len(cases)]
                conn.request("POST", PREDICT, body=raw, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = json.loads(resp.read())
                if resp.status != 200:
                    errors.append((resp.status, data))
                    return
                if fmt == "instances":
                    got = data["predictions"] if key == "probability" else [p[key] for p in data["predictions"]]
                else:
                    got = data["outputs"] if key == "probability" else data["outputs"][key]
                if not np.allclose(got, expected, rtol=1e-6, atol=0):
                    errors.append(("mismatch", c, r))
                    return
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=170)
    assert not any(t.is_alive() for t in threads), "clients did not finish"
    assert errors == []
