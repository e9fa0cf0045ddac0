"""Serving benchmark: the local TF Serving-compatible REST server vs calling the SavedModel in-process.

For batches of 1 and 256 rows it measures, in the same run and on the same SavedModel version:

- **in-process**: ``loaded.signatures[sig](**tensors)`` plus ``.numpy()`` on the outputs - latency
  (p50/p99 of back-to-back calls from one thread) and throughput (the better of 1 thread and
  ``concurrency`` threads);
- **server**: HTTP requests to ``python -m pipelines.serve`` started as a subprocess on a free
  loopback port, in both request formats (row ``instances`` and columnar ``inputs``) - latency from
  one client with keep-alive, throughput from ``concurrency`` clients. Request bodies are encoded
  once up front and responses are read but not decoded, so client work does not count against the
  server; one response per format is decoded and checked against the in-process result.

Float inputs are float32 tensors. The bodies write them the way TF Serving writes float32 outputs
and orjson writes numpy float32: the shortest text that reads back as the same float32. A client
that writes ``tolist()`` values with the stdlib ``json`` instead spends 17 digits on each float;
that body is measured too (format ``row, stdlib json``), beside the target rather than in it.

Writes ``serving.json`` and ``serving.md`` (atomically) to ``out_dir`` and returns the JSON dict.
Target (issue 5): at batch 256 the server's throughput is at least 0.8 x in-process.
"""
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

import grec_tf
import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.serving.model_registry import load_served_model
from grec_tf.serving.versioned_export import list_versions

TARGET_RATIO = 0.8
TARGET_FORMATS = ("row", "columnar")  # compact float32 bodies; see the module docstring


def _percentiles(latencies: List[float]) -> Dict[str, float]:
    a = np.asarray(latencies) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def _timed_loop(fn: Callable[[], None], seconds: float, min_iters: int) -> List[float]:
    lat = []
    deadline = time.perf_counter() + seconds
    while len(lat) < min_iters or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
        if len(lat) >= 100000:
            break
    return lat


def _concurrent(make_worker: Callable[[], Callable[[], None]], threads: int, seconds: float) -> Dict[str, float]:
    """Run ``threads`` workers for ``seconds``; each worker is built (e.g. opens a connection) first."""
    counts = [0] * threads
    errors: List[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        try:
            call = make_worker()
            start.wait()
            while not stop.is_set():
                call()
                counts[i] += 1
        except BaseException as e:  # surfaced below
            errors.append(e)
            try:
                start.abort()
            except Exception:
                pass

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join(timeout=120)
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"benchmark worker failed: {errors[0]!r}") from errors[0]
    return {"requests": int(sum(counts)), "seconds": elapsed, "requests_per_s": sum(counts) / elapsed}


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


