"""Export and serving: TF Serving-ready versioned SavedModels and a local TF Serving REST API v1 server.

- :mod:`grec_tf.serving.versioned_export`: ``export_saved_model`` / ``next_version`` (atomic
  ``{export_dir}/{model_name}/{version}/``).
- :mod:`grec_tf.serving.rest_server`: ``RestServer``, ``ServerThread``, ``main`` (``python -m pipelines.serve``).
- :mod:`grec_tf.serving.model_registry`: version discovery, loading and hot swap.
- :mod:`grec_tf.serving.request_codec`: JSON <-> tensors in TF Serving's row and columnar formats.

Only the export helpers are imported here, so exporting does not pull in aiohttp.
"""
from grec_tf.serving.versioned_export import ExportError, export_saved_model, list_versions, next_version

__all__ = ["ExportError", "export_saved_model", "list_versions", "next_version"]
