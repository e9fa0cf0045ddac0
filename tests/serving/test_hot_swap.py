"""New version folders are picked up while serving, without restart and without failed requests."""
import json
import os
import shutil
import threading
import time

import numpy as np

from grec_tf.serving.model_registry import load_served_model
from tests.serving.conftest import MODEL
from tests.serving.toy_model import make_batch, to_instances_json

PREDICT = f"/v1/models/{MODEL}:predict"


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _status(client):
    return {s["version"]: s for s in client.get(f"/v1/models/{MODEL}")[1]["model_version_status"]}


def test_hot_swap_and_broken_version(served, toy_exports):
    client, registry = served
    base = registry.model_base_path
    batch = make_batch(5, seed=21)
    v1 = load_served_model(MODEL, 1, os.path.join(base, "1")).signature("serving_default").predict(batch)
    v2 = load_served_model(MODEL, 2, toy_exports["v2_source"]).signature("serving_default").predict(batch)
    assert not np.allclose(v1["probability"], v2["probability"])  # versions are distinguishable
    body = {"instances": to_instances_json(batch)}
    status, out = client.post(PREDICT, body)
    assert status == 200
    np.testing.assert_allclose(out["predictions"], v1["probability"], rtol=1e-6)

    # Keep a client busy while the new version is copied in and swapped: no request may fail.
    stop, failures, answered = threading.Event(), [], []

    def hammer():
        while not stop.is_set() and len(answered) < 5000:
            s, o = client.post(PREDICT, body)
            if s != 200:
                failures.append((s, o))
            answered.append(s)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        # A plain (non-atomic) copy, as a user would do by hand.
        shutil.copytree(toy_exports["v2_source"], os.path.join(base, "2"))
        assert _wait_for(lambda: _status(client).get("2", {}).get("state") == "AVAILABLE"), _status(client)
    finally:
        stop.set()
        t.join(timeout=60)
    assert failures == [] and answered

    st = _status(client)
    assert st["2"] == {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert st["1"]["state"] == "END"
    assert list(_status(client)) == ["2", "1"]  # newest first
    status, out = client.post(PREDICT, body)
    assert status == 200
    np.testing.assert_allclose(out["predictions"], v2["probability"], rtol=1e-6)
    assert client.post(f"/v1/models/{MODEL}/versions/2:predict", body)[0] == 200
    status, out = client.post(f"/v1/models/{MODEL}/versions/1:predict", body)
    assert status == 404 and "Specific(toy, 1)" in out["error"]
    assert client.get(f"/v1/models/{MODEL}/metadata")[1]["model_spec"]["version"] == "2"

    # A broken version 3 is reported, the server keeps serving version 2 ...
    broken = os.path.join(base, "3")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"this is not a SavedModel")
    assert _wait_for(lambda: _status(client).get("3", {}).get("state") == "END")
    st3 = client.get(f"/v1/models/{MODEL}/versions/3")[1]["model_version_status"][0]
    assert st3["status"]["error_code"] != "OK" and st3["status"]["error_message"]
    status, out = client.post(PREDICT, body)
    assert status == 200
    np.testing.assert_allclose(out["predictions"], v2["probability"], rtol=1e-6)

    # ... and is retried once its files change (e.g. the copy finished).
    shutil.rmtree(broken)
    tmp = os.path.join(base, ".tmp-3")
    shutil.copytree(os.path.join(base, "1"), tmp)
    os.rename(tmp, broken)
    assert _wait_for(lambda: _status(client).get("3", {}).get("state") == "AVAILABLE"), _status(client)
    status, out = client.post(PREDICT, body)
    np.testing.assert_allclose(out["predictions"], v1["probability"], rtol=1e-6)  # 3 holds v1's weights
    assert json.loads(json.dumps(_status(client)["2"]))["state"] == "END"
