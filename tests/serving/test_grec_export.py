"""The exported GRec SavedModel: both signatures, raw inputs, reload without project code, and the
local REST and gRPC servers answering with the in-memory model's predictions."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import grec_tf  # noqa: F401
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.data.feature_statistics import compute_feature_statistics
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.rest_server import ServerThread
from grec_tf.serving.signatures import export_model
from grec_tf.experiment import Experiment
from tests.serving.conftest import Client
from tests.tiny_experiment import tiny_config, tiny_frame


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = tiny_config()
    train = tiny_frame(512, seed=0)
    model = Experiment(config, statistics=compute_feature_statistics(train, config)).build_model()
    model.fit(make_dataset(frame_to_arrays(train, config), 64, shuffle=True, seed=0), epochs=1, verbose=0)
    frame = tiny_frame(40, seed=5)
    frame.loc[0, "plan"] = "never-seen-plan"
    frame.loc[1, "item_id"] = "never-seen-item"
    frame.loc[2, "query"] = ""
    frame.loc[3, "viewed"] = []
    arrays = frame_to_arrays(frame, config, with_labels=False)
    inputs = {k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()}
    expected = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)["probability"].numpy()
    export_dir = str(tmp_path_factory.mktemp("exports"))
    path = export_model(model, config, export_dir)
    return {"config": config, "model": model, "path": path, "export_dir": export_dir, "inputs": inputs,
            "expected": expected}


def test_saved_model_cli_lists_both_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported["path"]], capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "signature_def['serving_default']" in text and "signature_def['score_all']" in text
    for name in ("flow", "use_case", "plan", "tenure", "query", "viewed", "item_id", "brand", "price", "item_vec"):
        assert f"inputs['{name}']" in text
    for name in ("probability", "probabilities", "use_cases"):
        assert f"outputs['{name}']" in text
    assert "label" not in [line.split("'")[1] for line in text.splitlines() if "inputs['" in line]


RELOAD = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # the WordPiece ops; not project code
data = np.load(sys.argv[1], allow_pickle=True)
loaded = tf.saved_model.load(sys.argv[2])
inputs = {k: tf.constant(data[k].astype(str) if data[k].dtype == object else data[k]) for k in data.files}
p = loaded.signatures["serving_default"](**inputs)["probability"].numpy()
all_inputs = {k: v for k, v in inputs.items() if k != "use_case"}
out = loaded.signatures["score_all"](**all_inputs)
assert not any(m.startswith("grec_tf") or m.startswith("tests") for m in sys.modules), "project code imported"
np.savez(sys.argv[3], p=p, all=out["probabilities"].numpy(), names=out["use_cases"].numpy().astype(str))
"""


def test_reloaded_without_project_code_matches_in_memory(exported, tmp_path):
    inputs_file, result_file = tmp_path / "inputs.npz", tmp_path / "out.npz"
    np.savez(inputs_file, **{k: v.astype(object) if v.dtype.kind == "U" else v for k, v in exported["inputs"].items()})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_USE_LEGACY_KERAS"] = "1"
    run = subprocess.run([sys.executable, "-c", RELOAD, str(inputs_file), exported["path"], str(result_file)],
                         capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    result = np.load(result_file)
    np.testing.assert_allclose(result["p"], exported["expected"], atol=1e-5)
    assert np.all(np.isfinite(result["p"]))  # unknown plan/item, empty query and empty sequence scored
    # score_all: column u is the row scored as use case u
    use_cases = exported["config"].data.use_cases
    assert result["names"].tolist() == [use_cases] * len(result["p"])
    own = [use_cases.index(u) for u in exported["inputs"]["use_case"]]
    np.testing.assert_allclose(result["all"][np.arange(len(own)), own], exported["expected"], atol=1e-5)


def test_rest_server_serves_grec_predictions(exported):
    registry = ModelRegistry("grec", os.path.join(exported["export_dir"], "grec"), poll_seconds=60)
    server = ServerThread(registry, port=0).start()
    try:
        client = Client(server.port)
        inputs = exported["inputs"]
        rows = [{k: (v[i].tolist() if hasattr(v[i], "tolist") else v[i]) for k, v in inputs.items()}
                for i in range(len(inputs["flow"]))]
        status, body = client.post("/v1/models/grec:predict", {"instances": rows})
        assert status == 200, body
        np.testing.assert_allclose(np.array(body["predictions"]), exported["expected"], atol=1e-5)
        columnar = {k: v.tolist() for k, v in inputs.items() if k != "use_case"}
        status, body = client.post("/v1/models/grec/versions/1:predict",
                                   {"signature_name": "score_all", "inputs": columnar})
        assert status == 200, body
        assert np.array(body["outputs"]["probabilities"]).shape == (len(rows), 2)
        status, body = client.post("/v1/models/grec:predict", {"instances": [{**rows[0], "price": "cheap"}]})
        assert status == 400 and "price" in body["error"]
    finally:
        server.stop()


def test_grpc_server_serves_grec_predictions(exported):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from grec_tf.serving.grpc_server import GrpcServer

    registry = ModelRegistry("grec", os.path.join(exported["export_dir"], "grec"), poll_seconds=0).start()
    server = GrpcServer(registry).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def predict(signature_name, features):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "grec"
                request.model_spec.signature_name = signature_name
                for name, values in features.items():
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
                return {k: tf.make_ndarray(v) for k, v in stub.Predict(request, timeout=60).outputs.items()}
            inputs = exported["inputs"]
            np.testing.assert_allclose(predict("serving_default", inputs)["probability"], exported["expected"],
                                       atol=1e-5)
            all_outputs = predict("score_all", {k: v for k, v in inputs.items() if k != "use_case"})
            assert all_outputs["probabilities"].shape == (len(inputs["flow"]), 2)
            assert all_outputs["use_cases"][0].tolist() == [u.encode() for u in exported["config"].data.use_cases]
    finally:
        server.stop()
        registry.stop()
