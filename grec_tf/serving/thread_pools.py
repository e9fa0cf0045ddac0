"""TensorFlow's CPU thread pools for a serving process, named like ``tensorflow_model_server``'s flags.

``intra_op`` threads split one op (a matmul) across cores; ``inter_op`` threads run independent ops
of a graph side by side. 0 leaves the choice to TensorFlow (one thread per core for each), which is
also TF Serving's default. Both can be set only before TensorFlow runs its first op in the process.

On 2 cores, GRec's telecom model at 256 rows a request ran about 1.5x the requests per second with
``intra_op=1`` than with TensorFlow's choice in-process, and about 1.4x behind the server (its ops
are small, so splitting each across cores costs more than it saves); ``benchmarks/results/serving.md``
measures both settings.
"""
import tensorflow as tf


def configure_thread_pools(intra_op: int = 0, inter_op: int = 0) -> None:
    """Size TF's intra-op and inter-op pools for this process (0 = TensorFlow's choice).

    Raises ValueError for a negative size and RuntimeError, naming both settings, when TensorFlow
    has already started its pools with other sizes in this process."""
    for flag, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if int(value) != value or value < 0:
            raise ValueError(f"{flag} parallelism must be a whole number >= 0 (0 = TensorFlow's choice), got {value!r}")
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    if current == (intra_op, inter_op):
        return
    try:
        threading.set_intra_op_parallelism_threads(int(intra_op))
        threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as e:
        raise RuntimeError(
            f"cannot size TensorFlow's thread pools to intra_op={intra_op}, inter_op={inter_op}: TensorFlow "
            f"already runs them in this process (intra_op={current[0]}, inter_op={current[1]}; 0 = its choice); "
            "configure them before the first TensorFlow op, e.g. in a fresh process") from e
