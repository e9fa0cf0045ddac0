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


def test_frozen_heap_frees_the_swapped_out_version(toy_exports, tmp_path):
    """The server process's registry freezes the loaded model out of the collector's walks, and a swap
    still frees the old version, also when a request held it during the swap (in a subprocess:
    gc.freeze is process-wide)."""
    import subprocess
    import sys

    from tests.serving.conftest import copy_base
    base = copy_base(toy_exports, tmp_path)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"""
import gc, os, shutil, weakref
import grec_tf
from grec_tf.serving.model_registry import ModelRegistry
plain = ModelRegistry("{MODEL}", {base!r}, poll_seconds=0).start()
print("plain", gc.get_freeze_count())
frozen_base = {base!r} + "-frozen"
shutil.copytree({base!r}, frozen_base)
registry = ModelRegistry("{MODEL}", frozen_base, poll_seconds=0, freeze_heap=True).start()
after_load = gc.get_freeze_count()
held = registry.get("{MODEL}")  # a request still running on version 1 while version 2 arrives
v1 = weakref.ref(held.loaded)
shutil.copytree({toy_exports["v2_source"]!r}, os.path.join(frozen_base, "2"))
registry.poll_once()
assert registry.get("{MODEL}").version == 2
during = gc.get_freeze_count()
del held
registry.poll_once()  # the next poll collects what requests still held at the swap
print("frozen", after_load, during, gc.get_freeze_count(), v1() is None)
"""
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines() if line.split(" ")[0] in
                 ("plain", "frozen"))
    assert lines["plain"] == "0"  # without freeze_heap nothing is frozen
    after_load, during, after, freed = lines["frozen"].split()
    after_load, during, after = int(after_load), int(during), int(after)
    assert after_load > 10000  # the loaded model's objects (and everything before) are frozen
    held_version = during - after_load
    assert held_version > 1000  # version 1 was frozen too while the request held it
    assert after - after_load < held_version / 4 and freed == "True"  # and is gone after the next poll
