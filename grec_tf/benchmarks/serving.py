"""Serving benchmark: the local server's gRPC and REST APIs vs calling the SavedModel in-process.

For batches of 1 and 256 rows it measures, in the same run and on the same SavedModel version:

- **in-process**: ``loaded.signatures[sig](**tensors)`` plus ``.numpy()`` on the outputs, in a fresh
  subprocess (:mod:`grec_tf.benchmarks.saved_model_caller`) - latency (p50/p99 of back-to-back calls
  from one thread) and throughput (the better of 1 thread and ``concurrency`` threads);
- **in-process, columnar JSON**: the same subprocess answering the REST columnar body with the server's
  own decoding and encoding (:class:`~grec_tf.serving.rest_server.PredictBody`), no HTTP: REST columnar's
  ratio splits into the JSON work (this path over in-process tensors) and HTTP plus the server's threads
  (REST columnar over this path);
- **server**: requests to ``python -m pipelines.serve`` started as a subprocess on free loopback
  ports: REST in both request formats (row ``instances`` and columnar ``inputs``) and gRPC
  ``PredictionService/Predict`` (format ``grpc``) - latency from one client with keep-alive,
  throughput from ``concurrency`` clients. Requests are encoded once up front (JSON bodies, a
  serialized ``PredictRequest``) and responses are read but not decoded, so client work does not
  count against the server; one response per format is decoded and checked against the in-process
  result;
- **score_all vs serving_default**: in-process p50 latency of the two signatures at the largest
  batch, in interleaved rounds (what scoring every use case of a row costs over scoring its own).

Float inputs are float32 tensors. The bodies write them the way TF Serving writes float32 outputs
and orjson writes numpy float32: the shortest text that reads back as the same float32. A client
that writes ``tolist()`` values with the stdlib ``json`` instead spends 17 digits on each float;
that body is measured too (format ``row, stdlib json``), beside the targets rather than in them.

Both sides run once per ``thread_pools`` setting, each side given the same TF intra-op/inter-op pool
sizes (0 = TensorFlow's choice), so a ratio never compares two TensorFlow configurations; the
targets are judged on the first setting (TensorFlow's choice by default).

Writes ``serving.json`` and ``serving.md`` (atomically) to ``out_dir`` and returns the JSON dict,
whose ``targets`` map name -> ``{"value", "limit", "pass"}`` (ratios within the run, at the largest
batch): gRPC and REST columnar throughput >= 0.9 x in-process, ``score_all`` p50 latency <= 1.6 x
``serving_default``'s.
"""
import contextlib
import json
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grec_tf
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.request_timing import concurrent_rate, percentiles, timed_loop
from grec_tf.benchmarks.saved_model_caller import ANSWER_PREFIX, COLUMNAR_JSON
from grec_tf.serving.model_server import read_announced_ports
from grec_tf.serving.server_flags import pick_free_port
from grec_tf.serving.versioned_export import list_versions

MIN_THROUGHPUT_RATIO = 0.9  # server / in-process at the largest batch, for gRPC and REST columnar
MAX_SCORE_ALL_LATENCY_RATIO = 1.6  # score_all / serving_default p50 at the largest batch
GRPC = "grpc"
IN_PROCESS, IN_PROCESS_JSON = "in-process", "in-process JSON"
# The in-process caller's inputs: tensors, or the REST columnar body decoded and answered in-process.
_IN_PROCESS_INPUTS = {IN_PROCESS: {}, IN_PROCESS_JSON: {"input": COLUMNAR_JSON}}
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


class _Client:
    """A keep-alive HTTP/1.1 client posting one pre-encoded request on a plain socket.

    The request's bytes are built once and the answer is read by its ``Content-Length`` alone: the client
    shares the CPUs with the server, and ``http.client``'s per-request work would count against the server
    it measures (0.54 ms of the calling thread's CPU a 256-row columnar request, against 0.29 ms here,
    most of which is the kernel copying the 448 KB body)."""

    def __init__(self, host: str, port: int, path: str, body: bytes):
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        self.request = head.encode("ascii") + body
        self._pending = b""

    def __call__(self) -> bytes:
        self.sock.sendall(self.request)
        data = self._pending
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in lines[1:])
        lengths = [v for k, v in fields.items() if k.strip().lower() == "content-length"]
        if not lengths:  # this client reads no other framing (chunked answers)
            raise RuntimeError(f"server answered {lines[0]} without a Content-Length")
        length = int(lengths[0])
        while len(data) < length:
            data += self._recv()
        body, self._pending = data[:length], data[length:]
        if lines[0].split()[1] != "200":
            raise RuntimeError(f"server answered {lines[0]}: {body[:300]!r}")
        return body

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk


