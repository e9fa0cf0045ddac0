"""A local server speaking TF Serving's REST API v1, on aiohttp, for any SavedModel's signatures.

Endpoints (paths matched case-insensitively like TF Serving's ``(?i)/v1/...`` patterns):

- ``GET  /v1/models/{name}[/versions/{v}]``           model status (GetModelStatusResponse JSON)
- ``GET  /v1/models/{name}[/versions/{v}]/metadata``  signature_def map (GetModelMetadataResponse JSON)
- ``POST /v1/models/{name}[/versions/{v}]:predict``   ``instances`` (row) or ``inputs`` (columnar),
  optional ``signature_name``; answered with ``predictions`` / ``outputs``

Errors are ``{"error": "..."}`` with TF Serving's HTTP statuses (400 invalid argument, 404 unknown
model or version, 501 unimplemented, 500 internal), plus 405 for a wrong HTTP method on a known
endpoint (TF Serving answers 400 "Malformed request" there) and 413 for a body over
``max_body_bytes``. JSON decoding, tensor conversion, the model call and JSON encoding run in a
thread pool, so the event loop only moves bytes and many clients are served concurrently; no
request can stop the server.

``GET /monitoring/prometheus/metrics`` answers the Prometheus metrics of both APIs
(:mod:`grec_tf.serving.monitoring`). Run it with ``python -m pipelines.serve --model_base_path
exports/grec --model_name grec --rest_api_port 8501`` (:mod:`grec_tf.serving.model_server` runs it
beside the gRPC API).
"""
import asyncio
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional, Tuple
from urllib.parse import unquote

from aiohttp import web

from grec_tf.serving import columnar_body, request_codec
from grec_tf.serving.json_tensors import to_tensor
from grec_tf.serving.model_registry import ModelRegistry, Signature
from grec_tf.serving.monitoring import METRICS_PATH, RequestRecord, ServingMetrics
from grec_tf.serving.server_flags import DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, default_worker_threads
from grec_tf.serving.status import ServingError, invalid_argument

logger = logging.getLogger(__name__)

_MAX_VERSION = 2 ** 63 - 1

# TF Serving's http_rest_api_util.cc patterns (version labels are not supported here).
PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)", re.IGNORECASE)
STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?", re.IGNORECASE)
V1_RE = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)


def _json_response(body: bytes, status: int = 200, headers: Optional[dict] = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _error(message: str, status: int, headers: Optional[dict] = None) -> web.Response:
    return _json_response(request_codec.error_body(message), status, headers)


class _HttpError(ServingError):
    """An error of the HTTP layer only (405 wrong method, 413 body too large): counted in the metrics
    under canonical ``code``, answered with its own HTTP status and headers."""

    def __init__(self, message: str, code: str, http_status: int, headers: Optional[dict] = None):
        super().__init__(message, code)
        self._http_status = http_status
        self.headers = headers

    @property
    def http_status(self) -> int:
        return self._http_status


def _parse_version(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    version = int(text)
    if version > _MAX_VERSION:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return version


class RestServer:
    """The aiohttp application; ``make_app()`` builds it, :class:`ServerThread`/:func:`serve` run it."""

    def __init__(self, registry: ModelRegistry, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 num_threads: Optional[int] = None, metrics: Optional[ServingMetrics] = None):
        self.registry = registry
        self.metrics = metrics or ServingMetrics(registry)
        self.max_body_bytes = int(max_body_bytes)
        self.num_threads = num_threads or default_worker_threads()
        self._pool: Optional[ThreadPoolExecutor] = None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.num_threads, thread_name_prefix="predict")

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------ routing
    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        if path == METRICS_PATH:
            return self._metrics_response(request.method)
        record = self.metrics.start("rest", method="")
        try:
            response, code = await self._route(request, path, record), "OK"
        except ServingError as e:
            response, code = _error(str(e), e.http_status, getattr(e, "headers", None)), e.code
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let a request take the server down
            logger.exception("internal error answering %s %s", request.method, path)
            response, code = _error(f"Internal error: {type(e).__name__}: {e}", 500), "INTERNAL"
        if record.method:  # an API call (predict, metadata, status), not a stray path
            record.finish(code)
        return response

    async def _route(self, request: web.Request, path: str, record: RequestRecord) -> web.Response:
        method = request.method
        m = PREDICT_RE.fullmatch(path)
        if m:
            record.method, record.model = "predict", unquote(m.group(1))
            if method != "POST":
                raise _HttpError(f"Malformed request: {method} {path}; :{m.group(3).lower()} takes POST",
                                 "INVALID_ARGUMENT", 405, {"Allow": "POST"})
            body = await self._read_body(request)
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self._pool, self._predict, record, _parse_version(m.group(2)),
                                             m.group(3).lower(), body)
            return _json_response(out)
        m = STATUS_RE.fullmatch(path)
        if m:
            record.method, record.model = ("metadata" if m.group(3) else "status"), unquote(m.group(1) or "")
            if method != "GET":
                raise _HttpError(f"Malformed request: {method} {path}; model status and metadata take GET",
                                 "INVALID_ARGUMENT", 405, {"Allow": "GET"})
            if not record.model:
                raise invalid_argument("Missing model name in request.")
            version = _parse_version(m.group(2))
            if m.group(3):
                doc = self.registry.get(record.model, version).metadata_json()
            else:
                doc = self.registry.status(record.model, version)
            return _json_response(request_codec.dump_json(doc))
        if V1_RE.fullmatch(path):
            raise invalid_argument(f"Malformed request: {method} {path}")
        return _error(f"Not found: {method} {path}; this server answers TF Serving's REST API under /v1/models/ "
                      f"and metrics at {METRICS_PATH}", 404)

    def _metrics_response(self, method: str) -> web.Response:
        if method != "GET":
            return _error(f"Malformed request: {method} {METRICS_PATH}; metrics take GET", 405, {"Allow": "GET"})
        body, content_type = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _read_body(self, request: web.Request) -> bytes:
        too_big = (f"Request body exceeds the server's limit of {self.max_body_bytes} bytes "
                   "(--max_body_bytes); send smaller batches")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _HttpError(too_big + f" (Content-Length: {request.content_length})", "RESOURCE_EXHAUSTED", 413)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _HttpError(too_big, "RESOURCE_EXHAUSTED", 413) from None

    # ------------------------------------------------------------------- worker-thread parts
    def _predict(self, record: RequestRecord, version: Optional[int], verb: str, body: bytes) -> bytes:
        request = PredictBody(body)  # a malformed body is refused before the model is looked up
        model = self.registry.get(record.model, version)
        if verb != "predict":
            raise invalid_argument(f":{verb} needs a signature with method_name tensorflow/serving/{verb} "
                                   "(tf.Example inputs); this server implements :predict")
        signature = model.signature(request.signature_name)
        record.signature = signature.name
        return request.answer(signature)


