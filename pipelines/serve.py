"""Serve exported SavedModels with TF Serving's gRPC API and REST API v1 (local development and tests).

    python -m pipelines.serve --model_base_path exports/grec --model_name grec --port 8500 --rest_api_port 8501

Flags mirror ``tensorflow_model_server`` (``--port`` gRPC, ``--rest_api_port`` REST, 0 = REST off),
so the same client works against this server and against TF Serving started on the same folder;
Prometheus metrics are at ``/monitoring/prometheus/metrics`` on the REST port. See docs/serving.md.
``--help`` and wrong flags are answered before TensorFlow is imported.
"""
import sys
from typing import List, Optional

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from grec_tf.serving.server_flags import parse_flags


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_flags(argv)
    if args is None:
        return 2
    from grec_tf.serving.model_server import run_server  # imports TensorFlow: only for valid flags

    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
