"""Version discovery and hot swap of the SavedModel the local server serves.

Mirrors TF Serving's default behaviour for ``--model_base_path``: the base path holds one folder
per version, named by an integer; the highest version is served (the "latest" version policy);
the base path is polled every ``poll_seconds`` (TF Serving's ``--file_system_poll_wait_seconds``,
default 1) and a newer version is loaded in the background and swapped in once it is fully loaded,
so requests never wait for a load and never see a half-loaded model. A version that fails to load
is reported in the model status (state ``END`` with the error) and retried only when its files
change (e.g. a copy that was still in progress). Only all-digit folder names are versions, so the
temporary folders of :func:`grec_tf.serving.versioned_export.export_saved_model` are never seen.

With ``freeze_heap`` (the server process sets it), every swap is followed by a full garbage
collection and ``gc.freeze()``: a loaded GRec SavedModel is about 550k Python objects, and each
full collection that walks them holds the GIL for about 200 ms, which under load came every few
seconds (the objects each request leaves behind add up to a full collection). Frozen, they are
never walked again; the collection before the freeze frees the version swapped out, and a second
one at the next poll frees what requests still held at the first.
"""
import gc
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops that exported GRec models use)
from google.protobuf import json_format, text_format
from tensorflow.core.protobuf import saved_model_pb2

from grec_tf.serving.flat_signature_call import FlatSignatureCall
from grec_tf.serving.request_codec import DEFAULT_SIGNATURE, InputSpec
from grec_tf.serving.status import HTTP_STATUS, ServingError, invalid_argument, not_found
from grec_tf.serving.versioned_export import list_versions

logger = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
_TF_CODE_NAMES = {getattr(tf.errors, n): n for n in HTTP_STATUS if hasattr(tf.errors, n)}


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, tf.errors.OpError):
        return _TF_CODE_NAMES.get(exc.error_code, "UNKNOWN")
    if isinstance(exc, ServingError):
        return exc.code
    if isinstance(exc, FileNotFoundError):
        return "NOT_FOUND"
    return "UNKNOWN"


@dataclass
class Signature:
    """A callable signature of a loaded SavedModel with the specs of its named inputs and outputs."""
    name: str
    fn: Callable
    inputs: Dict[str, InputSpec]
    outputs: List[str]
    _tf_dtypes: Dict[str, tf.DType] = field(repr=False, default_factory=dict)
    _flat: Optional[FlatSignatureCall] = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._flat = FlatSignatureCall.of(self.fn)

    def predict(self, arrays: Dict[str, Union[np.ndarray, tf.Tensor]]) -> Dict[str, np.ndarray]:
        """Run the signature on numpy arrays or tensors; model errors become ``ServingError`` (HTTP 4xx/5xx).

        Tensors that fit the signature go through its :class:`FlatSignatureCall`, anything else through the
        public ``fn(**tensors)``; both give the same outputs."""
        feeds = {}
        for name, arr in arrays.items():
            dtype = self._tf_dtypes[name]
            if isinstance(arr, tf.Tensor) and arr.dtype == dtype:
                feeds[name] = arr  # decoded straight to the signature's dtype (gRPC, REST fast path)
            elif dtype == tf.bfloat16:
                feeds[name] = tf.cast(tf.convert_to_tensor(arr), dtype)
            elif isinstance(arr, np.ndarray):
                # Converts like tf.convert_to_tensor, without its dispatch: 0.7x its CPU on 20 inputs.
                feeds[name] = tf.constant(arr, dtype=dtype)
            else:
                feeds[name] = tf.convert_to_tensor(arr, dtype=dtype)
        try:
            # Checked tensors skip TF's Python argument binding; anything else gets the public call's checks.
            out = self._flat(feeds) if self._flat is not None else None
            if out is None:
                out = self.fn(**feeds)
        except tf.errors.OpError as e:
            raise ServingError(f"signature '{self.name}' failed: {e.message}", _error_code(e)) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(f"signature '{self.name}' rejected the inputs: {e}") from None
        return {k: v.numpy() for k, v in out.items()}


