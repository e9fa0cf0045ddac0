"""A ``tf.distribute`` cluster of worker processes on this machine: one process per free 127.0.0.1 port, each with
its own ``TF_CONFIG`` (how the multi-worker tests and the ``scale`` benchmark start a real gRPC cluster locally)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def free_ports(count: int) -> List[int]:
    """``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_tf_config(ports: Sequence[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` of a cluster of 127.0.0.1 workers (worker 0 is the chief)."""
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def start_workers(command: Sequence[str], ports: Sequence[int], logs: Path, root: Path,
                  extra_args: Optional[Dict[int, Sequence[str]]] = None) -> List[subprocess.Popen]:
    """One ``python command`` process per port, started in ``root`` with ``root`` on ``PYTHONPATH``, its
    ``TF_CONFIG``, its own ``TMPDIR`` (``logs/tmp{i}``: a worker's temporary run folder stays its own) and its
    output appended to ``logs/worker{i}.out`` / ``.err``; ``extra_args``: more arguments by worker index."""
    processes = []
    for index in range(len(ports)):
        tmp = logs / f"tmp{index}"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(root), "TMPDIR": str(tmp), "TF_CONFIG": worker_tf_config(ports, index)}
        with open(logs / f"worker{index}.out", "ab") as out, open(logs / f"worker{index}.err", "ab") as err:
            processes.append(subprocess.Popen([sys.executable, *command, *(extra_args or {}).get(index, ())],
                                              cwd=root, env=env, stdout=out, stderr=err))
    return processes
