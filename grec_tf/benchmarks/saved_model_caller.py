"""The in-process side of the serving benchmark: a fresh process calling the SavedModel's signature directly.

    python -m grec_tf.benchmarks.saved_model_caller --saved_model DIR --signature NAME --batches FILE.pkl \\
        [--bodies FILE.pkl] [--intra_op N] [--inter_op N]

It loads the SavedModel as the server does (``load_served_model``: ``tf.saved_model.load`` plus each
signature's input specs) with TF's thread pools sized like the server's
(``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism``), so both sides of a
comparison start alike: a fresh process, the same TF settings, nothing else in it (the benchmark
process may have just trained the model). ``--batches`` is a pickle of ``{rows: {input: numpy array}}``;
``--bodies`` one of ``{rows: columnar predict body (bytes)}``, the same rows as TF Serving REST JSON.

Commands arrive one JSON object a line on stdin; each answer is one line ``@@{json}`` on stdout.
Each may name another ``"signature"`` of the same SavedModel (default: ``--signature``), which is
fed the batch's columns it takes (``score_all`` takes no ``use_case``):

- ``{"op": "predict", "batch": n}`` -> ``{"outputs": {name: nested list (strings as text)},
  "thread_pools": [intra, inter], "signatures": [the SavedModel's signature names]}``
- ``{"op": "latency", "batch": n, "seconds": s, "min_iters": k}`` -> ``{"latencies": [seconds, ...]}``
- ``{"op": "throughput", "batch": n, "threads": t, "seconds": s}`` -> ``{"requests", "seconds", "requests_per_s"}``

A call is ``signature(**{name: tf.constant(array)})`` plus ``.numpy()`` on every output. A command with
``"input": "columnar_json"`` calls with the body instead, as a REST worker thread would:
:class:`~grec_tf.serving.rest_server.PredictBody` decodes it, runs the signature and writes the JSON
answer (``predict`` then answers ``{"answer": the response body as text}``). The server's JSON work
without its HTTP: the benchmark tells the two costs apart with it.
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
from grec_tf.serving.model_registry import load_served_model
from grec_tf.serving.rest_server import PredictBody
from grec_tf.serving.thread_pools import configure_thread_pools

ANSWER_PREFIX = "@@"
COLUMNAR_JSON = "columnar_json"  # a command's "input": call with the columnar JSON body


def _jsonable(value: np.ndarray) -> list:
    """Numbers as they are, strings (TF gives bytes) as text."""
    if value.dtype.kind in "biuf":
        return value.tolist()
    return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value).tolist()


def _load_pickle(path: Optional[str]) -> dict:
    if not path:
        return {}
    with open(path, "rb") as f:
        return pickle.load(f)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grec_tf.benchmarks.saved_model_caller")
    p.add_argument("--saved_model", required=True)
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--batches", required=True)
    p.add_argument("--bodies", default="")
    p.add_argument("--intra_op", type=int, default=0)
    p.add_argument("--inter_op", type=int, default=0)
    args = p.parse_args(argv)
    configure_thread_pools(args.intra_op, args.inter_op)
    # The server's loader: tf.saved_model.load, plus the input specs its JSON decoding checks against.
    signatures = load_served_model("in-process", 0, args.saved_model).signatures
    batches: Dict[int, Dict[str, np.ndarray]] = _load_pickle(args.batches)
    bodies: Dict[int, bytes] = _load_pickle(args.bodies)

    def caller(rows: int, signature: str, json_input: bool):
        served = signatures[signature]
        if json_input:
            body = bodies[rows]
            named = PredictBody(body).signature_name
            if named != signature:  # the server would answer this body with another signature
                raise ValueError(f"the columnar body of {rows} rows names signature {named!r}, "
                                 f"the command {signature!r}")
            return lambda: PredictBody(body).answer(served)
        batch = {k: v for k, v in batches[rows].items() if k in served.inputs}

        def call() -> Dict[str, np.ndarray]:
            out = served.fn(**{k: tf.constant(v) for k, v in batch.items()})
            return {k: v.numpy() for k, v in out.items()}
        return call

    for line in sys.stdin:
        cmd = json.loads(line)
        json_input = cmd.get("input") == COLUMNAR_JSON
        call = caller(int(cmd["batch"]), cmd.get("signature", args.signature), json_input)
        if cmd["op"] == "predict" and json_input:
            answer = {"answer": call().decode("utf-8")}
        elif cmd["op"] == "predict":
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
