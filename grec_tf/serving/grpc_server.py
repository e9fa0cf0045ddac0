"""TF Serving's gRPC API for the local server, from the official ``tensorflow-serving-api`` stubs.

Services (the protos of the ``tensorflow-serving-api`` package, registered with its generated
``add_*Servicer_to_server`` functions, so any TF Serving gRPC client works unchanged):

- ``tensorflow.serving.PredictionService``: ``Predict`` and ``GetModelMetadata``
  (``Classify``, ``Regress`` and ``MultiInference`` answer ``UNIMPLEMENTED``: they need
  ``tf.Example`` signatures);
- ``tensorflow.serving.ModelService``: ``GetModelStatus``.

They answer from the same :class:`~grec_tf.serving.model_registry.ModelRegistry` as the REST API,
so both see the same version at any time, with TF Serving's status codes: ``INVALID_ARGUMENT`` for a
bad request (missing or extra input, wrong dtype or shape, unknown signature or output, a
TensorProto that does not decode), ``NOT_FOUND`` for an unknown model or version, ``INTERNAL`` for
a failure of the server itself. Request TensorProtos become tensors (:func:`tensor_to_input`: the
common encodings directly, others through ``tf.make_ndarray``) and outputs become TensorProtos with
``tf.make_tensor_proto``; a tensor whose shape asks for more than
``max_message_bytes`` once decoded is refused before anything is allocated, so no request can make
the server run out of memory, and no request can stop it.
"""
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Mapping, Optional, TypeVar, Union

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from grec_tf.serving.model_registry import ModelRegistry, ServedModel, Signature
from grec_tf.serving.monitoring import RequestRecord, ServingMetrics
from grec_tf.serving.request_codec import COLUMNAR, TF_DTYPE_NAMES, InputSpec, check_shape, expected_inputs
from grec_tf.serving.server_flags import DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, default_worker_threads
from grec_tf.serving.status import ServingError, invalid_argument

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
# Bytes an object array spends per string (a pointer) before the strings themselves.
_OBJECT_BYTES = 8
Response = TypeVar("Response")
InputValue = Union[tf.Tensor, np.ndarray]
# Numeric dtypes whose tensor_content is read directly (what TF Serving clients send for numeric inputs).
_CONTENT_DTYPES = frozenset({tf.float32, tf.float64, tf.int32, tf.int64})


