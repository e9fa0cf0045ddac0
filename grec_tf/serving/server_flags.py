"""The flags of ``python -m pipelines.serve`` and their checks; imports neither TensorFlow nor aiohttp.

They live apart from :mod:`grec_tf.serving.model_server` (whose model registry imports TensorFlow, a
few seconds) so that ``--help`` and a wrong flag are answered at once: the server machinery is
imported only once the flags are known to be valid. Flag names and meanings mirror
``tensorflow_model_server``'s: ``--port`` is the gRPC port, ``--rest_api_port`` the REST port (0
turns the REST API off). Beyond TF Serving, ``--port 0`` binds the gRPC API to a free port (TF
Serving refuses 0) and the REST API defaults to 8501 (TF Serving's default is 0, off).
"""
import argparse
import os
import socket
import sys
from typing import List, Optional

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_API_PORT = 8501
_MAX_PORT = 65535


def default_worker_threads() -> int:
    """Worker threads of each API when not given: enough to overlap decoding with TensorFlow's work."""
    return max(4, 2 * (os.cpu_count() or 1))


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.serve",
        description="Serve the SavedModel versions under --model_base_path with TF Serving's gRPC API and "
                    "REST API v1, and Prometheus metrics at /monitoring/prometheus/metrics on the REST port "
                    "(flags named like tensorflow_model_server's).")
    p.add_argument("--model_base_path", required=True,
                   help="folder holding one sub-folder per version, e.g. exports/grec (containing 1/, 2/, ...)")
    p.add_argument("--model_name", default="grec", help="name in the URL /v1/models/NAME (default: grec)")
    p.add_argument("--port", type=int, default=DEFAULT_GRPC_PORT,
                   help=f"gRPC port (default {DEFAULT_GRPC_PORT}, as TF Serving; 0 picks a free port)")
    p.add_argument("--rest_api_port", type=int, default=DEFAULT_REST_API_PORT,
                   help=f"REST API and metrics port (default {DEFAULT_REST_API_PORT}; 0 turns the REST API off, "
                        "as in TF Serving)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1; use 0.0.0.0 to accept remote clients)")
    p.add_argument("--max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help="largest request accepted: REST bodies (bigger ones get HTTP 413) and gRPC messages "
                        f"(RESOURCE_EXHAUSTED) (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--poll_seconds", "--file_system_poll_wait_seconds", dest="poll_seconds", type=float,
                   default=1.0, help="how often to look for new versions (default 1; 0 = only at start)")
    p.add_argument("--rest_api_num_threads", type=int, default=None,
                   help="REST worker threads for decoding, prediction and encoding (default max(4, 2 x CPUs))")
    p.add_argument("--grpc_max_threads", type=int, default=None,
                   help="gRPC worker threads (default max(4, 2 x CPUs))")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="threads that split one op across cores (default 0: TensorFlow's choice)")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="threads that run independent ops side by side (default 0: TensorFlow's choice)")
    return p


def flag_error(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with parsed flags, naming the flag and the value; None when they are usable."""
    if not os.path.isdir(args.model_base_path):
        return (f"--model_base_path {args.model_base_path} is not a folder; expected the folder that holds "
                f"the numbered version folders, e.g. exports/{args.model_name} containing 1/saved_model.pb")
    for flag in ("port", "rest_api_port"):
        if not 0 <= getattr(args, flag) <= _MAX_PORT:
            return f"--{flag} must be a port number from 0 to {_MAX_PORT}, got {getattr(args, flag)}"
    if args.port and args.port == args.rest_api_port:
        return (f"--port (gRPC) and --rest_api_port (REST) are both {args.port}; give them different ports "
                "(TF Serving's are 8500 and 8501)")
    for flag in ("rest_api_num_threads", "grpc_max_threads"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            return f"--{flag} must be positive, got {getattr(args, flag)}"
    if args.max_body_bytes <= 0:
        return f"--max_body_bytes must be positive, got {args.max_body_bytes}"
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(args, flag) < 0:
            return f"--{flag} must be >= 0 (0 = TensorFlow's choice), got {getattr(args, flag)}"
    return None


def parse_flags(argv: Optional[List[str]] = None) -> Optional[argparse.Namespace]:
    """Parsed and checked flags, or None after printing ``error: ...`` to stderr for a wrong value.

    ``--help`` and malformed flags exit from argparse (status 0 and 2) as usual."""
    args = build_arg_parser().parse_args(argv)
    error = flag_error(args)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return None
    return args


def pick_free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port free on ``host`` right now, for a ``--rest_api_port`` that must not be 0 (which turns
    the REST API off); the server announces the ports it bound, so the rare port taken in between
    shows as a clear error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
