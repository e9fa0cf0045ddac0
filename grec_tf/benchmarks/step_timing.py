"""Shared harness of the step-timing benchmarks (`layers`, `scaling`): interleaved timing, the machine's
description and a temporary mixed-precision policy."""
import contextlib
import os
import platform
import statistics
import time
from typing import Callable, Dict, Iterator, List, Tuple

import tensorflow as tf


def time_interleaved(steps: Dict[str, Callable], args: Dict[str, tuple], rounds: int,
                     warmup: int = 3) -> Tuple[Dict[str, float], Dict[str, List[float]]]:
    """Median wall time (ms) of one call of each step, timed in interleaved rounds (one call of each step
    per round, so load from other processes hits them alike); also returns every sample. A step returns
    a tuple whose first element is a tensor (read back to wait for the computation)."""
    for name, step in steps.items():
        for _ in range(warmup):
            step(*args[name])[0].numpy()
    samples: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step(*args[name])[0].numpy()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}, samples


def round_ratio(samples: Dict[str, List[float]], a: str, b: str) -> float:
    """Median over rounds of step ``a``'s time over step ``b``'s in the same round (``samples`` from
    :func:`time_interleaved`): load that hits one round hits both sides of its ratio."""
    return round(statistics.median(x / y for x, y in zip(samples[a], samples[b])), 3)


def machine_description() -> dict:
    """CPU model, cores, Python and TensorFlow versions, and the load average when the benchmark starts."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "load_average_at_start": list(os.getloadavg())}


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Run the block under Keras's global mixed-precision ``policy`` and restore the previous one."""
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)

