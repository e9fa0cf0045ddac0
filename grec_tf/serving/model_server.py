"""The server process of ``python -m pipelines.serve``: gRPC and REST over one model registry.

Like ``tensorflow_model_server``, one process loads the versions under ``--model_base_path`` once
(:class:`~grec_tf.serving.model_registry.ModelRegistry`) and answers TF Serving's gRPC API on
``--port`` (:mod:`grec_tf.serving.grpc_server`) and its REST API v1 on ``--rest_api_port``
(:mod:`grec_tf.serving.rest_server`, off when 0), both counted in one set of Prometheus metrics
served at ``/monitoring/prometheus/metrics`` on the REST port. SIGINT or SIGTERM stops both: new
requests are refused, running ones get a few seconds to finish, and the process exits with 0.
"""
import argparse
import asyncio
import logging
import re
import signal
import sys
from typing import Dict, List, Optional, TextIO, Tuple

import uvloop

from grec_tf.serving.grpc_server import GrpcServer
from grec_tf.serving.model_registry import ModelRegistry
from grec_tf.serving.monitoring import METRICS_PATH, ServingMetrics
from grec_tf.serving.rest_server import RestServer, start_site
from grec_tf.serving.server_flags import parse_flags
from grec_tf.serving.thread_pools import configure_thread_pools

GRPC_SERVICES = "tensorflow.serving.PredictionService, tensorflow.serving.ModelService"
_ANNOUNCE_END = "Ctrl-C or SIGTERM stops the server"


def main(argv: Optional[List[str]] = None) -> int:
    """The flags of :mod:`grec_tf.serving.server_flags`; exit status 0, 1 (cannot listen) or 2 (a wrong flag)."""
    args = parse_flags(argv)
    return 2 if args is None else run_server(args)


def run_server(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM with flags checked by :func:`grec_tf.serving.server_flags.parse_flags`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_thread_pools(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism)
    registry = ModelRegistry(args.model_name, args.model_base_path, poll_seconds=args.poll_seconds,
                             freeze_heap=True).start()
    try:
        # uvloop's event loop (libuv, in C) moves the REST bodies with less CPU than asyncio's, on cores
        # TensorFlow shares: 0.910x against 0.891x in-process over 10 interleaved rounds (docs/serving.md).
        return uvloop.run(_serve(registry, ServingMetrics(registry), args))
    finally:
        registry.stop()


async def _serve(registry: ModelRegistry, metrics: ServingMetrics, args: argparse.Namespace) -> int:
    grpc_server = GrpcServer(registry, metrics, args.host, args.port, args.max_body_bytes, args.grpc_max_threads)
    runner, rest_port = None, None
    try:
        grpc_server.start()
        if args.rest_api_port:
            rest = RestServer(registry, args.max_body_bytes, args.rest_api_num_threads, metrics)
            try:
                runner, rest_port = await start_site(rest.make_app(), args.host, args.rest_api_port)
            except OSError as e:
                raise OSError(f"cannot listen for REST on {args.host}:{args.rest_api_port} (--rest_api_port): "
                              f"{e}") from None
        _announce(registry, grpc_server, args.host, rest_port)
        await _signalled()
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if runner is not None:
            await runner.cleanup()
        grpc_server.stop()
    return 0


def _announce(registry: ModelRegistry, grpc_server: GrpcServer, host: str, rest_port: Optional[int]) -> None:
    """Say what is served where (tests and the benchmark read the addresses from these lines)."""
    model = registry._current
    served = f"version {model.version}" if model else "no version yet"
    rest = (f"REST API v1 on http://{host}:{rest_port}  (Prometheus metrics: {METRICS_PATH})" if rest_port
            else "REST API off (--rest_api_port 0)")
    print(f"Serving model '{registry.model_name}' ({served}) from {registry.model_base_path}\n"
          f"  gRPC API ({GRPC_SERVICES}) on {grpc_server.address}\n  {rest}\n"
          f"{_ANNOUNCE_END}", flush=True)


def read_announced_ports(stream: TextIO) -> Tuple[Dict[str, Optional[int]], str]:
    """Read a starting server's stdout up to the end of its announcement (or of the stream):
    ``({"grpc": port or None, "rest": port or None}, the text read)``; None for an API not announced."""
    lines: List[str] = []
    while not (lines and lines[-1].startswith(_ANNOUNCE_END)):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
    text = "".join(lines)
    found = {api: re.search(pattern, text) for api, pattern in
             (("grpc", r"gRPC API \(.*\) on [^\s]+:(\d+)"), ("rest", r"REST API v1 on http://[^\s]+:(\d+)"))}
    return {api: int(m.group(1)) if m else None for api, m in found.items()}, text


async def _signalled() -> None:
    """Return on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
            pass
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
