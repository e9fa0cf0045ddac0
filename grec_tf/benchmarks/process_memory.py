"""Peak memory of a command and every process it starts (Linux ``/proc``), for benchmarks whose work runs in child
processes (Beam's multi-process DirectRunner workers, a local training cluster).

The peak is sampled: the summed resident set size (RSS) of the process tree, read from ``/proc/{pid}/status`` every
``interval`` seconds. ``ru_maxrss`` from ``wait4`` is recorded beside it: exact, but the peak of the largest *single*
process of the tree (the command itself or a descendant it waited for), never a sum; and Linux carries a process's
high-water mark over ``exec``, so a child's ``ru_maxrss`` is at least the RSS of the process that forked it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

SAMPLE_SECONDS = 0.2


def _children_by_parent() -> Dict[int, List[int]]:
    """pid -> pids of its children, from ``/proc/{pid}/stat`` (field 4 is the parent's pid)."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # the process ended while we listed /proc
            continue
        # the command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")"
        parent = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(name))
    return children


def _rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pids(root: int) -> List[int]:
    """``root`` and all its descendants, now."""
    children, found, pending = _children_by_parent(), [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def tree_rss_bytes(root: int) -> int:
    """Summed RSS of ``root`` and all its descendants, now."""
    return sum(_rss_bytes(pid) for pid in tree_pids(root))


def available_memory_bytes() -> int:
    """``MemAvailable`` of ``/proc/meminfo``: what new processes can take without swapping or the OOM killer."""
    with open("/proc/meminfo", "rb") as handle:
        for line in handle:
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemAvailable line")


@dataclass
class MeasuredProcess:
    """A finished command: exit code, wall seconds, the sampled peak of its tree's summed RSS and the
    ``ru_maxrss`` of ``wait4`` (largest single process of the tree), both in bytes."""

    returncode: int
    seconds: float
    peak_tree_rss_bytes: int
    max_single_rss_bytes: int
    samples: int
    stopped_at_limit: bool = False


def _kill_tree(root: int) -> None:
    for pid in reversed(tree_pids(root)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_measured(command: Sequence[str], log_path: str, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, timeout: float = 24 * 3600.0, interval: float = SAMPLE_SECONDS,
                 rss_limit_bytes: Optional[int] = None) -> MeasuredProcess:
    """Runs ``command`` to its end (stdout and stderr to ``log_path``) while sampling its tree's RSS every
    ``interval`` seconds. A tree whose RSS passes ``rss_limit_bytes`` is killed (``stopped_at_limit``), before the
    OOM killer of a shared machine picks a victim; after ``timeout`` seconds it is killed and TimeoutError raised."""
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    peak, samples, stopped = 0, 0, False
    while True:
        # wait4 reaps the child ourselves: it is the one call that also gives the child's rusage
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = tree_rss_bytes(process.pid)
        peak, samples = max(peak, rss), samples + 1
        stopped = stopped or bool(rss_limit_bytes and rss > rss_limit_bytes)
        if stopped or time.perf_counter() - started > timeout:
            _kill_tree(process.pid)
            if not stopped:
                os.wait4(process.pid, 0)
                raise TimeoutError(f"{' '.join(command)}: still running after {timeout:.0f} s (log: {log_path})")
        time.sleep(interval)
    process.returncode = os.waitstatus_to_exitcode(status)
    return MeasuredProcess(process.returncode, time.perf_counter() - started, peak,
                           usage.ru_maxrss * 1024, samples, stopped)  # Linux gives ru_maxrss in KiB