def _start_server(model_base_path: str, model_name: str, threads: Optional[int]):
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(grec_tf.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "grec_tf.serving.rest_server", "--model_base_path", model_base_path,
           "--model_name", model_name, "--port", "0", "--host", "127.0.0.1", "--poll_seconds", "0"]
    if threads:
        cmd += ["--rest_api_num_threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
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
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the server subprocess did not start: {' '.join(cmd)}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
    return proc, port


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


def run_serving_benchmark(model_base_path: str, model_name: str, make_batch: Callable[[int], dict], out_dir: str,
                          *, signature_name: str = "serving_default", batch_sizes: Sequence[int] = (1, 256),
                          seconds: float = 3.0, concurrency: int = 4, repeats: int = 3,
                          server_threads: Optional[int] = None) -> dict:
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
    """
    versions = list_versions(model_base_path)
    if not versions:
        raise FileNotFoundError(f"no numbered SavedModel version under {model_base_path}")
    version = versions[-1]
    model = load_served_model(model_name, version, os.path.join(model_base_path, str(version)))
    sig = model.signature(signature_name)

    proc, port = _start_server(model_base_path, model_name, server_threads)
    path = f"/v1/models/{model_name}/versions/{version}:predict"
    results = []
    try:
        for n in batch_sizes:
            batch = {k: np.asarray(v) for k, v in make_batch(n).items()}

            def in_process() -> Dict[str, np.ndarray]:
                out = sig.fn(**{k: tf.constant(v) for k, v in batch.items()})
                return {k: v.numpy() for k, v in out.items()}

            expected = in_process()
            bodies = request_bodies(batch, signature_name)
            # name -> (callable for latency, factory of per-thread callables for throughput)
            paths = {"in-process": (in_process, lambda: in_process)}
            diffs = {}
            for fmt, body in bodies.items():
                client = _Client("127.0.0.1", port, path, body)
                diffs[fmt] = _max_diff(json.loads(client()), fmt, expected)
                paths[fmt] = (client, lambda body=body: _Client("127.0.0.1", port, path, body))
            for call, _factory in paths.values():
                for _ in range(3):
                    call()
            lat = {name: _timed_loop(call, seconds, 20) for name, (call, _f) in paths.items()}
            # Throughput in interleaved rounds, median per path: machine noise hits every path alike.
            rounds: Dict[str, List[float]] = {name: [] for name in paths}
            for _ in range(max(1, int(repeats))):
                for name, (_call, factory) in paths.items():
                    rounds[name].append(_concurrent(factory, concurrency, seconds)["requests_per_s"])
            best = {}
            for name in paths:
                seq_rps = len(lat[name]) / sum(lat[name])
                conc_rps = float(np.median(rounds[name]))
                best[name] = max(seq_rps, conc_rps)
                row = {"batch": n, "path": "in-process" if name == "in-process" else "server",
                       "format": "-" if name == "in-process" else name, **_percentiles(lat[name]),
                       "requests_per_s_1": seq_rps, f"requests_per_s_{concurrency}": conc_rps,
                       "rows_per_s": best[name] * n}
                if name != "in-process":
                    row.update({"request_bytes": len(bodies[name]), "max_abs_diff_vs_in_process": diffs[name],
                                "throughput_ratio_vs_in_process": best[name] / best["in-process"]})
                results.append(row)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    largest = max(batch_sizes)
    ratios = {r["format"]: r["throughput_ratio_vs_in_process"] for r in results
              if r["path"] == "server" and r["batch"] == largest and r["format"] in TARGET_FORMATS}
    others = {r["format"]: r["throughput_ratio_vs_in_process"] for r in results
              if r["path"] == "server" and r["batch"] == largest and r["format"] not in TARGET_FORMATS}
    try:
        import orjson  # noqa: F401
        json_lib = "orjson"
    except ImportError:
        json_lib = "json (stdlib)"
    report = {
        "benchmark": "serving",
        "model_base_path": os.path.abspath(model_base_path), "model_name": model_name, "version": version,
        "signature_name": signature_name, "seconds_per_measurement": seconds, "concurrency": concurrency,
        "throughput_rounds": repeats,
        "environment": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                        "tensorflow": tf.__version__, "json": json_lib},
        "results": results,
        "target": {"batch": largest, "min_ratio": TARGET_RATIO, "ratios": ratios,
                   "met": {fmt: bool(r >= TARGET_RATIO) for fmt, r in ratios.items()},
                   "not_in_target": others},
    }
    write_report(out_dir, "serving", report, _markdown(report))
    return report


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
        "Server = `python -m pipelines.serve` in a subprocess on loopback (TF Serving REST API v1).",
        "",
        "Request bodies write float32 values in their shortest exact form (orjson, as TF Serving writes "
        "float32); `row, stdlib json` is the same row-format request written by `json.dumps` of `tolist()` "
        "values (17 digits per float), shown for comparison and not part of the target.",
        "",
        f"| batch | path | format | request KB | p50 ms | p99 ms | req/s (1) | req/s ({c}) | rows/s "
        "| server / in-process |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        ratio = r.get("throughput_ratio_vs_in_process")
        size = f"{r['request_bytes'] / 1024:.0f}" if "request_bytes" in r else ""
        lines.append(f"| {r['batch']} | {r['path']} | {r['format']} | {size} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['requests_per_s_1']:.1f} | {r[f'requests_per_s_{c}']:.1f} | {r['rows_per_s']:.0f} | "
                     f"{'' if ratio is None else f'{ratio:.3f}x'} |")
    t = report["target"]
    verdict = ", ".join(f"{fmt}: {t['ratios'][fmt]:.3f}x ({'met' if t['met'][fmt] else 'NOT met'})"
                        for fmt in t["ratios"])
    others = "".join(f"; {fmt} (not in the target): {r:.3f}x" for fmt, r in t.get("not_in_target", {}).items())
    lines += ["", f"Target: server throughput at batch {t['batch']} >= {t['min_ratio']} x in-process - {verdict}"
              f"{others}.", ""]
    return "\n".join(lines)


def run(out_dir: str, model_base_path: str = "", model_name: str = "grec", config: str = "configs/telecom.yaml",
        overrides: str = "data.rows=20000;train.epochs=1", seconds: str = "3.0") -> dict:
    """``python -m pipelines.benchmark serving``: benchmarks the GRec export at ``model_base_path``, or,
    when none is given, trains and exports a small GRec on the telecom data first (``config`` with the
    ``;``-separated ``overrides``). Batches are real test rows of that data, as raw serving inputs."""
    import tempfile

    from grec_tf.config import load_config
    from grec_tf.data.feature_arrays import frame_to_arrays
    from grec_tf.data.sources import load_splits
    from grec_tf.serving.signatures import export_model
    from grec_tf.training.trainer import train

    experiment = load_config(config, [item for item in overrides.split(";") if item.strip()])
    with tempfile.TemporaryDirectory(prefix="grec-serving-") as work:
        splits = load_splits(experiment, default_dir=os.path.join(work, "data"))
        if not model_base_path:
            trained = train(experiment, os.path.join(work, "run"), splits, verbose=0)
            export_model(trained.model, experiment, os.path.join(work, "exports"))
            model_base_path = os.path.join(work, "exports", experiment.export.model_name)
            model_name = experiment.export.model_name
        rows = frame_to_arrays(splits["test"], experiment, with_labels=False)

        def make_batch(n: int) -> Dict[str, np.ndarray]:
            index = np.arange(n) % len(rows["flow"])
            return {name: values[index] for name, values in rows.items()}

        return run_serving_benchmark(model_base_path, model_name, make_batch, out_dir, seconds=float(seconds))
