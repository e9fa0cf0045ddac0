"""`python -m pipelines.serve` end to end, its flag checks, and the serving benchmark machinery."""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from grec_tf.serving.model_server import main, read_announced_ports
from grec_tf.serving.server_flags import build_arg_parser, pick_free_port
from tests.serving.conftest import MODEL
from tests.serving.toy_model import USE_CASES, make_batch, to_instances_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_flags_mirror_tensorflow_model_server():
    args = build_arg_parser().parse_args(["--model_base_path", "x", "--model_name", "grec", "--rest_api_port", "9"])
    assert (args.model_base_path, args.model_name, args.port, args.rest_api_port, args.host) == (
        "x", "grec", 8500, 9, "127.0.0.1")  # --port is gRPC's, 8500 by default, as in TF Serving
    args = build_arg_parser().parse_args(["--model_base_path", "x", "--port", "7"])
    assert (args.port, args.rest_api_port) == (7, 8501)


@pytest.mark.parametrize("flags, message", [
    (["--port", "8600", "--rest_api_port", "8600"], "--port (gRPC) and --rest_api_port (REST) are both 8600"),
    (["--port", "70000"], "--port must be a port number from 0 to 65535, got 70000"),
    (["--rest_api_port", "-1"], "--rest_api_port must be a port number from 0 to 65535, got -1"),
    (["--grpc_max_threads", "0"], "--grpc_max_threads must be positive, got 0"),
])
def test_port_and_thread_flag_errors(toy_exports, capsys, flags, message):
    assert main(["--model_base_path", os.path.join(toy_exports["export_dir"], MODEL), *flags]) == 2
    assert message in capsys.readouterr().err


