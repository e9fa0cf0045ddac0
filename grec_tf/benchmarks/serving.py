"""Serving benchmark: the local TF Serving-compatible REST server vs calling the SavedModel in-process.

For batches of 1 and 256 rows it measures, in the same run and on the same SavedModel version:

- **in-process**: ``loaded.signatures[sig](**tensors)`` plus ``.numpy()`` on the outputs, in a fresh
  subprocess (:mod:`grec_tf.benchmarks.saved_model_caller`) - latency (p50/p99 of back-to-back calls
  from one thread) and throughput (the better of 1 thread and ``concurrency`` threads);
- **server**: HTTP requests to ``python -m pipelines.serve`` started as a subprocess on a free
  loopback port, in both request formats (row ``instances`` and columnar ``inputs``) - latency from
  one client with keep-alive, throughput from ``concurrency`` clients. Request bodies are encoded
  once up front and responses are read but not decoded, so client work does not count against the
  server; one response per format is decoded and checked against the in-process result.

Float inputs are float32 tensors. The bodies write them the way TF Serving writes float32 outputs
and orjson writes numpy float32: the shortest text that reads back as the same float32. A client
that writes ``tolist()`` values with the stdlib ``json`` instead spends 17 digits on each float;
that body is measured too (format ``row, stdlib json``), beside the target rather than in it.

Both sides run once per ``thread_pools`` setting, each side given the same TF intra-op/inter-op pool
sizes (0 = TensorFlow's choice), so a ratio never compares two TensorFlow configurations.

Writes ``serving.json`` and ``serving.md`` (atomically) to ``out_dir`` and returns the JSON dict.
Target (issue 5): at batch 256 the server's throughput is at least 0.8 x in-process.
"""
import contextlib
import http.client
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grec_tf
import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.request_timing import concurrent_rate, percentiles, timed_loop
from grec_tf.benchmarks.saved_model_caller import ANSWER_PREFIX
from grec_tf.serving.versioned_export import list_versions

TARGET_RATIO = 0.8
TARGET_FORMATS = ("row", "columnar")  # compact float32 bodies; see the module docstring


class _Client:
    """A keep-alive HTTP/1.1 client posting one pre-encoded body."""

    def __init__(self, host: str, port: int, path: str, body: bytes):
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.path, self.body = path, body
        self.headers = {"Content-Type": "application/json"}

    def __call__(self) -> bytes:
        self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"server answered {resp.status}: {data[:300]!r}")
        return data


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


def _max_diff(server_json: dict, fmt: str, expected: Dict[str, np.ndarray]) -> float:
    key = "outputs" if fmt == "columnar" else "predictions"
    body = server_json[key]
    names = sorted(expected)
    numeric = [n for n in names if np.asarray(expected[n]).dtype.kind == "f"]
    diff = 0.0
    for n in numeric:
        if len(names) == 1:
            got = np.asarray(body, dtype=np.float64)
        elif fmt != "columnar":
            got = np.asarray([row[n] for row in body], dtype=np.float64)
        else:
            got = np.asarray(body[n], dtype=np.float64)
        diff = max(diff, float(np.max(np.abs(got - expected[n].astype(np.float64)))))
    return diff


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


