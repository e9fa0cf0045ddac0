"""Fixtures for the serving tests: toy SavedModels (two versions) and running local servers."""
import http.client
import json
import os
import shutil
from typing import Any, Optional, Tuple

import grec_tf  # noqa: F401
import pytest

from grec_tf.serving.grpc_server import GrpcServer
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.monitoring import ServingMetrics
from grec_tf.serving.rest_server import ServerThread
from grec_tf.serving.versioned_export import export_saved_model
from tests.serving.toy_model import save_toy_model

MODEL = "toy"


@pytest.fixture(scope="session")
def toy_exports(tmp_path_factory) -> dict:
    """``{"export_dir", "v1", "v2_source"}``: version 1 exported, a version-2 SavedModel kept aside."""
    root = tmp_path_factory.mktemp("exports")
    export_dir = str(root / "exports")
    v1 = export_saved_model(lambda p: save_toy_model(p, bias=0.0), export_dir, MODEL)
    v2_source = str(root / "v2_source")
    save_toy_model(v2_source, bias=3.0)
    return {"export_dir": export_dir, "v1": v1, "v2_source": v2_source}


def copy_base(toy_exports: dict, dest) -> str:
    base = os.path.join(str(dest), MODEL)
    shutil.copytree(os.path.join(toy_exports["export_dir"], MODEL), base)
    return base


class Client:
    """Minimal HTTP client (stdlib) returning (status, parsed JSON or raw text)."""

    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
             headers: Optional[dict] = None) -> Tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            text = resp.read()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text.decode("utf-8", "replace")
        finally:
            conn.close()

    def get(self, path: str):
        return self.call("GET", path)

    def post(self, path: str, body: Any = None, raw: Optional[bytes] = None):
        return self.call("POST", path, body=body, raw=raw)


@pytest.fixture(scope="module")
def served(toy_exports, tmp_path_factory):
    """A server on a private copy of the exports (version 1), 1 MiB body limit; yields (client, registry)."""
    base = copy_base(toy_exports, tmp_path_factory.mktemp("served"))
    registry = ModelRegistry(MODEL, base, poll_seconds=0.2)
    server = ServerThread(registry, max_body_bytes=1 << 20, num_threads=4).start()
    try:
        yield Client(server.port), registry
    finally:
        server.stop()


@pytest.fixture(scope="module")
def both_apis(toy_exports, tmp_path_factory):
    """gRPC and REST servers over one registry and one set of metrics, as ``pipelines.serve`` runs them;
    yields ``{"grpc_address", "rest": Client, "registry", "metrics"}``."""
    base = copy_base(toy_exports, tmp_path_factory.mktemp("both_apis"))
    registry = ModelRegistry(MODEL, base, poll_seconds=0).start()
    metrics = ServingMetrics(registry)
    grpc_server = GrpcServer(registry, metrics, max_message_bytes=1 << 20, num_threads=4).start()
    rest = ServerThread(registry, max_body_bytes=1 << 20, num_threads=4, metrics=metrics).start()
    try:
        yield {"grpc_address": grpc_server.address, "rest": Client(rest.port), "registry": registry,
               "metrics": metrics}
    finally:
        rest.stop(stop_registry=False)
        grpc_server.stop()
        registry.stop()