def test_missing_base_path_is_a_clear_error(tmp_path, capsys):
    assert main(["--model_base_path", str(tmp_path / "nope"), "--model_name", "grec", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "version folders" in err


@pytest.mark.parametrize("argv, status", [(["--help"], 0), (["--model_base_path", "/nonexistent/grec"], 2),
                                          (["--model_base_path", ".", "--port", "eighty"], 2)])
def test_serve_help_and_flag_errors_answer_without_tensorflow(argv, status):
    # Runs the module as `python -m pipelines.serve` does, then reports whether TensorFlow got imported.
    code = ("import runpy, sys\n"
            f"sys.argv = ['pipelines/serve.py', *{argv!r}]\n"
            "try:\n    runpy.run_module('pipelines.serve', run_name='__main__')\n"
            "except SystemExit as exit:\n    status = exit.code\n"
            "print('tensorflow imported:', 'tensorflow' in sys.modules, 'exit status:', status)\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == f"tensorflow imported: False exit status: {status}", out.stderr
    if argv == ["--help"]:
        for flag in ("--model_base_path", "--rest_api_port", "--tensorflow_intra_op_parallelism",
                     "--file_system_poll_wait_seconds"):
            assert flag in out.stdout
    elif "--port" in argv:
        assert "argument --port: invalid int value: 'eighty'" in out.stderr
    else:
        assert "error: --model_base_path /nonexistent/grec is not a folder" in out.stderr


def _start_cli(base, *flags):
    """``python -m pipelines.serve`` on ``base``; returns (process, {"grpc": port, "rest": port or None}, text)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.serve", "--model_base_path", base, "--model_name",
                             MODEL, "--poll_seconds", "0", *flags],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports, text = read_announced_ports(proc.stdout)
    if ports["grpc"] is None:
        _stop_cli(proc, signal.SIGKILL)
        pytest.fail(f"no gRPC address announced: {text!r}")
    return proc, ports, text


def _stop_cli(proc, sig=signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"server did not stop on {sig!r}")


def _grpc_status(port):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    return [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
            for s in response.model_version_status]


def test_serve_cli_end_to_end(toy_exports):
    base = os.path.join(toy_exports["export_dir"], MODEL)
    rest_port = pick_free_port()
    proc, ports, _ = _start_cli(base, "--port", "0", "--rest_api_port", str(rest_port))
    try:
        assert ports["rest"] == rest_port and ports["grpc"] not in (0, rest_port)
        url = f"http://127.0.0.1:{rest_port}"
        with urllib.request.urlopen(f"{url}/v1/models/{MODEL}", timeout=30) as r:
            assert json.loads(r.read())["model_version_status"][0]["state"] == "AVAILABLE"
        req = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict", method="POST",
                                     data=json.dumps({"instances": to_instances_json(make_batch(2))}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            assert len(json.loads(r.read())["predictions"]) == 2
        assert _grpc_status(ports["grpc"]) == [(1, "AVAILABLE")]
        with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics", timeout=30) as r:
            metrics = r.read().decode()
        from prometheus_client.parser import text_string_to_metric_families
        counted = {(s.labels["api"], s.labels["method"], s.labels["status"]): s.value
                   for family in text_string_to_metric_families(metrics) for s in family.samples
                   if s.name == "grec_serving_requests_total"}
        assert counted == {("rest", "status", "OK"): 1, ("rest", "predict", "OK"): 1, ("grpc", "status", "OK"): 1}
    finally:
        code = _stop_cli(proc)
    assert code == 0


def test_rest_api_port_0_serves_grpc_only_and_sigint_stops_it(toy_exports):
    proc, ports, text = _start_cli(os.path.join(toy_exports["export_dir"], MODEL), "--port", "0",
                                   "--rest_api_port", "0")
    try:
        assert "REST API off (--rest_api_port 0)" in text and ports["rest"] is None
        assert _grpc_status(ports["grpc"]) == [(1, "AVAILABLE")]
    finally:
        code = _stop_cli(proc, signal.SIGINT)
    assert code == 0


@pytest.mark.parametrize("api, flag", [("gRPC", "--port"), ("REST", "--rest_api_port")])
def test_a_busy_port_is_a_clear_error(toy_exports, capsys, api, flag):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--port": "0", "--rest_api_port": "0", flag: str(port)}
        assert main(["--model_base_path", os.path.join(toy_exports["export_dir"], MODEL), "--poll_seconds", "0",
                     *[item for pair in ports.items() for item in pair]]) == 1
    assert f"error: cannot listen for {api} on 127.0.0.1:{port} ({flag})" in capsys.readouterr().err


def test_serving_benchmark_writes_json_and_markdown(toy_exports, tmp_path):
    from grec_tf.benchmarks.serving import run_serving_benchmark
    base = os.path.join(toy_exports["export_dir"], MODEL)
    report = run_serving_benchmark(base, MODEL, make_batch, str(tmp_path), batch_sizes=(1, 8), seconds=0.2,
                                   concurrency=2, thread_pools=[(0, 0), (1, 2)])
    on_disk = json.loads((tmp_path / "serving.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    rows = [(r["thread_pools"], r["batch"], r["path"], r["format"]) for r in report["results"]]
    pools = ("TF default", "intra_op=1, inter_op=2")
    assert sorted(rows) == sorted([(p, b, "in-process", f) for p in pools for b in (1, 8)
                                   for f in ("-", "columnar JSON")]
                                  + [(p, b, "server", f) for p in pools for b in (1, 8)
                                     for f in ("row", "columnar", "row, stdlib json", "grpc")])
    by_key = {(r["thread_pools"], r["batch"], r["path"], r["format"]): r for r in report["results"]}
    for r in report["results"]:
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and r["rows_per_s"] > 0
        rounds = r["requests_per_s_2_rounds"]
        assert len(rounds) == report["throughput_rounds"] and r["requests_per_s_2"] == np.median(rounds)
        tensors = by_key[(r["thread_pools"], r["batch"], "in-process", "-")]
        if r is not tensors:  # every other path: the same outputs, and its throughput over the tensors call's
            assert r["max_abs_diff_vs_in_process"] < 1e-6
            assert r["throughput_ratio_vs_in_process"] == pytest.approx(r["rows_per_s"] / tensors["rows_per_s"])
        if r["path"] == "in-process":  # the in-process caller ran with the thread pools it was given
            assert r["tf_thread_pools_in_effect"] == ([0, 0] if r["thread_pools"] == "TF default" else [1, 2])
        if r["format"] == "columnar" and r["path"] == "server":  # REST over the same JSON work in-process
            json_in = by_key[(r["thread_pools"], r["batch"], "in-process", "columnar JSON")]
            assert r["throughput_ratio_vs_in_process_json"] == pytest.approx(r["rows_per_s"] / json_in["rows_per_s"])
    ratios = {r["format"]: r["throughput_ratio_vs_in_process"] for r in report["results"]
              if r["thread_pools"] == "TF default" and r["batch"] == 8 and r["path"] == "server"}
    score_all = report["score_all_vs_serving_default"]
    assert (score_all["batch"], score_all["use_cases"]) == (8, len(USE_CASES))
    assert score_all["p50_ratio"] == score_all["score_all"]["p50_ms"] / score_all["serving_default"]["p50_ms"] > 0
    assert report["targets_judged_on"] == {"thread_pools": "TF default", "batch": 8}
    assert report["targets"] == {
        "grpc_throughput_vs_in_process_b8": {"value": ratios["grpc"], "limit": 0.9, "pass": ratios["grpc"] >= 0.9},
        "rest_columnar_vs_in_process_b8": {"value": ratios["columnar"], "limit": 0.9,
                                           "pass": ratios["columnar"] >= 0.9},
        "score_all_latency_vs_default_b8": {"value": score_all["p50_ratio"], "limit": 1.6,
                                            "pass": score_all["p50_ratio"] <= 1.6}}
    assert report["all_targets_pass"] == all(t["pass"] for t in report["targets"].values())
    assert report["sub_models"] == []  # no sub-model was given to compare
    sizes = {r["format"]: r["request_bytes"] for r in report["results"] if r["batch"] == 8 and r["path"] == "server"}
    assert sizes["row"] < sizes["row, stdlib json"]  # float32 text is shorter than the stdlib's 17 digits
    md = (tmp_path / "serving.md").read_text()
    assert "| TF threads | batch |" in md and "| intra_op=1, inter_op=2 | 8 | server | row |" in md
    assert "| intra_op=1, inter_op=2 | 8 | server | grpc |" in md
    assert f"| grpc_throughput_vs_in_process_b8 | {ratios['grpc']:.3f} | 0.9 |" in md
    assert "`score_all` (3 use cases a row)" in md and "## Full model vs one-task-sentence sub-model" in md
    assert "| TF default | 8 | in-process | columnar JSON |" in md and "## REST columnar: JSON's cost and HTTP's" in md
    rest = by_key[("TF default", 8, "server", "columnar")]
    assert f"{rest['throughput_ratio_vs_in_process_json']:.3f}x of the same JSON work in-process" in md
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_benchmark_http_client_reads_answers_back_to_back_and_names_a_refusal(served):
    from grec_tf.benchmarks.serving import _Client
    client, _registry = served
    good = json.dumps({"instances": to_instances_json(make_batch(3))}).encode()
    ok = _Client("127.0.0.1", client.port, f"/v1/models/{MODEL}:predict", good)
    answers = [json.loads(ok()) for _ in range(3)]  # one keep-alive connection, each answer read whole
    assert answers[0] == answers[1] == answers[2] == client.post(f"/v1/models/{MODEL}:predict", raw=good)[1]
    refused = _Client("127.0.0.1", client.port, "/v1/models/nope:predict", good)
    with pytest.raises(RuntimeError, match=r"server answered HTTP/1.1 404 .*nope"):
        refused()


def test_benchmark_http_client_names_an_answer_it_cannot_frame():
    import socket
    import threading

    from grec_tf.benchmarks.serving import _Client
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_chunked():
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    thread = threading.Thread(target=answer_chunked, daemon=True)
    thread.start()
    with listener:
        client = _Client("127.0.0.1", listener.getsockname()[1], "/v1/models/m:predict", b"{}")
        with pytest.raises(RuntimeError, match="server answered HTTP/1.1 200 OK without a Content-Length"):
            client()
    thread.join(timeout=10)


def test_in_process_caller_refuses_a_body_naming_another_signature(toy_exports, tmp_path, monkeypatch, capsys):
    import io
    import pickle

    from grec_tf.benchmarks.saved_model_caller import main as caller_main
    from grec_tf.benchmarks.serving import request_bodies
    batch = make_batch(2)
    for name, value in (("batches", {2: batch}), ("bodies", {2: request_bodies(batch, "score_all")["columnar"]})):
        with open(tmp_path / f"{name}.pkl", "wb") as f:
            pickle.dump(value, f)
    saved_model = os.path.join(toy_exports["export_dir"], MODEL, "1")
    args = ["--saved_model", saved_model, "--batches", str(tmp_path / "batches.pkl"),
            "--bodies", str(tmp_path / "bodies.pkl")]
    monkeypatch.setattr("sys.stdin", io.StringIO('{"op": "predict", "batch": 2, "input": "columnar_json", '
                                                 '"signature": "score_all"}\n'))
    assert caller_main(args) == 0  # the body's own signature: answered
    assert '"answer"' in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO('{"op": "predict", "batch": 2, "input": "columnar_json"}\n'))
    with pytest.raises(ValueError, match="names signature 'score_all', the command 'serving_default'"):
        caller_main(args)


def test_serving_benchmark_checks_every_output_of_a_multi_output_signature(toy_exports, tmp_path):
    from grec_tf.benchmarks.serving import run_serving_benchmark
    base = os.path.join(toy_exports["export_dir"], MODEL)
    report = run_serving_benchmark(base, MODEL, make_batch, str(tmp_path), signature_name="score_all",
                                   batch_sizes=(3,), seconds=0.1, concurrency=1, repeats=1)
    server = [r for r in report["results"] if r["path"] == "server"]
    assert {r["format"] for r in server} == {"row", "columnar", "row, stdlib json", "grpc"}
    assert all(r["max_abs_diff_vs_in_process"] < 1e-6 for r in server)


def test_thread_pool_option_parsing():
    from grec_tf.benchmarks.serving import parse_thread_pools
    assert parse_thread_pools("0/0, 1/0") == [(0, 0), (1, 0)]
    for bad in ("1", "1/x", "-1/0", "1/0/2", ""):
        with pytest.raises(ValueError, match="thread_pools"):
            parse_thread_pools(bad)


def test_server_sizes_tensorflow_thread_pools_from_its_flags(toy_exports, monkeypatch, capsys):
    import grec_tf.serving.model_server as model_server

    class Configured(Exception):
        pass

    def record(intra_op, inter_op):
        raise Configured((intra_op, inter_op))
    monkeypatch.setattr(model_server, "configure_thread_pools", record)
    base = os.path.join(toy_exports["export_dir"], MODEL)
    with pytest.raises(Configured) as got:
        main(["--model_base_path", base, "--tensorflow_intra_op_parallelism", "1",
              "--tensorflow_inter_op_parallelism", "3"])
    assert got.value.args[0] == (1, 3)  # before any model is loaded
    assert main(["--model_base_path", base, "--tensorflow_intra_op_parallelism", "-1"]) == 2
    assert "--tensorflow_intra_op_parallelism must be >= 0" in capsys.readouterr().err


def test_server_process_runs_on_uvloop(toy_exports, monkeypatch):
    import asyncio

    import grec_tf.serving.model_server as model_server
    loops = []

    async def serve(registry, metrics, args):
        loops.append(type(asyncio.get_running_loop()).__module__)
        return 7
    monkeypatch.setattr(model_server, "_serve", serve)
    base = os.path.join(toy_exports["export_dir"], MODEL)
    assert main(["--model_base_path", base, "--port", "0", "--rest_api_port", "0"]) == 7
    assert loops == ["uvloop"]


def test_server_process_freezes_its_loaded_model(toy_exports, monkeypatch):
    import grec_tf.serving.model_server as model_server

    class Built(Exception):
        pass

    def registry(*args, **kwargs):
        raise Built(kwargs)
    monkeypatch.setattr(model_server, "configure_thread_pools", lambda intra_op, inter_op: None)
    monkeypatch.setattr(model_server, "ModelRegistry", registry)
    with pytest.raises(Built) as got:
        main(["--model_base_path", os.path.join(toy_exports["export_dir"], MODEL), "--poll_seconds", "0"])
    assert got.value.args[0] == {"poll_seconds": 0.0, "freeze_heap": True}


def test_thread_pools_are_sized_in_a_fresh_process_and_refused_later():
    code = ("import grec_tf, tensorflow as tf\n"
            "from grec_tf.serving.thread_pools import configure_thread_pools\n"
            "configure_thread_pools(1, 2)\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads(),"
            " tf.config.threading.get_inter_op_parallelism_threads())\n"
            "tf.constant(1.0) + 1\n"
            "configure_thread_pools(1, 2)\n"
            "try:\n    configure_thread_pools(2, 2)\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "1 2"
    assert lines[1].startswith("refused:") and "intra_op=2" in lines[1] and "(intra_op=1, inter_op=2" in lines[1]
