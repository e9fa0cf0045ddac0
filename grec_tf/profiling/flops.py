"""FLOPs of a traced ``tf.function`` from TensorFlow's profiler (``tf.compat.v1.profiler``).

The profiler prices each op of a graph with the ``flops`` statistics registered in TensorFlow
(``ops.RegisterStatistics``). Two gaps matter for GRec's layers and are closed here:

* ``Einsum`` has no registered statistic (counted as 0). We register ``2 * prod(sizes of all labels)`` for a
  two-operand einsum (one multiply and one add per term of the contraction) and the input size for one operand.
* Some element-wise ops used by GELU/SwiGLU/softmax gradients (``Erf``, ``Exp``, ``Tanh``, ``Sigmoid``...) and the
  MoE combine (``UnsortedSegmentSum``) are unpriced; we register one FLOP per element (``Erf``/``Exp``... are
  transcendental, but the profiler's convention for ``Rsqrt``/``Log`` is also 1 per element).
  ``MatMul`` is priced correctly by TensorFlow.
* ``BatchMatMul``/``BatchMatMulV2``/``V3`` ARE priced by TensorFlow, but wrongly whenever ``adj_x`` is set (the
  statistic reads an attribute ``transpose_a`` these ops do not have, so it takes the wrong contracted dimension):
  every weight gradient of a batched matmul is mispriced. We replace that statistic.

Sparse MoE dispatch makes shapes data dependent (``tf.dynamic_partition``, ``tf.unique``): they are unknown in
the traced graph, where the profiler would skip those ops. :func:`count_flops` therefore freezes the concrete
function, runs it once in a v1 Session with full tracing, and lets the profiler fill the missing shapes from
the run metadata, so every op is priced at the shapes it actually ran with.
"""
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import graph_util, ops, registry
from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  (TF's own statistics first)
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

_ELEMENTWISE_ONE_FLOP = ("Erf", "Exp", "Tanh", "Sigmoid", "Sqrt", "Relu", "Softplus", "Expm1", "Log1p",
                         "TanhGrad", "SigmoidGrad", "ReluGrad", "SqrtGrad", "Selu", "Elu")


def _shape(graph, name) -> tf.TensorShape:
    shape = graph_util.tensor_shape_from_node_def_name(graph, name)
    shape.assert_is_fully_defined()
    return shape


def _einsum_flops(graph, node):
    """2 * product of the sizes of every label (a contraction's multiply-adds); 1 per element for one operand."""
    operands = node.attr["equation"].s.decode().replace(" ", "").split("->")[0].split(",")
    sizes = {}
    for name, labels in zip(node.input, operands):
        shape = _shape(graph, name).as_list()
        if "..." in labels:  # broadcast dims: label them by position from the right so they count once
            head, tail = labels.split("...")
            ellipsis = [f"...{i}" for i in range(len(shape) - len(head) - len(tail), 0, -1)]
            labels = list(head) + ellipsis + list(tail)
        for label, size in zip(labels, shape):
            sizes[label] = max(size, sizes.get(label, 1))
    product = int(np.prod(list(sizes.values()), dtype=np.int64)) if sizes else 1
    return ops.OpStats("flops", (2 if len(operands) >= 2 else 1) * product)


def _batch_mat_mul_flops(graph, node):
    """2 * output elements * contracted dimension, honouring ``adj_x``."""
    a_shape = _shape(graph, node.input[0])
    adjoint_a = node.attr["adj_x"].b if "adj_x" in node.attr else node.attr["transpose_a"].b
    contracted = int(a_shape[-2] if adjoint_a else a_shape[-1])
    return ops.OpStats("flops", 2 * contracted * _shape(graph, node.name).num_elements())


def _replace(op_type: str, fn) -> None:
    key = f"{op_type},flops"
    entry = ops._stats_registry._registry.get(key)  # pylint: disable=protected-access
    if entry is None:
        _register(op_type, fn)
    else:
        entry[registry._TYPE_TAG] = fn  # pylint: disable=protected-access


def _first_input_elements(graph, node):
    return ops.OpStats("flops", _shape(graph, node.input[0]).num_elements())


def _output_elements(graph, node):
    return ops.OpStats("flops", _shape(graph, node.name).num_elements())


def _register(op_type: str, fn) -> None:
    try:
        ops.RegisterStatistics(op_type, "flops")(fn)
    except KeyError:  # already registered (by TensorFlow or an earlier import)
        pass


def register_flops_statistics() -> None:
    """Register the missing FLOPs statistics (idempotent)."""
    _register("Einsum", _einsum_flops)
    for op_type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        _replace(op_type, _batch_mat_mul_flops)
    _register("UnsortedSegmentSum", _first_input_elements)
    for op_type in _ELEMENTWISE_ONE_FLOP:
        _register(op_type, _output_elements)


register_flops_statistics()


def _as_value(arg) -> np.ndarray:
    if isinstance(arg, tf.TensorSpec):
        shape = [1 if d is None else d for d in arg.shape.as_list()]
        return np.zeros(shape, dtype=arg.dtype.as_numpy_dtype)
    return np.asarray(arg.numpy() if hasattr(arg, "numpy") else arg)


def count_flops(fn, *input_specs_or_tensors) -> int:
    """Total FLOPs of one call of ``fn`` on the given inputs, as priced by TF's profiler.

    Args:
      fn: a ``tf.function`` (its variables are frozen into constants for the count).
      *input_specs_or_tensors: positional inputs. Tensors (or arrays) are used as given; a ``tf.TensorSpec`` is
        fed zeros of its shape (unknown dimensions -> 1). Data-dependent shapes (sparse dispatch) are taken
        from that actual run, so pass real tensors when routing decides the cost (e.g. capacity binding).

    Returns:
      FLOPs (int) of the whole traced computation, gradients included if ``fn`` computes them.
    """
    return count_flops_by_scope(fn, *input_specs_or_tensors)["total"]


def count_flops_by_scope(fn, *input_specs_or_tensors, scopes: Sequence[str] = ()) -> Dict[str, int]:
    """Like :func:`count_flops`, plus the FLOPs of the ops whose name contains each of ``scopes`` (a layer's
    name scope, e.g. ``"router"``): ``{"total": ..., scope: ...}``."""
    graph, run_meta = _traced_run(fn, input_specs_or_tensors)
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler API logs a deprecation notice on first use
    try:
        profile = tf.compat.v1.profiler.profile(graph, run_meta=run_meta, cmd="graph", options=options)
    finally:
        logger.setLevel(level)
    counts = {"total": int(profile.total_float_ops)}
    nodes = list(_graph_nodes(profile))
    for scope in scopes:
        counts[scope] = int(sum(node.float_ops for node in nodes if scope in node.name))
    return counts


def _graph_nodes(node) -> Iterator:
    """Every node of a tfprof ``graph`` profile (its own ``float_ops``, children recursively; names unique)."""
    seen = set()
    stack = list(node.children)
    while stack:
        child = stack.pop()
        if child.name not in seen:
            seen.add(child.name)
            yield child
        stack.extend(child.children)


def _traced_run(fn, input_specs_or_tensors) -> Tuple[tf.Graph, "tf.compat.v1.RunMetadata"]:
    """``fn`` frozen into a graph and run once with full tracing (the profiler reads the run's shapes)."""
    register_flops_statistics()
    values = [_as_value(a) for a in input_specs_or_tensors]
    specs = [a if isinstance(a, tf.TensorSpec) else tf.TensorSpec(v.shape, tf.as_dtype(v.dtype))
             for a, v in zip(input_specs_or_tensors, values)]
    concrete = fn.get_concrete_function(*specs)
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    input_names = [t.name for t in frozen.inputs]
    output_names = [t.name for t in frozen.outputs]
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto()
    # No grappler rewrites: node names (and so the run-time shapes) must match the graph being priced.
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    run_meta = tf.compat.v1.RunMetadata()
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        session.run(output_names, feed_dict=dict(zip(input_names, values)),
                    options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                    run_metadata=run_meta)
    return graph, run_meta