def _start_server(model_base_path: str, model_name: str, threads: Optional[int], pools: Tuple[int, int]):
    cmd = [sys.executable, "-m", "grec_tf.serving.rest_server", "--model_base_path", model_base_path,
           "--model_name", model_name, "--port", "0", "--host", "127.0.0.1", "--poll_seconds", "0",
           "--tensorflow_intra_op_parallelism", str(pools[0]), "--tensorflow_inter_op_parallelism", str(pools[1])]
    if threads:
        cmd += ["--rest_api_num_threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_subprocess_env(), text=True)
    port = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        _stop(proc)
        raise RuntimeError(f"the server subprocess did not start: {' '.join(cmd)}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
    return proc, port


class _SavedModelCaller:
    """Drives :mod:`grec_tf.benchmarks.saved_model_caller` in a subprocess (the in-process path)."""

    def __init__(self, saved_model: str, signature_name: str, batches_file: str, pools: Tuple[int, int]):
        cmd = [sys.executable, "-m", "grec_tf.benchmarks.saved_model_caller", "--saved_model", saved_model,
               "--signature", signature_name, "--batches", batches_file, "--intra_op", str(pools[0]),
               "--inter_op", str(pools[1])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_subprocess_env(), text=True)
        self._stderr: List[str] = []
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def ask(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(ANSWER_PREFIX):
                return json.loads(line[len(ANSWER_PREFIX):])
        self.proc.wait(timeout=30)
        raise RuntimeError(f"the in-process caller exited ({self.proc.returncode}) on {command}: "
                           f"{''.join(self._stderr[-20:])}")

    def close(self) -> None:
        self.proc.stdin.close()
        _stop(self.proc)


def _measure(batch_sizes: Sequence[int], batches: Dict[int, Dict[str, np.ndarray]], caller: _SavedModelCaller,
             port: int, path: str, signature_name: str, seconds: float, concurrency: int,
             repeats: int) -> List[dict]:
    """One thread-pool setting: every batch size through the in-process caller and the server."""
    results = []
    for n in batch_sizes:
        answer = caller.ask(op="predict", batch=n)
        expected = {k: np.asarray(v) for k, v in answer["outputs"].items()}
        bodies = request_bodies(batches[n], signature_name)
        clients = {fmt: _Client("127.0.0.1", port, path, body) for fmt, body in bodies.items()}
        diffs = {fmt: _max_diff(json.loads(client()), fmt, expected) for fmt, client in clients.items()}
        for client in clients.values():
            for _ in range(3):
                client()

        def latency(name: str) -> List[float]:
            if name == "in-process":
                return caller.ask(op="latency", batch=n, seconds=seconds, min_iters=20)["latencies"]
            return timed_loop(clients[name], seconds, 20)

        def throughput(name: str) -> float:
            if name == "in-process":
                return caller.ask(op="throughput", batch=n, threads=concurrency, seconds=seconds)["requests_per_s"]
            return concurrent_rate(lambda: _Client("127.0.0.1", port, path, bodies[name]), concurrency,
                                   seconds)["requests_per_s"]

        names = ["in-process", *bodies]
        lat = {name: latency(name) for name in names}
        # Throughput in interleaved rounds, median per path: machine noise hits every path alike.
        rounds: Dict[str, List[float]] = {name: [] for name in names}
        for _ in range(max(1, int(repeats))):
            for name in names:
                rounds[name].append(throughput(name))
        best = {}
        for name in names:
            seq_rps = len(lat[name]) / sum(lat[name])
            conc_rps = float(np.median(rounds[name]))
            best[name] = max(seq_rps, conc_rps)
            row = {"batch": n, "path": "in-process" if name == "in-process" else "server",
                   "tf_thread_pools_in_effect": answer["thread_pools"] if name == "in-process" else None,
                   "format": "-" if name == "in-process" else name, **percentiles(lat[name]),
                   "requests_per_s_1": seq_rps, f"requests_per_s_{concurrency}": conc_rps,
                   "rows_per_s": best[name] * n}
            if name != "in-process":
                row.update({"request_bytes": len(bodies[name]), "max_abs_diff_vs_in_process": diffs[name],
                            "throughput_ratio_vs_in_process": best[name] / best["in-process"]})
            results.append(row)
    return results


def _pools_label(pools: Tuple[int, int]) -> str:
    if pools == (0, 0):
        return "TF default"
    return f"intra_op={pools[0]}, inter_op={pools[1]}"


def run_serving_benchmark(model_base_path: str, model_name: str, make_batch: Callable[[int], dict], out_dir: str,
                          *, signature_name: str = "serving_default", batch_sizes: Sequence[int] = (1, 256),
                          seconds: float = 3.0, concurrency: int = 4, repeats: int = 3,
                          server_threads: Optional[int] = None,
                          thread_pools: Sequence[Tuple[int, int]] = ((0, 0),)) -> dict:
    """Benchmark the REST server against in-process calls; write serving.json and serving.md to ``out_dir``.

    Args:
      model_base_path: folder with numbered SavedModel versions (``exports/grec``); the highest is used.
      model_name: model name in the URL.
      make_batch: ``n -> {input_name: numpy array with n rows}`` (raw feature values, columnar).
      out_dir: where ``serving.json`` / ``serving.md`` go (created if missing).
      signature_name: signature to call (default ``serving_default``).
      batch_sizes: rows per request (default 1 and 256).
      seconds: duration of each measurement.
      concurrency: client threads (server) / caller threads (in-process) for throughput.
      repeats: throughput is measured in this many interleaved rounds (median reported).
      server_threads: ``--rest_api_num_threads`` of the server (default: the server's).
      thread_pools: ``(intra_op, inter_op)`` TF thread-pool sizes to measure, each given to both sides
        (0 = TensorFlow's choice); each setting gets its own target verdict.
    """
    version = _latest_version(model_base_path)
    saved_model = os.path.join(model_base_path, str(version))
    path = f"/v1/models/{model_name}/versions/{version}:predict"
    batches = {n: {k: np.asarray(v) for k, v in make_batch(n).items()} for n in batch_sizes}
    pool_settings = [(int(intra), int(inter)) for intra, inter in thread_pools]
    results = []
    with tempfile.TemporaryDirectory(prefix="grec-serving-bench-") as work:
        batches_file = os.path.join(work, "batches.pkl")
        with open(batches_file, "wb") as f:
            pickle.dump(batches, f)
        for pools in pool_settings:
            with _caller_and_server(saved_model, signature_name, batches_file, model_base_path, model_name,
                                    server_threads, pools) as (caller, port):
                rows = _measure(batch_sizes, batches, caller, port, path, signature_name, seconds,
                                concurrency, repeats)
            results += [dict(row, thread_pools=_pools_label(pools)) for row in rows]

    largest = max(batch_sizes)
    report = {
        "benchmark": "serving",
        "model_base_path": os.path.abspath(model_base_path), "model_name": model_name, "version": version,
        "signature_name": signature_name, "seconds_per_measurement": seconds, "concurrency": concurrency,
        "throughput_rounds": repeats, "environment": _environment(), "results": results,
        "target": {"batch": largest, "min_ratio": TARGET_RATIO,
                   "by_thread_pools": [_target_verdict(results, _pools_label(pools), largest)
                                       for pools in pool_settings]},
    }
    write_report(out_dir, "serving", report, _markdown(report))
    return report


def _latest_version(model_base_path: str) -> int:
    """The highest numbered version folder under ``model_base_path``: the one the server serves."""
    versions = list_versions(model_base_path)
    if not versions:
        raise FileNotFoundError(f"no numbered SavedModel version under {model_base_path}")
    return versions[-1]


@contextlib.contextmanager
def _caller_and_server(saved_model: str, signature_name: str, batches_file: str, model_base_path: str,
                       model_name: str, server_threads: Optional[int],
                       pools: Tuple[int, int]) -> Iterator[Tuple[_SavedModelCaller, int]]:
    """Both measured sides with the same TF thread pools: the in-process caller and the server's port;
    both subprocesses are stopped on leaving, also when a measurement fails."""
    caller = _SavedModelCaller(saved_model, signature_name, batches_file, pools)
    try:
        proc, port = _start_server(model_base_path, model_name, server_threads, pools)
        try:
            yield caller, port
        finally:
            _stop(proc)
    finally:
        caller.close()


def _target_verdict(results: List[dict], pools_label: str, largest: int) -> dict:
    """Server / in-process throughput ratios at the largest batch for one thread-pool setting, and
    whether each target format reaches :data:`TARGET_RATIO`."""
    at_largest = [r for r in results if r["thread_pools"] == pools_label and r["path"] == "server"
                  and r["batch"] == largest]
    ratios = {r["format"]: r["throughput_ratio_vs_in_process"] for r in at_largest if r["format"] in TARGET_FORMATS}
    return {"thread_pools": pools_label, "ratios": ratios,
            "met": {fmt: bool(r >= TARGET_RATIO) for fmt, r in ratios.items()},
            "not_in_target": {r["format"]: r["throughput_ratio_vs_in_process"] for r in at_largest
                              if r["format"] not in TARGET_FORMATS}}


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
        "# Serving: local REST server vs in-process SavedModel call",
        "",
        f"Model `{report['model_name']}` version {report['version']}, signature `{report['signature_name']}`; "
        f"{report['environment']['cpu_count']} CPUs, TensorFlow {report['environment']['tensorflow']}, "
        f"JSON via {report['environment']['json']}; {report['seconds_per_measurement']} s per measurement. "
        f"Latency: one caller, back to back. Throughput: the better of 1 caller and {c} concurrent callers "
        f"(median of {report['throughput_rounds']} interleaved rounds of that length). "
        "Server = `python -m pipelines.serve` in a subprocess on loopback (TF Serving REST API v1); "
        "in-process = `signature(**tensors)` in another fresh subprocess "
        "(`grec_tf.benchmarks.saved_model_caller`). Both sides get the same TensorFlow thread pools "
        "(`TF threads`: TensorFlow's choice, or the server's `--tensorflow_intra_op_parallelism` / "
        "`--tensorflow_inter_op_parallelism`); the client runs in the benchmark process on the same 2 cores.",
        "",
        "Request bodies write float32 values in their shortest exact form (orjson, as TF Serving writes "
        "float32); `row, stdlib json` is the same row-format request written by `json.dumps` of `tolist()` "
        "values (17 digits per float), shown for comparison and not part of the target.",
        "",
        f"| TF threads | batch | path | format | request KB | p50 ms | p99 ms | req/s (1) | req/s ({c}) | rows/s "
        "| server / in-process |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = r.get("throughput_ratio_vs_in_process")
        size = f"{r['request_bytes'] / 1024:.0f}" if "request_bytes" in r else ""
        lines.append(f"| {r['thread_pools']} | {r['batch']} | {r['path']} | {r['format']} | {size} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests_per_s_1']:.1f} | "
                     f"{r[f'requests_per_s_{c}']:.1f} | {r['rows_per_s']:.0f} | "
                     f"{'' if ratio is None else f'{ratio:.3f}x'} |")
    t = report["target"]
    lines.append("")
    for entry in t["by_thread_pools"]:
        verdict = ", ".join(f"{fmt}: {r:.3f}x ({'met' if entry['met'][fmt] else 'NOT met'})"
                            for fmt, r in entry["ratios"].items())
        others = "".join(f"; {fmt} (not in the target): {r:.3f}x" for fmt, r in entry["not_in_target"].items())
        lines.append(f"Target ({entry['thread_pools']}): server throughput at batch {t['batch']} >= "
                     f"{t['min_ratio']} x in-process - {verdict}{others}.")
        lines.append("")
    return "\n".join(lines)


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

    with tempfile.TemporaryDirectory(prefix="grec-serving-") as work:
        experiment = load_experiment(config, [item for item in overrides.split(";") if item.strip()],
                                     data_dir=os.path.join(work, "data"))
        if not model_base_path:
            trained = experiment.train(os.path.join(work, "run"), verbose=0)
            model_base_path = os.path.dirname(experiment.export(trained.model, os.path.join(work, "exports")))
            model_name = os.path.basename(model_base_path)
        rows = frame_to_arrays(experiment.splits["test"], experiment.config, with_labels=False)

        def make_batch(n: int) -> Dict[str, np.ndarray]:
            index = np.arange(n) % len(rows["flow"])
            return {name: values[index] for name, values in rows.items()}

        return run_serving_benchmark(model_base_path, model_name, make_batch, out_dir, seconds=float(seconds),
                                     thread_pools=pools)


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
