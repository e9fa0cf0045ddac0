"""Request errors of the local server, with TF Serving's canonical codes and their HTTP statuses.

TF Serving answers every failed REST call with ``{"error": "<message>"}`` and an HTTP status derived
from the canonical error code of the failure (``tensorflow_serving/model_servers/http_server.cc``).
:class:`ServingError` carries that code so the HTTP layer can answer exactly as TF Serving does.
"""
from grec_tf.errors import GRecError

# Canonical error code -> HTTP status, as in TF Serving's ToHTTPStatusCode().
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(GRecError):
    """A request the server cannot answer; ``code`` is a TF canonical error code name."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown canonical error code {code!r}")
        self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid_argument(message: str) -> ServingError:
    return ServingError(message, "INVALID_ARGUMENT")


def not_found(message: str) -> ServingError:
    return ServingError(message, "NOT_FOUND")
