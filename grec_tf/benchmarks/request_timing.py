"""Latency and throughput loops of the serving benchmark, shared by its client side and its in-process caller."""
import threading
import time
from typing import Callable, Dict, List

import numpy as np


def percentiles(latencies: List[float]) -> Dict[str, float]:
    """p50/p99/mean in milliseconds of latencies given in seconds, and their count."""
    a = np.asarray(latencies) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def timed_loop(fn: Callable[[], None], seconds: float, min_iters: int) -> List[float]:
    """Call ``fn`` back to back for ``seconds`` (at least ``min_iters`` times); each call's seconds."""
    lat = []
    deadline = time.perf_counter() + seconds
    while len(lat) < min_iters or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
        if len(lat) >= 100000:
            break
    return lat


def concurrent_rate(make_worker: Callable[[], Callable[[], None]], threads: int, seconds: float) -> Dict[str, float]:
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