class PredictBody:
    """One ``:predict`` body, JSON to JSON without HTTP: what a REST worker thread does with it.

    A plain columnar body is read by simdjson (:mod:`~grec_tf.serving.columnar_body`); anything else,
    or anything it leaves undecided, by the checked path, which also writes every error message.
    The serving benchmark runs the same class in-process, to tell JSON's cost from HTTP's.
    """

    def __init__(self, body: bytes):
        self._body = body
        self._fast = columnar_body.parse(body)
        self._doc = None if self._fast is not None else request_codec.parse_json(body)
        self.signature_name = (self._fast.signature_name if self._fast is not None
                               else request_codec.read_signature_name(self._doc))

    def tensors(self, signature: Signature) -> Tuple[Dict[str, Any], str]:
        """``({input_name: tensor or array}, request_codec.ROW | COLUMNAR)`` for ``signature``'s inputs."""
        tensors = self._fast.tensors(signature.inputs) if self._fast is not None else None
        if tensors is not None:
            return tensors, request_codec.COLUMNAR
        doc = self._doc if self._doc is not None else request_codec.parse_json(self._body)
        return request_codec.decode_predict_request(doc, signature.inputs, self.signature_name, to_tensor)

    def answer(self, signature: Signature) -> bytes:
        """The response body: ``signature`` run on this body's inputs, written in the request's format."""
        tensors, fmt = self.tensors(signature)
        return request_codec.encode_predict_response(signature.predict(tensors), fmt)


async def start_site(app: web.Application, host: str, port: int) -> Tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: a free port); the runner (``cleanup()`` stops it) and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, bound_port


class ServerThread:
    """Run a server on its own event loop in a daemon thread (tests, benchmarks, notebooks).

    >>> server = ServerThread(registry).start()   # registry.start() is called if not started
    >>> server.url   # 'http://127.0.0.1:PORT'
    >>> server.stop()
    """

    def __init__(self, registry: ModelRegistry, host: str = DEFAULT_HOST, port: int = 0,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, num_threads: Optional[int] = None,
                 metrics: Optional[ServingMetrics] = None):
        self.registry = registry
        self.host, self.port = host, port
        self.server = RestServer(registry, max_body_bytes=max_body_bytes, num_threads=num_threads, metrics=metrics)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        if self.registry._thread is None and self.registry._current is None:
            self.registry.start()
        self._thread = threading.Thread(target=self._run, name="rest-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=60)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner, self.port = loop.run_until_complete(
                start_site(self.server.make_app(), self.host, self.port))
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self, stop_registry: bool = True) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._thread = None
        if stop_registry:
            self.registry.stop()
