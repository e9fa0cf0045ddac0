"""The in-process side of the serving benchmark: a fresh process calling the SavedModel's signature directly.

    python -m grec_tf.benchmarks.saved_model_caller --saved_model DIR --signature NAME --batches FILE.pkl \\
        [--intra_op N] [--inter_op N]

It loads the SavedModel with ``tf.saved_model.load`` and TF's thread pools sized like the server's
(``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism``), so both sides of a
comparison start alike: a fresh process, the same TF settings, nothing else in it (the benchmark
process may have just trained the model). ``--batches`` is a pickle of ``{rows: {input: numpy array}}``.

Commands arrive one JSON object a line on stdin; each answer is one line ``@@{json}`` on stdout.
Each may name another ``"signature"`` of the same SavedModel (default: ``--signature``), which is
fed the batch's columns it takes (``score_all`` takes no ``use_case``):

- ``{"op": "predict", "batch": n}`` -> ``{"outputs": {name: nested list (strings as text)},
  "thread_pools": [intra, inter], "signatures": [the SavedModel's signature names]}``
- ``{"op": "latency", "batch": n, "seconds": s, "min_iters": k}`` -> ``{"latencies": [seconds, ...]}``
- ``{"op": "throughput", "batch": n, "threads": t, "seconds": s}`` -> ``{"requests", "seconds", "requests_per_s"}``

A call is ``signature(**{name: tf.constant(array)})`` plus ``.numpy()`` on every output.
"""
import argparse
import json
import pickle
import sys
from typing import Dict, List, Optional

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow is imported)
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops that exported GRec models use)

from grec_tf.benchmarks.request_timing import concurrent_rate, timed_loop
from grec_tf.serving.thread_pools import configure_thread_pools

ANSWER_PREFIX = "@@"


def _jsonable(value: np.ndarray) -> list:
    """Numbers as they are, strings (TF gives bytes) as text."""
    if value.dtype.kind in "biuf":
        return value.tolist()
    return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value).tolist()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grec_tf.benchmarks.saved_model_caller")
    p.add_argument("--saved_model", required=True)
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--batches", required=True)
    p.add_argument("--intra_op", type=int, default=0)
    p.add_argument("--inter_op", type=int, default=0)
    args = p.parse_args(argv)
    configure_thread_pools(args.intra_op, args.inter_op)
    signatures = tf.saved_model.load(args.saved_model, tags=["serve"]).signatures
    with open(args.batches, "rb") as f:
        batches: Dict[int, Dict[str, np.ndarray]] = pickle.load(f)

    def caller(rows: int, signature: str):
        fn = signatures[signature]
        takes = fn.structured_input_signature[1]
        batch = {k: v for k, v in batches[rows].items() if k in takes}

        def call() -> Dict[str, np.ndarray]:
            out = fn(**{k: tf.constant(v) for k, v in batch.items()})
            return {k: v.numpy() for k, v in out.items()}
        return call

    for line in sys.stdin:
        cmd = json.loads(line)
        call = caller(int(cmd["batch"]), cmd.get("signature", args.signature))
        if cmd["op"] == "predict":
            threading = tf.config.threading
            answer = {"outputs": {k: _jsonable(v) for k, v in call().items()},
                      "thread_pools": [threading.get_intra_op_parallelism_threads(),
                                       threading.get_inter_op_parallelism_threads()],
                      "signatures": sorted(signatures)}
        elif cmd["op"] == "latency":
            answer = {"latencies": timed_loop(call, float(cmd["seconds"]), int(cmd["min_iters"]))}
        elif cmd["op"] == "throughput":
            answer = concurrent_rate(lambda: call, int(cmd["threads"]), float(cmd["seconds"]))
        else:
            raise ValueError(f"unknown command {cmd!r}")
        print(ANSWER_PREFIX + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