@dataclass
class ServedModel:
    """One loaded version: its signatures and its ``signature_def`` map in TF Serving's JSON shape."""
    name: str
    version: int
    path: str
    signatures: Dict[str, Signature]
    signature_def_json: dict
    loaded: object = field(repr=False, default=None)

    def signature(self, name: str) -> Signature:
        sig = self.signatures.get(name or DEFAULT_SIGNATURE)
        if sig is None:
            raise invalid_argument(f"Serving signature name: \"{name}\" not found in signature def "
                                   f"(model '{self.name}' version {self.version} has: "
                                   f"{', '.join(sorted(self.signatures)) or 'none'})")
        return sig

    def metadata_json(self) -> dict:
        """``GET /v1/models/NAME[/versions/N]/metadata`` body (GetModelMetadataResponse as TF Serving prints it)."""
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": self.signature_def_json},
        }


def _read_signature_defs(path: str) -> dict:
    """The ``serve`` MetaGraphDef's signature_def map as proto JSON (field names preserved, defaults printed)."""
    sm = saved_model_pb2.SavedModel()
    pb = os.path.join(path, "saved_model.pb")
    if os.path.isfile(pb):
        with open(pb, "rb") as f:
            sm.ParseFromString(f.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as f:
            text_format.Parse(f.read(), sm)
    graphs = [g for g in sm.meta_graphs if "serve" in g.meta_info_def.tags] or list(sm.meta_graphs)
    if not graphs:
        raise ServingError(f"{path}: the SavedModel has no MetaGraphDef", "FAILED_PRECONDITION")
    sig_map = {}
    for key in sorted(graphs[0].signature_def):
        sig_map[key] = json_format.MessageToDict(graphs[0].signature_def[key],
                                                 always_print_fields_with_no_presence=True,
                                                 preserving_proto_field_name=True)
    return {"signature_def": sig_map}


def _input_spec(name: str, spec: tf.TensorSpec) -> InputSpec:
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return InputSpec(name=name, dtype=spec.dtype.name, shape=shape)


def load_served_model(model_name: str, version: int, path: str) -> ServedModel:
    """Load ``path`` with ``tf.saved_model.load`` (no project code needed) and describe its signatures."""
    loaded = tf.saved_model.load(path, tags=["serve"])
    signatures = {}
    for sig_name, fn in loaded.signatures.items():
        _args, kwargs = fn.structured_input_signature
        specs = {}
        dtypes = {}
        for in_name, spec in sorted(kwargs.items()):
            if not isinstance(spec, tf.TensorSpec):
                logger.warning("signature '%s' input '%s' is %s, not a dense tensor; skipping the signature",
                               sig_name, in_name, type(spec).__name__)
                specs = None
                break
            specs[in_name] = _input_spec(in_name, spec)
            dtypes[in_name] = spec.dtype
        if specs is None:
            continue
        outputs = sorted(fn.structured_outputs) if isinstance(fn.structured_outputs, dict) else []
        signatures[sig_name] = Signature(sig_name, fn, specs, outputs, dtypes)
    return ServedModel(model_name, version, path, signatures, _read_signature_defs(path), loaded)


def _collect_and_freeze() -> None:
    """Collect every generation, then move all surviving objects out of the collector's sight."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class VersionStatus:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END, as TF Serving's ModelVersionStatus
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> dict:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


def _fingerprint(path: str) -> Tuple:
    items = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            items.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


class ModelRegistry:
    """Serves the highest version under ``model_base_path`` and picks up new versions while running.

    ``get()`` returns an immutable :class:`ServedModel`; a request keeps the object it got even if a
    newer version is swapped in meanwhile.
    """

    def __init__(self, model_name: str, model_base_path: str, poll_seconds: float = 1.0,
                 loader: Callable[[str, int, str], ServedModel] = load_served_model, freeze_heap: bool = False):
        self.model_name = model_name
        self.model_base_path = os.path.abspath(model_base_path)
        self.poll_seconds = poll_seconds
        self._loader = loader
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._current: Optional[ServedModel] = None
        self._states: Dict[int, VersionStatus] = {}
        self._failed: Dict[int, Tuple] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._warned_empty = False
        self.freeze_heap = freeze_heap
        self._collect_again = False

    # ------------------------------------------------------------------ discovery and loading
    def poll_once(self) -> None:
        """Look for a new highest version and load it (blocking); never raises for a bad version."""
        with self._poll_lock:
            self._poll_locked()

    def _poll_locked(self) -> None:
        if self._collect_again:
            self._collect_again = False
            _collect_and_freeze()
        versions = list_versions(self.model_base_path)
        if not versions:
            if not self._warned_empty:
                logger.warning("No versions of model '%s' found under base path %s: expected a folder named "
                               "by an integer (e.g. %s) holding a SavedModel", self.model_name,
                               self.model_base_path, os.path.join(self.model_base_path, "1"))
                self._warned_empty = True
            return
        self._warned_empty = False
        target = versions[-1]
        current = self._current
        if current is not None and current.version == target:
            return
        path = os.path.join(self.model_base_path, str(target))
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            return  # not (yet) a SavedModel, e.g. a copy in progress
        fp = _fingerprint(path)
        if self._failed.get(target) == fp:
            return  # failed before with these very files
        with self._lock:
            self._states[target] = VersionStatus(target, "LOADING")
        started = time.monotonic()
        try:
            model = self._loader(self.model_name, target, path)
        except Exception as e:  # a bad version must not take the server down
            self._failed[target] = fp
            with self._lock:
                self._states[target] = VersionStatus(target, "END", _error_code(e),
                                                      f"Failed to load {path}: {e}")
            logger.error("failed to load version %d of model '%s' from %s: %s", target, self.model_name, path, e)
            return
        self._failed.pop(target, None)
        with self._lock:
            old = self._current
            self._current = model
            self._states[target] = VersionStatus(target, "AVAILABLE")
            if old is not None:
                self._states[old.version] = VersionStatus(old.version, "END")
        if self.freeze_heap:
            del old
            _collect_and_freeze()
            self._collect_again = True
        logger.info("serving version %d of model '%s' from %s (loaded in %.1fs; signatures: %s)", target,
                    self.model_name, path, time.monotonic() - started, ", ".join(sorted(model.signatures)))

    def start(self) -> "ModelRegistry":
        """Load the current highest version now, then poll in a daemon thread (if poll_seconds > 0)."""
        self.poll_once()
        if self.poll_seconds and self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"poll-{self.model_name}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # pragma: no cover - keep polling whatever happens
                logger.exception("polling %s failed", self.model_base_path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # ------------------------------------------------------------------------------ queries
    def get(self, model_name: str, version: Optional[int] = None) -> ServedModel:
        """The served model, or NOT_FOUND with TF Serving's message."""
        current = self._current
        if model_name != self.model_name or current is None:
            raise not_found(f"Servable not found for request: Latest({model_name})" if version is None
                            else f"Servable not found for request: Specific({model_name}, {version})")
        if version is not None and version != current.version:
            raise not_found(f"Servable not found for request: Specific({model_name}, {version}); "
                            f"this server serves version {current.version}")
        return current

    def status(self, model_name: str, version: Optional[int] = None) -> dict:
        """GetModelStatusResponse JSON: ``{"model_version_status": [...]}``, newest version first."""
        with self._lock:
            states = dict(self._states) if model_name == self.model_name else {}
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {model_name}")
            return {"model_version_status": [states[version].to_json()]}
        if not states:
            raise not_found(f"Could not find any versions of model {model_name}")
        return {"model_version_status": [states[v].to_json() for v in sorted(states, reverse=True)]}