def _fmt_dims(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def tensor_to_input(proto: tensor_pb2.TensorProto, spec: InputSpec, max_bytes: int) -> InputValue:
    """One request TensorProto -> a tensor (or numpy array) of ``spec``'s dtype and an accepted shape.

    Checked before decoding: the dtype equals the signature's, the shape is known with no negative
    dimension, and the decoded value fits in ``max_bytes``; ServingError (INVALID_ARGUMENT) naming
    the input otherwise."""
    where = f"input '{spec.name}'"
    try:
        sent = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise invalid_argument(f"{where}: TensorProto dtype {proto.dtype} is not a TensorFlow DataType; "
                               f"expected {spec.describe()}") from None
    if sent.name != spec.dtype:
        raise invalid_argument(f"{where}: expected {spec.describe()}, got a {_dt(sent)} "
                               f"tensor; build it with tf.make_tensor_proto(values, dtype=tf.{spec.dtype})")
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument(f"{where}: the TensorProto has an unknown rank; expected {spec.describe()}")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid_argument(f"{where}: TensorProto shape {_fmt_dims(dims)} has a negative dimension")
    elements = math.prod(dims)  # exact Python ints (1 for a scalar): 0.1 us where np.prod takes 3 us
    item_bytes = _OBJECT_BYTES if sent == tf.string else sent.size
    if elements * item_bytes > max_bytes:
        raise invalid_argument(f"{where}: TensorProto shape {_fmt_dims(dims)} holds {elements} values, "
                               f"{elements * item_bytes} bytes decoded, more than the server's limit of "
                               f"{max_bytes} bytes (--max_body_bytes)")
    try:
        value = _read_values(proto, sent, dims, elements)
    except (ValueError, TypeError) as e:
        raise invalid_argument(f"{where}: cannot read the TensorProto as {_dt(sent)} of shape "
                               f"{_fmt_dims(dims)}: {e}") from None
    check_shape(value, spec, spec.name, COLUMNAR)
    return value


def _read_values(proto: tensor_pb2.TensorProto, sent: tf.DType, dims: List[int], elements: int) -> InputValue:
    """The values of a checked TensorProto of dtype ``sent`` and shape ``dims``.

    The encodings ``tf.make_tensor_proto`` writes for a full numpy array - numbers as
    ``tensor_content`` of exactly ``elements`` values, strings as one ``string_val`` per element - go
    straight into a tensor of shape [*dims], without the numpy array that ``tf.make_ndarray`` copies
    and the signature call converts again (0.85x the CPU on the 20 inputs of 256 telecom rows);
    anything else (repeated ``*_val`` fields, a short list that TF pads with its last value, other
    dtypes) is read by ``tf.make_ndarray``, which also says what is wrong with a malformed one."""
    content = proto.tensor_content
    if sent == tf.string:
        if not content and elements and len(proto.string_val) == elements:
            # A list converts faster than the protobuf container itself; a vector needs no shape
            # (tf.constant's shape argument costs 2.5 of the 18.5 us of a 256-string vector).
            values = list(proto.string_val)
            if len(dims) == 1:
                return tf.constant(values, dtype=tf.string)
            return tf.constant(values, dtype=tf.string, shape=dims)
    elif sent in _CONTENT_DTYPES and content and len(content) == elements * sent.size:
        return tf.constant(np.frombuffer(content, dtype=sent.as_numpy_dtype).reshape(dims))
    return tf.make_ndarray(proto)


def _dt(dtype: tf.DType) -> str:
    return TF_DTYPE_NAMES.get(dtype.name, dtype.name)


def decode_inputs(inputs: Mapping[str, tensor_pb2.TensorProto], signature: Signature,
                  max_bytes: int) -> Dict[str, InputValue]:
    """``PredictRequest.inputs`` -> ``{input_name: tensor or array}``; the names must be exactly the signature's."""
    sent, wanted = set(inputs), set(signature.inputs)
    if sent != wanted:
        # TF Serving's wording (predict_util.cc), then what the signature takes.
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{','.join(sorted(sent))}}}) "
            f"!= len({{{','.join(sorted(wanted))}}}). Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}. (signature '{signature.name}' takes "
            f"{expected_inputs(signature.inputs)})")
    return {name: tensor_to_input(inputs[name], spec, max_bytes) for name, spec in signature.inputs.items()}


def _output_names(signature: Signature, output_filter) -> list:
    """The outputs a request asks for: ``output_filter`` (checked like TF Serving), or all."""
    names = list(output_filter)
    for i, name in enumerate(names):
        if name not in signature.outputs:
            raise invalid_argument(f"output tensor alias not found in signature: {name} Outputs expected to be "
                                   f"in the set {{{','.join(signature.outputs)}}}.")
        if name in names[:i]:
            raise invalid_argument(f"duplicate output tensor alias: {name}")
    return names or list(signature.outputs)


def _served_model(registry: ModelRegistry, model_spec, record: RequestRecord) -> ServedModel:
    """The model ``model_spec`` names (NOT_FOUND if not served); ``record`` learns its name."""
    if not model_spec.name:
        raise invalid_argument("Missing model name in request.")
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise ServingError(f"model_spec.version_label '{model_spec.version_label}': version labels are not "
                           "supported by this server; set model_spec.version or leave both unset", "UNIMPLEMENTED")
    record.model = model_spec.name
    version = model_spec.version.value if model_spec.HasField("version") else None
    return registry.get(model_spec.name, version)


