"""`python -m pipelines.serve` end to end, its flag checks, and the serving benchmark machinery."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from grec_tf.serving.rest_server import build_arg_parser, main
from tests.serving.conftest import MODEL
from tests.serving.toy_model import make_batch, to_instances_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_flags_mirror_tensorflow_model_server():
    args = build_arg_parser().parse_args(["--model_base_path", "x", "--model_name", "grec", "--rest_api_port", "9"])
    assert (args.model_base_path, args.model_name, args.port, args.host) == ("x", "grec", 9, "127.0.0.1")
    assert build_arg_parser().parse_args(["--model_base_path", "x", "--port", "7"]).port == 7


def test_missing_base_path_is_a_clear_error(tmp_path, capsys):
    assert main(["--model_base_path", str(tmp_path / "nope"), "--model_name", "grec", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "version folders" in err


def test_serve_cli_end_to_end(toy_exports):
    base = os.path.join(toy_exports["export_dir"], MODEL)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.serve", "--model_base_path", base, "--model_name",
                             MODEL, "--rest_api_port", "0", "--poll_seconds", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline and "http://" not in line:
            line = proc.stdout.readline()
            if not line:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, f"no address announced: {line!r}"
        url = f"http://127.0.0.1:{m.group(1)}"
        with urllib.request.urlopen(f"{url}/v1/models/{MODEL}", timeout=30) as r:
            assert json.loads(r.read())["model_version_status"][0]["state"] == "AVAILABLE"
        req = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict", method="POST",
                                     data=json.dumps({"instances": to_instances_json(make_batch(2))}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            assert len(json.loads(r.read())["predictions"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("server did not stop on SIGTERM")
    assert code == 0


def test_serving_benchmark_writes_json_and_markdown(toy_exports, tmp_path):
    from grec_tf.benchmarks.serving import run_serving_benchmark
    base = os.path.join(toy_exports["export_dir"], MODEL)
    report = run_serving_benchmark(base, MODEL, make_batch, str(tmp_path), batch_sizes=(1, 8), seconds=0.2,
                                   concurrency=2)
    on_disk = json.loads((tmp_path / "serving.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    rows = {(r["batch"], r["path"], r["format"]) for r in report["results"]}
    assert rows == {(b, "in-process", "-") for b in (1, 8)} | {(b, "server", f) for b in (1, 8)
                                                                for f in ("row", "columnar", "row, stdlib json")}
    for r in report["results"]:
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and r["rows_per_s"] > 0
        if r["path"] == "server":
            assert r["max_abs_diff_vs_in_process"] < 1e-6 and r["throughput_ratio_vs_in_process"] > 0
    assert set(report["target"]["ratios"]) == {"row", "columnar"}
    assert set(report["target"]["not_in_target"]) == {"row, stdlib json"}
    sizes = {r["format"]: r["request_bytes"] for r in report["results"] if r["batch"] == 8 and r["path"] == "server"}
    assert sizes["row"] < sizes["row, stdlib json"]  # float32 text is shorter than the stdlib's 17 digits
    md = (tmp_path / "serving.md").read_text()
    assert "| batch |" in md and "Target: server throughput at batch 8" in md
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
