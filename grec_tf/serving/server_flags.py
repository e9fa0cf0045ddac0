"""The flags of ``python -m pipelines.serve`` and their checks; imports neither TensorFlow nor aiohttp.

They live apart from :mod:`grec_tf.serving.rest_server` (whose model registry imports TensorFlow, a
few seconds) so that ``--help`` and a wrong flag are answered at once: the server machinery is
imported only once the flags are known to be valid. Flag names mirror ``tensorflow_model_server``'s.
"""
import argparse
import os
import sys
from typing import List, Optional

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.serve",
        description="Serve the SavedModel versions under --model_base_path with TF Serving's REST API v1 "
                    "(flags named like tensorflow_model_server's).")
    p.add_argument("--model_base_path", required=True,
                   help="folder holding one sub-folder per version, e.g. exports/grec (containing 1/, 2/, ...)")
    p.add_argument("--model_name", default="grec", help="name in the URL /v1/models/NAME (default: grec)")
    p.add_argument("--port", "--rest_api_port", dest="port", type=int, default=8501,
                   help="HTTP port (default 8501, TF Serving's REST port; 0 picks a free port)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1; use 0.0.0.0 to accept remote clients)")
    p.add_argument("--max_body_bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body accepted, bigger ones get HTTP 413 (default {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--poll_seconds", "--file_system_poll_wait_seconds", dest="poll_seconds", type=float,
                   default=1.0, help="how often to look for new versions (default 1; 0 = only at start)")
    p.add_argument("--rest_api_num_threads", type=int, default=None,
                   help="worker threads for decoding, prediction and encoding (default max(4, 2 x CPUs))")
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
