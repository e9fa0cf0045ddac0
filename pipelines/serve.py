"""Serve exported SavedModels with TF Serving's REST API v1 (local development and tests).

    python -m pipelines.serve --model_base_path exports/grec --model_name grec --port 8501

Flags mirror ``tensorflow_model_server`` (``--rest_api_port`` is accepted as an alias of ``--port``),
so the same client works against this server and against TF Serving started on the same folder;
see docs/serving.md. ``--help`` and wrong flags are answered before TensorFlow is imported.
"""
import sys
from typing import List, Optional

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from grec_tf.serving.server_flags import parse_flags


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_flags(argv)
    if args is None:
        return 2
    from grec_tf.serving.rest_server import run_server  # imports TensorFlow: only for valid flags

    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