class _Answering:
    """Runs a request with metrics; a ServingError becomes its gRPC status, anything else INTERNAL."""

    def __init__(self, registry: ModelRegistry, metrics: ServingMetrics, max_message_bytes: int):
        self.registry, self.metrics, self.max_message_bytes = registry, metrics, max_message_bytes

    def _answer(self, context: grpc.ServicerContext, method: str,
                build: Callable[[RequestRecord], Response]) -> Response:
        record = self.metrics.start("grpc", method)
        try:
            response = build(record)
        except ServingError as e:
            record.finish(e.code)
            context.abort(grpc.StatusCode[e.code], str(e))
        except Exception as e:  # noqa: BLE001 - never let a request take the server down
            logger.exception("internal error answering gRPC %s", method)
            record.finish("INTERNAL")
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {type(e).__name__}: {e}")
        record.finish("OK")
        return response


class PredictionServicer(_Answering, prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``: ``Predict`` and ``GetModelMetadata``."""

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):  # noqa: N802
        return self._answer(context, "predict", lambda record: self._predict(request, record))

    def _predict(self, request: predict_pb2.PredictRequest, record: RequestRecord) -> predict_pb2.PredictResponse:
        model = _served_model(self.registry, request.model_spec, record)
        signature = model.signature(request.model_spec.signature_name)
        record.signature = signature.name
        names = _output_names(signature, request.output_filter)
        outputs = signature.predict(decode_inputs(request.inputs, signature, self.max_message_bytes))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature.name
        for name in names:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context: grpc.ServicerContext):
        return self._answer(context, "metadata", lambda record: self._metadata(request, record))

    def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                  record: RequestRecord) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field "
                                   f"(this server has: {SIGNATURE_DEF_FIELD})")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported (this server has: "
                                       f"{SIGNATURE_DEF_FIELD})")
        model = _served_model(self.registry, request.model_spec, record)
        # The registry keeps the signature_def map as proto JSON (the REST body); it parses back exactly.
        signature_defs = json_format.ParseDict(model.signature_def_json, get_model_metadata_pb2.SignatureDefMap())
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
        return response


class ModelServicer(_Answering, model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: ``GetModelStatus`` (``HandleReloadConfigRequest`` is UNIMPLEMENTED)."""

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context: grpc.ServicerContext):
        return self._answer(context, "status", lambda record: self._status(request, record))

    def _status(self, request: get_model_status_pb2.GetModelStatusRequest,
                record: RequestRecord) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        if not spec.name:
            raise invalid_argument("Missing model name in request.")
        record.model = spec.name
        version = spec.version.value if spec.HasField("version") else None
        status = self.registry.status(spec.name, version)
        return json_format.ParseDict(status, get_model_status_pb2.GetModelStatusResponse())


class GrpcServer:
    """Both services on one ``grpc.server`` with a thread pool; ``start()`` binds, ``stop()`` drains.

    >>> server = GrpcServer(registry, metrics).start()   # port 0: a free port
    >>> server.address   # '127.0.0.1:PORT'
    """

    def __init__(self, registry: ModelRegistry, metrics: Optional[ServingMetrics] = None,
                 host: str = DEFAULT_HOST, port: int = 0, max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 num_threads: Optional[int] = None):
        self.registry = registry
        self.metrics = metrics or ServingMetrics(registry)
        self.host, self.port = host, port
        self.max_message_bytes = int(max_message_bytes)
        self.num_threads = num_threads or default_worker_threads()
        self._server: Optional[grpc.Server] = None

    @property
    def address(self) -> str:
        """``host:port`` as gRPC targets write it (an IPv6 host in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> "GrpcServer":
        """Bind and serve; OSError naming the address when it cannot listen there."""
        server = grpc.server(ThreadPoolExecutor(max_workers=self.num_threads, thread_name_prefix="grpc"),
                             options=[("grpc.max_receive_message_length", self.max_message_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])  # a busy port is an error, not shared
        args = (self.registry, self.metrics, self.max_message_bytes)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(*args), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(*args), server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as e:
            bound, reason = 0, f": {e}"
        else:
            reason = ""
        if not bound:
            raise OSError(f"cannot listen for gRPC on {self.address} (--port){reason}")
        server.start()
        self._server, self.port = server, bound
        return self

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Refuse new RPCs, let running ones finish for up to ``grace_seconds``, then close."""
        if self._server is not None:
            self._server.stop(grace_seconds).wait(grace_seconds + 5)
            self._server = None
