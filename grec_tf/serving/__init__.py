"""Export and serving: TF Serving-ready versioned SavedModels and a local server with TF Serving's APIs.

- :mod:`grec_tf.serving.versioned_export`: ``export_saved_model`` / ``next_version`` (atomic
  ``{export_dir}/{model_name}/{version}/``).
- :mod:`grec_tf.serving.model_server`: ``main`` / ``run_server`` (``python -m pipelines.serve``): both APIs
  over one registry.
- :mod:`grec_tf.serving.grpc_server`: ``GrpcServer`` (``PredictionService``, ``ModelService``).
- :mod:`grec_tf.serving.rest_server`: ``RestServer``, ``ServerThread`` (REST API v1).
- :mod:`grec_tf.serving.monitoring`: ``ServingMetrics`` (Prometheus, ``/monitoring/prometheus/metrics``).
- :mod:`grec_tf.serving.model_registry`: version discovery, loading and hot swap.
- :mod:`grec_tf.serving.request_codec`: JSON <-> tensors in TF Serving's row and columnar formats.

Only the export helpers are imported here, so exporting does not pull in aiohttp or gRPC.
"""
from grec_tf.serving.versioned_export import ExportError, export_saved_model, list_versions, next_version

__all__ = ["ExportError", "export_saved_model", "list_versions", "next_version"]
