"""Serve exported SavedModels with TF Serving's REST API v1 (local development and tests).

    python -m pipelines.serve --model_base_path exports/grec --model_name grec --port 8501

Flags mirror ``tensorflow_model_server`` (``--rest_api_port`` is accepted as an alias of ``--port``),
so the same client works against this server and against TF Serving started on the same folder;
see docs/serving.md.
"""
import sys

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from grec_tf.serving.rest_server import main

if __name__ == "__main__":
    sys.exit(main())
