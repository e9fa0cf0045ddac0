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

Run it with ``python -m pipelines.serve --model_base_path exports/grec --model_name grec --port 8501``
(flags in :mod:`grec_tf.serving.server_flags`, which answers ``--help`` without importing TensorFlow).
"""
import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional
from urllib.parse import unquote

from aiohttp import web

from grec_tf.serving import request_codec
from grec_tf.serving.json_tensors import to_tensor
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.server_flags import build_arg_parser  # noqa: F401  (this module's CLI, re-exported)
from grec_tf.serving.server_flags import DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, parse_flags
from grec_tf.serving.status import ServingError, invalid_argument
from grec_tf.serving.thread_pools import configure_thread_pools

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
                 num_threads: Optional[int] = None):
        self.registry = registry
        self.max_body_bytes = int(max_body_bytes)
        self.num_threads = num_threads or max(4, 2 * (os.cpu_count() or 1))
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
        method = request.method
        try:
            m = PREDICT_RE.fullmatch(path)
            if m:
                if method != "POST":
                    return _error(f"Malformed request: {method} {path}; :{m.group(3).lower()} takes POST", 405,
                                  {"Allow": "POST"})
                body = await self._read_body(request)
                if isinstance(body, web.Response):
                    return body
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(self._pool, self._predict, unquote(m.group(1)),
                                                 _parse_version(m.group(2)), m.group(3).lower(), body)
                return _json_response(out)
            m = STATUS_RE.fullmatch(path)
            if m:
                if method != "GET":
                    return _error(f"Malformed request: {method} {path}; model status and metadata take GET", 405,
                                  {"Allow": "GET"})
                name = unquote(m.group(1) or "")
                if not name:
                    raise invalid_argument("Missing model name in request.")
                version = _parse_version(m.group(2))
                if m.group(3):
                    doc = self.registry.get(name, version).metadata_json()
                else:
                    doc = self.registry.status(name, version)
                return _json_response(request_codec.dump_json(doc))
            if V1_RE.fullmatch(path):
                raise invalid_argument(f"Malformed request: {method} {path}")
            return _error(f"Not found: {method} {path}; this server answers TF Serving's REST API under /v1/models/",
                          404)
        except ServingError as e:
            return _error(str(e), e.http_status)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never let a request take the server down
            logger.exception("internal error answering %s %s", method, path)
            return _error(f"Internal error: {type(e).__name__}: {e}", 500)

    async def _read_body(self, request: web.Request):
        too_big = (f"Request body exceeds the server's limit of {self.max_body_bytes} bytes "
                   "(--max_body_bytes); send smaller batches")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _error(too_big + f" (Content-Length: {request.content_length})", 413)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(too_big, 413)

    # ------------------------------------------------------------------- worker-thread parts
    def _predict(self, model_name: str, version: Optional[int], verb: str, body: bytes) -> bytes:
        doc = request_codec.parse_json(body)
        signature_name = request_codec.read_signature_name(doc)
        model = self.registry.get(model_name, version)
        if verb != "predict":
            raise invalid_argument(f":{verb} needs a signature with method_name tensorflow/serving/{verb} "
                                   "(tf.Example inputs); this server implements :predict")
        signature = model.signature(signature_name)
        tensors, fmt = request_codec.decode_predict_request(doc, signature.inputs, signature_name, to_tensor)
        outputs = signature.predict(tensors)
        return request_codec.encode_predict_response(outputs, fmt)


async def _start_site(app: web.Application, host: str, port: int):
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
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, num_threads: Optional[int] = None):
        self.registry = registry
        self.host, self.port = host, port
        self.server = RestServer(registry, max_body_bytes=max_body_bytes, num_threads=num_threads)
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
                _start_site(self.server.make_app(), self.host, self.port))
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


async def _serve(server: RestServer, host: str, port: int) -> None:
    runner, bound_port = await _start_site(server.make_app(), host, port)
    model = server.registry._current
    served = f"version {model.version}" if model else "no version yet"
    print(f"Serving model '{server.registry.model_name}' ({served}) from {server.registry.model_base_path} "
          f"with TF Serving's REST API v1 on http://{host}:{bound_port}  (Ctrl-C to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m grec_tf.serving.rest_server`` (as the serving benchmark starts it): the flags of
    :mod:`grec_tf.serving.server_flags`; exit status 0, 1 (cannot listen) or 2 (a wrong flag)."""
    args = parse_flags(argv)
    return 2 if args is None else run_server(args)


def run_server(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM with flags checked by :func:`grec_tf.serving.server_flags.parse_flags`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_thread_pools(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism)
    registry = ModelRegistry(args.model_name, args.model_base_path, poll_seconds=args.poll_seconds,
                             freeze_heap=True).start()
    server = RestServer(registry, max_body_bytes=args.max_body_bytes, num_threads=args.rest_api_num_threads)
    try:
        asyncio.run(_serve(server, args.host, args.port))
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