class _GrpcClient:
    """A gRPC channel sending one pre-serialized ``PredictRequest``; answers come back as bytes."""

    def __init__(self, address: str, request: bytes):
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)])
        # No (de)serializers: the request is bytes already, the response is read and not parsed.
        self.predict = self.channel.unary_unary(PREDICT_METHOD)
        self.request = request

    def __call__(self) -> bytes:
        return self.predict(self.request, timeout=120)


def grpc_request(batch: Dict[str, np.ndarray], model_name: str, version: int, signature_name: str) -> bytes:
    """The serialized ``PredictRequest`` of ``batch`` (``tf.make_tensor_proto`` of each column)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.version.value = version
    request.model_spec.signature_name = signature_name
    for name, values in batch.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return request.SerializeToString()


def _compact_json(batch: Dict[str, np.ndarray]) -> Dict[str, object]:
    """Columns ready for orjson: strings as lists, numeric inputs left as numpy arrays (their own dtype)."""
    strings = _jsonable({k: v for k, v in batch.items() if np.asarray(v).dtype.kind not in "biuf"})
    return {k: strings[k] if k in strings else np.ascontiguousarray(v) for k, v in batch.items()}


def request_bodies(batch: Dict[str, np.ndarray], signature_name: str) -> Dict[str, bytes]:
    """The predict bodies of ``batch``: ``row`` and ``columnar`` with compact float32 text, and the
    row format as the stdlib writes ``tolist()`` values (``row, stdlib json``)."""
    import orjson

    n = len(next(iter(batch.values())))
    compact = _compact_json(batch)
    plain = _jsonable(batch)

    def dump(doc: dict) -> bytes:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return {
        "row": dump({"signature_name": signature_name,
                     "instances": [{k: compact[k][i] for k in compact} for i in range(n)]}),
        "columnar": dump({"signature_name": signature_name, "inputs": compact}),
        "row, stdlib json": json.dumps({"signature_name": signature_name,
                                        "instances": [{k: plain[k][i] for k in plain} for i in range(n)]}).encode(),
    }


def _jsonable(batch: Dict[str, np.ndarray]) -> Dict[str, list]:
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if v.dtype == object or v.dtype.kind in "SU":
            flat = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in v.reshape(-1)]
            out[k] = np.array(flat, dtype=object).reshape(v.shape).tolist()
        else:
            out[k] = v.tolist()
    return out


def _answer_outputs(answer: bytes, fmt: str, names: List[str]) -> Dict[str, np.ndarray]:
    """The outputs in one server answer: a REST body in ``fmt`` or a serialized ``PredictResponse``."""
    if fmt == GRPC:
        response = predict_pb2.PredictResponse.FromString(answer)
        return {n: tf.make_ndarray(response.outputs[n]) for n in names}
    body = json.loads(answer)["outputs" if fmt == "columnar" else "predictions"]
    if len(names) == 1:
        return {names[0]: np.asarray(body)}
    if fmt == "columnar":
        return {n: np.asarray(body[n]) for n in names}
    return {n: np.asarray([row[n] for row in body]) for n in names}


def _max_diff(got: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]) -> float:
    """Largest absolute difference over the float outputs."""
    return max([float(np.max(np.abs(got[n].astype(np.float64) - expected[n].astype(np.float64))))
                for n in expected if expected[n].dtype.kind == "f"], default=0.0)


def _subprocess_env() -> Dict[str, str]:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(grec_tf.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_server(model_base_path: str, model_name: str, threads: Optional[int],
                  pools: Tuple[int, int]) -> Tuple[subprocess.Popen, Dict[str, int]]:
    """``python -m pipelines.serve`` with gRPC and REST on free loopback ports; (process, {"grpc", "rest"} ports)."""
    cmd = [sys.executable, "-m", "pipelines.serve", "--model_base_path", model_base_path,
           "--model_name", model_name, "--port", "0", "--rest_api_port", str(pick_free_port()),
           "--host", "127.0.0.1", "--poll_seconds", "0",
           "--tensorflow_intra_op_parallelism", str(pools[0]), "--tensorflow_inter_op_parallelism", str(pools[1])]
    if threads:
        cmd += ["--rest_api_num_threads", str(threads), "--grpc_max_threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_subprocess_env(), text=True)
    ports, text = read_announced_ports(proc.stdout)
    if ports["grpc"] is None or ports["rest"] is None:
        _stop(proc)
        raise RuntimeError(f"the server subprocess did not start: {' '.join(cmd)}\n{text}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
    return proc, ports


class _SavedModelCaller:
    """Drives :mod:`grec_tf.benchmarks.saved_model_caller` in a subprocess (the in-process path)."""

    def __init__(self, saved_model: str, signature_name: str, batches_file: str, pools: Tuple[int, int],
                 bodies_file: str = ""):
        cmd = [sys.executable, "-m", "grec_tf.benchmarks.saved_model_caller", "--saved_model", saved_model,
               "--signature", signature_name, "--batches", batches_file, "--bodies", bodies_file,
               "--intra_op", str(pools[0]), "--inter_op", str(pools[1])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_subprocess_env(), text=True)
        self._stderr: List[str] = []
        self.signatures: List[str] = []  # the SavedModel's, known after the first "predict"
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def ask(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(ANSWER_PREFIX):
                answer = json.loads(line[len(ANSWER_PREFIX):])
                self.signatures = answer.get("signatures", self.signatures)
                return answer
        self.proc.wait(timeout=30)
        raise RuntimeError(f"the in-process caller exited ({self.proc.returncode}) on {command}: "
                           f"{''.join(self._stderr[-20:])}")

    def close(self) -> None:
        self.proc.stdin.close()
        _stop(self.proc)


def _server_clients(batch: Dict[str, np.ndarray], bodies: Dict[str, bytes], ports: Dict[str, int], model_name: str,
                    version: int, signature_name: str) -> Tuple[Dict[str, Callable[[], Callable[[], bytes]]],
                                                            Dict[str, int]]:
    """Per server format: a factory of clients (each one connection) and the request's size in bytes; REST
    posts ``bodies`` (:func:`request_bodies` of ``batch``), gRPC sends ``batch`` as tensor protos."""
    path = f"/v1/models/{model_name}/versions/{version}:predict"
    factories = {fmt: (lambda body=body: _Client("127.0.0.1", ports["rest"], path, body))
                 for fmt, body in bodies.items()}
    request = grpc_request(batch, model_name, version, signature_name)
    factories[GRPC] = lambda: _GrpcClient(f"127.0.0.1:{ports['grpc']}", request)
    return factories, {**{fmt: len(body) for fmt, body in bodies.items()}, GRPC: len(request)}


def _measure(batch_sizes: Sequence[int], batches: Dict[int, Dict[str, np.ndarray]],
             bodies: Dict[int, Dict[str, bytes]], caller: _SavedModelCaller, ports: Dict[str, int], model_name: str,
             version: int, signature_name: str, seconds: float, concurrency: int, repeats: int) -> List[dict]:
    """One thread-pool setting: every batch size through the in-process caller (tensors, and the columnar
    JSON body decoded in-process) and each server format."""
    results = []
    for n in batch_sizes:
        answer = caller.ask(op="predict", batch=n)
        expected = {k: np.asarray(v) for k, v in answer["outputs"].items()}
        factories, sizes = _server_clients(batches[n], bodies[n], ports, model_name, version, signature_name)
        clients = {fmt: make() for fmt, make in factories.items()}
        diffs = {fmt: _max_diff(_answer_outputs(client(), fmt, sorted(expected)), expected)
                 for fmt, client in clients.items()}
        json_answer = caller.ask(op="predict", batch=n, input=COLUMNAR_JSON)["answer"].encode()
        diffs[IN_PROCESS_JSON] = _max_diff(_answer_outputs(json_answer, "columnar", sorted(expected)), expected)
        for client in clients.values():
            for _ in range(3):
                client()

        def latency(name: str) -> List[float]:
            if name in _IN_PROCESS_INPUTS:
                return caller.ask(op="latency", batch=n, seconds=seconds, min_iters=20,
                                  **_IN_PROCESS_INPUTS[name])["latencies"]
            return timed_loop(clients[name], seconds, 20)

        def throughput(name: str) -> float:
            if name in _IN_PROCESS_INPUTS:
                return caller.ask(op="throughput", batch=n, threads=concurrency, seconds=seconds,
                                  **_IN_PROCESS_INPUTS[name])["requests_per_s"]
            return concurrent_rate(factories[name], concurrency, seconds)["requests_per_s"]

        names = [*_IN_PROCESS_INPUTS, *factories]
        lat = {name: latency(name) for name in names}
        # Throughput in interleaved rounds, median per path: machine noise hits every path alike.
        rounds: Dict[str, List[float]] = {name: [] for name in names}
        for _ in range(max(1, int(repeats))):
            for name in names:
                rounds[name].append(throughput(name))
        best = {name: max(len(lat[name]) / sum(lat[name]), float(np.median(rounds[name]))) for name in names}
        for name in names:
            row = {"batch": n, "path": "in-process" if name in _IN_PROCESS_INPUTS else "server",
                   "tf_thread_pools_in_effect": answer["thread_pools"] if name in _IN_PROCESS_INPUTS else None,
                   "format": {IN_PROCESS: "-", IN_PROCESS_JSON: "columnar JSON"}.get(name, name),
                   **percentiles(lat[name]), "requests_per_s_1": len(lat[name]) / sum(lat[name]),
                   f"requests_per_s_{concurrency}": float(np.median(rounds[name])),
                   f"requests_per_s_{concurrency}_rounds": rounds[name], "rows_per_s": best[name] * n}
            if name != IN_PROCESS:
                row.update({"max_abs_diff_vs_in_process": diffs[name],
                            "throughput_ratio_vs_in_process": best[name] / best[IN_PROCESS]})
            if name in sizes:
                row["request_bytes"] = sizes[name]
            if name == "columnar":  # what HTTP adds to the same JSON work
                row["throughput_ratio_vs_in_process_json"] = best[name] / best[IN_PROCESS_JSON]
            results.append(row)
    return results


def _score_all_vs_default(caller: _SavedModelCaller, n: int, seconds: float, repeats: int) -> Optional[dict]:
    """In-process p50 latency of ``score_all`` over ``serving_default`` at ``n`` rows, measured in
    interleaved rounds; None when the SavedModel lacks either signature."""
    answer = caller.ask(op="predict", batch=n, signature="score_all") if "score_all" in caller.signatures else None
    if answer is None or "serving_default" not in caller.signatures:
        return None
    use_cases = answer["outputs"].get("use_cases")
    latencies: Dict[str, List[float]] = {"serving_default": [], "score_all": []}
    for _ in range(max(1, int(repeats))):
        for signature, lat in latencies.items():
            lat += caller.ask(op="latency", batch=n, seconds=seconds, min_iters=20, signature=signature)["latencies"]
    timing = {signature: percentiles(lat) for signature, lat in latencies.items()}
    return {"batch": n, "use_cases": len(use_cases[0]) if use_cases else None, **timing,
            "p50_ratio": timing["score_all"]["p50_ms"] / timing["serving_default"]["p50_ms"]}


def _pools_label(pools: Tuple[int, int]) -> str:
    if pools == (0, 0):
        return "TF default"
    return f"intra_op={pools[0]}, inter_op={pools[1]}"


def run_serving_benchmark(model_base_path: str, model_name: str, make_batch: Callable[[int], dict], out_dir: str,
                          *, signature_name: str = "serving_default", batch_sizes: Sequence[int] = (1, 256),
                          seconds: float = 3.0, concurrency: int = 4, repeats: int = 5,
                          server_threads: Optional[int] = None,
                          thread_pools: Sequence[Tuple[int, int]] = ((0, 0),),
                          sub_model: Optional[Tuple[str, str, float]] = None) -> dict:
    """Benchmark the gRPC and REST APIs against in-process calls; write serving.json and serving.md to ``out_dir``.

    Args:
      model_base_path: folder with numbered SavedModel versions (``exports/grec``); the highest is used.
      model_name: model name in the URL.
      make_batch: ``n -> {input_name: numpy array with n rows}`` (raw feature values, columnar, with
        the signature's dtypes).
      out_dir: where ``serving.json`` / ``serving.md`` go (created if missing).
      signature_name: signature to call (default ``serving_default``).
      batch_sizes: rows per request (default 1 and 256).
      seconds: duration of each measurement.
      concurrency: client threads (server) / caller threads (in-process) for throughput.
      repeats: throughput is measured in this many interleaved rounds (median reported).
      server_threads: ``--rest_api_num_threads`` and ``--grpc_max_threads`` of the server (default: the server's).
      thread_pools: ``(intra_op, inter_op)`` TF thread-pool sizes to measure, each given to both sides
        (0 = TensorFlow's choice); the targets are judged on the first.
      sub_model: ``(SavedModel folder, "FLOW/USE_CASE", k / E)`` of a one-task-sentence sub-model exported from
        the same model, compared in-process with the full model on rows of that task sentence.
    """
    version = _latest_version(model_base_path)
    saved_model = os.path.join(model_base_path, str(version))
    batches = {n: {k: np.asarray(v) for k, v in make_batch(n).items()} for n in batch_sizes}
    pool_settings = [(int(intra), int(inter)) for intra, inter in thread_pools]
    largest = max(batch_sizes)
    results, score_all = [], None
    with tempfile.TemporaryDirectory(prefix="grec-serving-bench-") as work:
        # each batch encoded once: the REST clients and the in-process JSON path send the same bytes
        bodies = {n: request_bodies(batch, signature_name) for n, batch in batches.items()}
        batches_file = _pickled(os.path.join(work, "batches.pkl"), batches)
        bodies_file = _pickled(os.path.join(work, "bodies.pkl"), {n: b["columnar"] for n, b in bodies.items()})
        for pools in pool_settings:
            with _caller_and_server(saved_model, signature_name, batches_file, model_base_path, model_name,
                                    server_threads, pools, bodies_file) as (caller, ports):
                rows = _measure(batch_sizes, batches, bodies, caller, ports, model_name, version, signature_name,
                                seconds, concurrency, repeats)
                if pools == pool_settings[0]:
                    score_all = _score_all_vs_default(caller, largest, seconds, repeats)
            results += [dict(row, thread_pools=_pools_label(pools)) for row in rows]
    sub_model_rows, sub_model_targets = (
        sub_model_comparison(saved_model, sub_model, make_batch, batch_sizes, seconds, concurrency, repeats,
                             pool_settings[0]) if sub_model else ([], {}))
    targets = {**serving_targets(results, score_all, _pools_label(pool_settings[0]), largest), **sub_model_targets}
    report = {
        "benchmark": "serving",
        "model_base_path": os.path.abspath(model_base_path), "model_name": model_name, "version": version,
        "signature_name": signature_name, "seconds_per_measurement": seconds, "concurrency": concurrency,
        "throughput_rounds": repeats, "environment": _environment(), "results": results,
        "score_all_vs_serving_default": score_all, "sub_models": sub_model_rows,
        "targets_judged_on": {"thread_pools": _pools_label(pool_settings[0]), "batch": largest},
        "targets": targets, "all_targets_pass": all(t["pass"] for t in targets.values()),
    }
    write_report(out_dir, "serving", report, _markdown(report))
    return report


def _pickled(path: str, value: object) -> str:
    """``path``, once ``value`` is pickled there (the in-process caller's inputs)."""
    with open(path, "wb") as f:
        pickle.dump(value, f)
    return path


def sub_model_comparison(full_model: str, sub_model: Tuple[str, str, float], make_batch: Callable[[int], dict],
                         batch_sizes: Sequence[int], seconds: float, concurrency: int, repeats: int,
                         pools: Tuple[int, int]) -> Tuple[List[dict], Dict[str, dict]]:
    """The full model vs its one-task-sentence sub-model, in-process, on rows of that task sentence: sizes
    (:func:`~grec_tf.serving.sub_model.sub_model_sizes`) and throughput at each batch size (interleaved rounds,
    median). Targets: the sub-model holds k/E of the expert parameters, and serves at >= 1.0 x the full model's
    in-process throughput at the largest batch."""
    from grec_tf.serving.sub_model import sub_model_sizes

    sub_dir, task_sentence, expert_fraction = sub_model
    flow, use_case = task_sentence.split("/")
    batches = {n: {**{k: np.asarray(v) for k, v in make_batch(n).items()},
                   "flow": np.full(n, flow, dtype=object), "use_case": np.full(n, use_case, dtype=object)}
               for n in batch_sizes}
    with tempfile.TemporaryDirectory(prefix="grec-sub-model-bench-") as work:
        batches_file = _pickled(os.path.join(work, "batches.pkl"), batches)
        callers = {name: _SavedModelCaller(path, "serving_default", batches_file, pools)
                   for name, path in (("full", full_model), ("sub", sub_dir))}
        try:
            rows = [_sub_model_row(callers, n, seconds, concurrency, repeats) for n in batch_sizes]
        finally:
            for caller in callers.values():
                caller.close()
    sizes = sub_model_sizes(full_model, sub_dir)
    largest = rows[-1]
    targets = {
        "sub_model_expert_params_vs_full_equals_k_over_E": {
            "value": sizes["ratio"]["expert_params"], "limit": expert_fraction,
            "pass": bool(abs(sizes["ratio"]["expert_params"] - expert_fraction) < 1e-9)},
        f"sub_model_throughput_vs_full_b{largest['batch']}": _target(largest["throughput_ratio"], 1.0, True)}
    return [{"task_sentence": task_sentence, "sizes": sizes, "throughput": rows}], targets


def _sub_model_row(callers: Dict[str, _SavedModelCaller], n: int, seconds: float, concurrency: int,
                   repeats: int) -> dict:
    """Rows/s of the full and the sub-model at batch ``n`` (median of interleaved rounds) and the largest
    output difference between them."""
    outputs = {name: np.asarray(caller.ask(op="predict", batch=n)["outputs"]["probability"])
               for name, caller in callers.items()}
    rounds: Dict[str, List[float]] = {name: [] for name in callers}
    for _ in range(max(1, int(repeats))):
        for name, caller in callers.items():
            rounds[name].append(caller.ask(op="throughput", batch=n, threads=concurrency,
                                           seconds=seconds)["requests_per_s"] * n)
    rates = {name: float(np.median(values)) for name, values in rounds.items()}
    return {"batch": n, "full_rows_per_s": rates["full"], "sub_rows_per_s": rates["sub"],
            "throughput_ratio": rates["sub"] / rates["full"],
            "max_abs_diff": float(np.max(np.abs(outputs["sub"] - outputs["full"])))}


def _target(value: Optional[float], limit: float, at_least: bool) -> dict:
    passed = value is not None and (value >= limit if at_least else value <= limit)
    return {"value": value, "limit": limit, "pass": bool(passed)}


def serving_targets(results: List[dict], score_all: Optional[dict], pools_label: str,
                    largest: int) -> Dict[str, dict]:
    """name -> {"value", "limit", "pass"} at the largest batch, for the thread-pool setting ``pools_label``;
    a target whose measurement is missing (no ``score_all`` signature) fails with value None."""
    ratios = {r["format"]: r["throughput_ratio_vs_in_process"] for r in results
              if r["thread_pools"] == pools_label and r["path"] == "server" and r["batch"] == largest}
    return {
        f"grpc_throughput_vs_in_process_b{largest}": _target(ratios.get(GRPC), MIN_THROUGHPUT_RATIO, True),
        f"rest_columnar_vs_in_process_b{largest}": _target(ratios.get("columnar"), MIN_THROUGHPUT_RATIO, True),
        f"score_all_latency_vs_default_b{largest}": _target(score_all and score_all["p50_ratio"],
                                                           MAX_SCORE_ALL_LATENCY_RATIO, False),
    }


def _latest_version(model_base_path: str) -> int:
    """The highest numbered version folder under ``model_base_path``: the one the server serves."""
    versions = list_versions(model_base_path)
    if not versions:
        raise FileNotFoundError(f"no numbered SavedModel version under {model_base_path}")
    return versions[-1]


@contextlib.contextmanager
def _caller_and_server(saved_model: str, signature_name: str, batches_file: str, model_base_path: str,
                       model_name: str, server_threads: Optional[int], pools: Tuple[int, int],
                       bodies_file: str = "") -> Iterator[Tuple[_SavedModelCaller, Dict[str, int]]]:
    """Both measured sides with the same TF thread pools: the in-process caller and the server's ports;
    both subprocesses are stopped on leaving, also when a measurement fails."""
    caller = _SavedModelCaller(saved_model, signature_name, batches_file, pools, bodies_file)
    try:
        proc, ports = _start_server(model_base_path, model_name, server_threads, pools)
        try:
            yield caller, ports
        finally:
            _stop(proc)
    finally:
        caller.close()


def _environment() -> dict:
    """What the numbers depend on besides the model: CPUs, library versions, the JSON writer, and the
    load average when the measurements end (other work on the machine)."""
    try:
        import orjson  # noqa: F401
        json_lib = "orjson"
    except ImportError:
        json_lib = "json (stdlib)"
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "json": json_lib, "load_average_at_end": list(os.getloadavg())}


def _markdown(report: dict) -> str:
    c = report["concurrency"]
    lines = [
        "# Serving: local gRPC and REST APIs vs in-process SavedModel call",
        "",
        f"Model `{report['model_name']}` version {report['version']}, signature `{report['signature_name']}`; "
        f"{report['environment']['cpu_count']} CPUs, TensorFlow {report['environment']['tensorflow']}, "
        f"JSON via {report['environment']['json']}; {report['seconds_per_measurement']} s per measurement. "
        f"Latency: one caller, back to back. Throughput: the better of 1 caller and {c} concurrent callers "
        f"(median of {report['throughput_rounds']} interleaved rounds of that length). "
        "Server = `python -m pipelines.serve` in a subprocess on loopback: TF Serving's REST API v1 "
        "(formats `row`, `columnar`) and gRPC `PredictionService/Predict` (format `grpc`, a serialized "
        "`PredictRequest` of `tf.make_tensor_proto` tensors); "
        "in-process = `signature(**tensors)` in another fresh subprocess "
        "(`grec_tf.benchmarks.saved_model_caller`); in-process `columnar JSON` = the same process answering "
        "the REST columnar body with the server's own decoding and encoding (`PredictBody`), without HTTP. "
        "Both sides get the same TensorFlow thread pools "
        "(`TF threads`: TensorFlow's choice, or the server's `--tensorflow_intra_op_parallelism` / "
        "`--tensorflow_inter_op_parallelism`); the client runs in the benchmark process on the same CPUs.",
        "",
        "REST bodies write float32 values in their shortest exact form (orjson, as TF Serving writes "
        "float32); `row, stdlib json` is the same row-format request written by `json.dumps` of `tolist()` "
        "values (17 digits per float), shown for comparison and not part of the targets.",
        "",
        f"| TF threads | batch | path | format | request KB | p50 ms | p99 ms | req/s (1) | req/s ({c}) | rows/s "
        "| / in-process |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = r.get("throughput_ratio_vs_in_process")
        size = f"{r['request_bytes'] / 1024:.0f}" if "request_bytes" in r else ""
        lines.append(f"| {r['thread_pools']} | {r['batch']} | {r['path']} | {r['format']} | {size} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s_1']:.1f} | "
                     f"{r[f'requests_per_s_{c}']:.1f} | {r['rows_per_s']:.0f} | "
                     f"{'' if ratio is None else f'{ratio:.3f}x'} |")
    return "\n".join(lines + [""] + _json_and_http_lines(report) + [""] + _score_all_lines(report) + [""]
                     + _sub_model_lines(report) + [""] + _target_lines(report)) + "\n"


def _json_and_http_lines(report: dict) -> List[str]:
    """REST columnar's ratio split into the JSON work and the HTTP around it, at the judged setting."""
    judged, c = report["targets_judged_on"], report["concurrency"]
    rows = {(r["path"], r["format"]): r for r in report["results"]
            if r["thread_pools"] == judged["thread_pools"] and r["batch"] == judged["batch"]}
    tensors, json_in, rest = (rows.get(key) for key in (("in-process", "-"), ("in-process", "columnar JSON"),
                                                         ("server", "columnar")))
    lines = ["## REST columnar: JSON's cost and HTTP's", ""]
    if not (tensors and json_in and rest):
        return lines + ["Not measured."]
    per_round = [b / a for a, b in zip(tensors[f"requests_per_s_{c}_rounds"], rest[f"requests_per_s_{c}_rounds"])]
    return lines + [
        f"Batch {judged['batch']}, {judged['thread_pools']}: in-process with tensors "
        f"{tensors['rows_per_s']:,.0f} rows/s; in-process answering the columnar JSON body "
        f"{json_in['rows_per_s']:,.0f} rows/s ({json_in['throughput_ratio_vs_in_process']:.3f}x: the JSON "
        f"work); REST columnar {rest['rows_per_s']:,.0f} rows/s ({rest['throughput_ratio_vs_in_process']:.3f}x "
        f"of tensors, {rest['throughput_ratio_vs_in_process_json']:.3f}x of the same JSON work in-process: "
        f"HTTP and the server's threads). REST / in-process per round of {c} callers: "
        + ", ".join(f"{r:.3f}" for r in per_round) + "."]


def _score_all_lines(report: dict) -> List[str]:
    s = report["score_all_vs_serving_default"]
    if s is None:
        return ["## score_all vs serving_default", "", "Not measured: the SavedModel lacks `score_all` or "
                "`serving_default`."]
    return ["## score_all vs serving_default", "",
            f"In-process, batch {s['batch']} ({report['targets_judged_on']['thread_pools']}), interleaved rounds: "
            f"`serving_default` p50 {s['serving_default']['p50_ms']:.2f} ms, `score_all` "
            f"({s['use_cases']} use cases a row) p50 {s['score_all']['p50_ms']:.2f} ms: {s['p50_ratio']:.2f}x."]


def _sub_model_lines(report: dict) -> List[str]:
    lines = ["## Full model vs one-task-sentence sub-model", ""]
    if not report["sub_models"]:
        return lines + ["Not run: the benchmarked model was given (`model_base_path`) or its routing cannot be "
                        "extracted (only task and task-sentence routings can)."]
    for entry in report["sub_models"]:
        sizes = entry["sizes"]
        lines += [f"Task sentence `{entry['task_sentence']}`, in-process on rows of that task sentence.", "",
                  "| | params | expert params | other values | SavedModel bytes |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {sizes[name]['params']:,} | {sizes[name]['expert_params']:,} | "
                  f"{sizes[name]['other_values']:,} | {sizes[name]['bytes']:,} |" for name in ("full", "sub")]
        lines += ["", "| batch | full rows/s | sub-model rows/s | sub / full | max abs diff |", "|---|---|---|---|---|"]
        lines += [f"| {row['batch']} | {row['full_rows_per_s']:,.0f} | {row['sub_rows_per_s']:,.0f} | "
                  f"{row['throughput_ratio']:.2f} | {row['max_abs_diff']:.1e} |" for row in entry["throughput"]]
    return lines


def _target_lines(report: dict) -> List[str]:
    judged = report["targets_judged_on"]
    lines = ["## Targets", "", f"At batch {judged['batch']}, TF threads: {judged['thread_pools']}.", "",
             "| target | value | limit | pass |", "|---|---|---|---|"]
    for name, t in report["targets"].items():
        value = "not measured" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"| {name} | {value} | {t['limit']} | {'yes' if t['pass'] else 'NO'} |")
    return lines + ["", f"All targets pass: **{'yes' if report['all_targets_pass'] else 'NO'}**"]


def run(out_dir: str, model_base_path: str = "", model_name: str = "grec", config: str = "configs/telecom.yaml",
        overrides: str = "data.rows=20000;train.epochs=1", seconds: str = "3.0",
        thread_pools: str = "0/0,1/0") -> dict:
    """``python -m pipelines.benchmark serving``: benchmarks the GRec export at ``model_base_path``, or,
    when none is given, trains and exports a small GRec on the telecom data first (``config`` with the
    ``;``-separated ``overrides``). Batches are real test rows of that data, as raw serving inputs.
    ``thread_pools`` lists the ``intra_op/inter_op`` settings to measure, comma-separated (0 = TF's choice)."""
    pools = parse_thread_pools(thread_pools)

    from grec_tf.data.feature_arrays import frame_to_arrays
    from grec_tf.experiment import load_experiment

    sub_model = None
    with tempfile.TemporaryDirectory(prefix="grec-serving-") as work:
        experiment = load_experiment(config, [item for item in overrides.split(";") if item.strip()],
                                     data_dir=os.path.join(work, "data"))
        if not model_base_path:
            trained = experiment.train(os.path.join(work, "run"), verbose=0)
            model_base_path = os.path.dirname(experiment.export(trained.model, os.path.join(work, "exports")))
            model_name = os.path.basename(model_base_path)
            sub_model = one_task_sentence_sub_model(experiment, trained.model, os.path.join(work, "sub_model"))
        rows = frame_to_arrays(experiment.splits["test"], experiment.config, with_labels=False)

        def make_batch(n: int) -> Dict[str, np.ndarray]:
            index = np.arange(n) % len(rows["flow"])
            return {name: values[index] for name, values in rows.items()}

        return run_serving_benchmark(model_base_path, model_name, make_batch, out_dir, seconds=float(seconds),
                                     thread_pools=pools, sub_model=sub_model)


def one_task_sentence_sub_model(experiment, model: tf.keras.Model,
                                export_dir: str) -> Optional[Tuple[str, str, float]]:
    """``(SavedModel folder, task sentence, k / E)`` of the sub-model of the first flow's last use case, or None
    when the model's routing cannot be extracted (only task and task-sentence routings can)."""
    from grec_tf.config import TASK_ROUTINGS

    m, d = experiment.config.model, experiment.config.data
    if m.type != "grec" or m.routing not in TASK_ROUTINGS:
        return None
    task_sentence = f"{d.flows[0]}/{d.use_cases[-1]}"
    path = experiment.export(model, export_dir, task_sentences=task_sentence)
    return path, task_sentence, m.top_k / m.num_experts


def parse_thread_pools(text: str) -> List[Tuple[int, int]]:
    """``"0/0,1/0"`` -> ``[(0, 0), (1, 0)]``; ValueError naming the option for anything else."""
    pools = []
    for item in text.split(","):
        parts = item.strip().split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"--option thread_pools={text!r}: expected comma-separated intra_op/inter_op pairs of "
                             f"whole numbers >= 0, e.g. 0/0,1/0 (0 = TensorFlow's choice); {item.strip()!r} is not one")
        pools.append((int(parts[0]), int(parts[1])))
    return pools
