"""Prometheus metrics of the local server, shared by its REST and gRPC APIs.

Served as Prometheus text at ``GET /monitoring/prometheus/metrics`` on the REST port (TF Serving's
path when its ``--monitoring_config_file`` enables Prometheus; here it is always on):

- ``grec_serving_requests_total{model, api, method, signature, status}``: answered requests, by API
  (``rest`` | ``grpc``), method (``predict`` | ``metadata`` | ``status``), signature and canonical
  status code (``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND``, ...);
- ``grec_serving_request_latency_seconds{model, api, method, signature}``: a histogram of the time
  from a request's arrival (body read) to its answer being ready;
- ``grec_serving_model_versions{model, state}``: how many versions of the model are in each state
  (``AVAILABLE`` = loaded and served, ``LOADING``, ``END`` = unloaded or failed to load), read from
  the model registry at scrape time; ``grec_serving_model_version_available{model, version}`` is 1
  for each served version.

Labels take only values the server knows: a model name other than the served one is counted as
``(unknown)`` and a signature the model does not have as ``""``, so requests cannot grow the number
of series without bound. Uses the official ``prometheus_client`` with a registry per server.
"""
import time
from typing import Iterator, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from grec_tf.serving.model_registry import ModelRegistry

METRICS_PATH = "/monitoring/prometheus/metrics"
UNKNOWN_MODEL = "(unknown)"
# From 0.5 ms (one row, in-process scale) to 10 s (a large batch on a loaded machine).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
VERSION_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")


class _ModelVersionCollector:
    """Reads the registry's version states at each scrape, so the numbers are never stale."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        name = self._registry.model_name
        try:
            statuses = self._registry.status(name)["model_version_status"]
        except Exception:  # noqa: BLE001 - no version seen yet: every count is 0
            statuses = []
        counts = GaugeMetricFamily("grec_serving_model_versions", "Versions of the model in each state",
                                   labels=["model", "state"])
        for state in VERSION_STATES:
            counts.add_metric([name, state], sum(s["state"] == state for s in statuses))
        available = GaugeMetricFamily("grec_serving_model_version_available",
                                      "1 for each version loaded and served", labels=["model", "version"])
        for s in statuses:
            if s["state"] == "AVAILABLE":
                available.add_metric([name, s["version"]], 1)
        yield counts
        yield available


class RequestRecord:
    """One request being answered: set ``model``/``signature`` as they become known, then ``finish(code)``."""

    def __init__(self, metrics: "ServingMetrics", api: str, method: str, model: str = ""):
        self._metrics = metrics
        self.api, self.method, self.model = api, method, model
        self.signature = ""
        self._started = time.perf_counter()
        self._finished = False

    def finish(self, code: str) -> None:
        """Count the request with canonical status ``code`` and observe its latency (once)."""
        if not self._finished:
            self._finished = True
            self._metrics.observe(self, code, time.perf_counter() - self._started)


class ServingMetrics:
    """The counters and histograms of one server process; ``exposition()`` renders them."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry
        self.prometheus = CollectorRegistry()
        self.requests = Counter("grec_serving_requests", "Requests answered",
                                ["model", "api", "method", "signature", "status"], registry=self.prometheus)
        self.latency = Histogram("grec_serving_request_latency_seconds", "Time to answer a request",
                                 ["model", "api", "method", "signature"], buckets=LATENCY_BUCKETS,
                                 registry=self.prometheus)
        self.prometheus.register(_ModelVersionCollector(registry))

    def start(self, api: str, method: str, model: str = "") -> RequestRecord:
        return RequestRecord(self, api, method, model)

    def _labels(self, record: RequestRecord) -> Tuple[str, str]:
        model = record.model if record.model == self._registry.model_name else UNKNOWN_MODEL
        current = self._registry._current
        known = current is not None and record.signature in current.signatures
        return model, (record.signature if known else "")

    def observe(self, record: RequestRecord, code: str, seconds: float) -> None:
        model, signature = self._labels(record)
        self.requests.labels(model, record.api, record.method, signature, code).inc()
        self.latency.labels(model, record.api, record.method, signature).observe(seconds)

    def exposition(self) -> Tuple[bytes, str]:
        """The Prometheus text format body and its content type."""
        return generate_latest(self.prometheus), CONTENT_TYPE_LATEST

