"""Sparse expert dispatch: run only the selected experts, each once, on the rows that chose it.

Expert weights (E experts, D width, F hidden): ``kernel_in`` [E, D, F], ``bias_in`` [E, F],
``kernel_out`` [E, F, D], ``bias_out`` [E, D]; expert e computes ``act(x W_in[e] + b_in[e]) W_out[e] + b_out[e]``.

Free of Python loops over rows and of control-flow ops (so TF's profiler sees every matmul of a traced function).
Per-unit routings use :func:`dispatch_by_expert`: the (unit, slot) assignments are partitioned by expert id
(``tf.dynamic_partition``, order-preserving), each expert gathers its units, runs once on them as two plain
matmuls, and the gate-weighted outputs are summed back per unit with ``tf.math.unsorted_segment_sum``. The
weights are unstacked once (``tf.unstack``: its gradient is one ``stack``, where per-expert slices would each
scatter into a zero [E, ...] tensor). Expert capacity drops the assignments past ``capacity`` in slot-major,
then unit order (all first choices are served before any second choice).

Task routings (:func:`dispatch_by_route`, rows share a route) need no per-expert dispatch when there are at most E
possible routes (:func:`dispatch_fused_routes`): the rows are partitioned by route and each route runs its k experts
as one expert k F wide - the k kernels side by side ([D, k F]), the output kernels stacked and scaled by the gates
([k F, D]) - so the gate-weighted sum of the k experts is two matmuls. Same FLOPs as by expert, without the per-expert
row gathers, gate multiplies and ``unsorted_segment_sum`` (forward and backward): on UCI Adult (B = 1024 rows of S = 5
tokens, E = 8, k = 4, F = 128, 6 route ids) a GRec training step took 0.75-0.9x the time of dispatching by expert
(interleaved in one process, load 7-9). The routes' weights are gathered with a dense gradient
(:func:`gather_with_dense_gradient`). With more possible routes than experts (telecom: 4 x 5 route ids, E = 8) the
rows take their route's experts and are dispatched by expert, which keeps the traced step at E pairs of expert
matmuls whatever the number of task sentences.

Under a 16-bit compute dtype each expert's (or route's) rows are padded to a bucketed count
(:func:`bucketed_row_count`: at most 1/8 more rows, about 8 sizes per doubling) and the padding's outputs dropped.
The rows an expert gets change with every batch, and oneDNN builds (JIT-compiles) a new bfloat16 matmul kernel for
every new shape: on telecom (E = 8, dispatch by expert) a bfloat16 GRec step spent 31.6 ms per step in matmuls
against 5.3 ms in float32 (TF profiler), and one [M, 64] x [64, 512] matmul took 0.96 ms with M changing per call
against 0.62 ms with M fixed (float32: 0.88 vs 0.79, so float32 rows are not padded).
"""
from typing import Callable, Optional, Tuple

import tensorflow as tf

#: compute dtypes whose rows are padded to bucketed counts (see the module doc)
_BUCKETED_DTYPES = (tf.bfloat16, tf.float16)


def bucketed_row_count(count: tf.Tensor) -> tf.Tensor:
    """``count`` (int32 scalar >= 0) rounded up to a multiple of 2 ** max(floor(log2 count) - 3, 0): at most
    ``count / 8`` more, and 8 possible sizes between two powers of two (exact below 16)."""
    count = tf.cast(count, tf.int32)
    exponent = tf.floor(tf.math.log(tf.cast(tf.maximum(count, 1), tf.float32)) / tf.math.log(2.0))
    step = tf.cast(tf.pow(2.0, tf.maximum(exponent - 3.0, 0.0)), tf.int32)
    return (count + step - 1) // step * step


def _padded(values: tf.Tensor, bucket: bool) -> Tuple[tf.Tensor, tf.Tensor]:
    """(``values`` [n, ...] padded with zeros to :func:`bucketed_row_count` rows when ``bucket``, n)."""
    count = tf.shape(values)[0]
    if not bucket:
        return values, count
    padding = [[0, bucketed_row_count(count) - count]] + [[0, 0]] * (len(values.shape) - 1)
    return tf.pad(values, padding), count


def dispatch_by_expert(units: tf.Tensor, experts: tf.Tensor, gates: tf.Tensor, kernel_in: tf.Tensor,
                       bias_in: tf.Tensor, kernel_out: tf.Tensor, bias_out: tf.Tensor,
                       activation: Callable[[tf.Tensor], tf.Tensor], num_experts: int,
                       capacity: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Weighted sum of the selected experts' outputs, per routing unit.

    Args:
      units: [U, S, D] routing units (a token is a unit with S=1; a sentence-routed example has S tokens).
      experts: [U, k] int32 chosen experts.
      gates: [U, k] float32 renormalized gate weights.
      kernel_in, bias_in, kernel_out, bias_out: expert weights (see module doc), in the compute dtype.
      activation: hidden activation.
      num_experts: E (static).
      capacity: optional scalar int32, max units per expert; assignments beyond it are dropped.

    Returns:
      y [U, S, D] = sum over kept slots j of gates[u, j] * expert_{experts[u, j]}(units[u]) (zeros for a unit
      whose every assignment was dropped), and kept [U, k] bool.
    """
    top_k = experts.shape[-1]
    num_units = tf.shape(units)[0]
    tokens_per_unit = tf.shape(units)[1]
    width = tf.shape(units)[2]
    flat_units = tf.reshape(units, [num_units, -1])  # [U, S*D]
    # Slot-major assignment order: a = j * U + u.
    assign_expert = tf.reshape(tf.transpose(experts), [-1])
    assign_unit = tf.tile(tf.range(num_units), [top_k])
    assign_gate = tf.cast(tf.reshape(tf.transpose(gates), [-1]), units.dtype)
    keep, partition = _capacity_partition(assign_expert, num_experts, capacity)
    unit_parts = tf.dynamic_partition(assign_unit, partition, num_experts + 1)
    gate_parts = tf.dynamic_partition(assign_gate, partition, num_experts + 1)
    w_in, b_in, w_out, b_out = (tf.unstack(weight, num=num_experts) for weight in
                                (kernel_in, bias_in, kernel_out, bias_out))
    bucket = units.dtype in _BUCKETED_DTYPES
    outputs = []
    for e in range(num_experts):
        index, count = _padded(unit_parts[e], bucket)  # padding gathers unit 0; its outputs are dropped
        rows = tf.reshape(tf.gather(flat_units, index), [-1, width])  # [n_e * S, D]
        hidden = activation(tf.matmul(rows, w_in[e]) + b_in[e])
        out = tf.matmul(hidden, w_out[e]) + b_out[e]
        out = tf.reshape(out, [-1, tokens_per_unit * width])[:count]
        outputs.append(out * gate_parts[e][:, tf.newaxis])
    y = tf.math.unsorted_segment_sum(tf.concat(outputs, axis=0), tf.concat(unit_parts[:num_experts], axis=0),
                                     num_units)
    kept = tf.transpose(tf.reshape(keep, [top_k, num_units]))
    return tf.reshape(y, tf.shape(units)), kept


def _capacity_partition(assign_expert: tf.Tensor, num_experts: int,
                        capacity: Optional[tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """(keep [A] bool, partition [A] int32) of slot-major assignments [A]: an assignment past its expert's
    ``capacity`` goes to the extra partition E, which is never computed."""
    if capacity is None:
        return tf.ones_like(assign_expert, dtype=tf.bool), assign_expert
    one_hot = tf.one_hot(assign_expert, num_experts, dtype=tf.int32)
    position = tf.reduce_sum(tf.cumsum(one_hot, axis=0) * one_hot, axis=-1) - 1  # rank within expert
    keep = position < capacity
    return keep, tf.where(keep, assign_expert, num_experts)


def dispatch_by_route(rows: tf.Tensor, route_index: tf.Tensor, route_experts: tf.Tensor, route_gates: tf.Tensor,
                      kernel_in: tf.Tensor, bias_in: tf.Tensor, kernel_out: tf.Tensor, bias_out: tf.Tensor,
                      activation: Callable[[tf.Tensor], tf.Tensor], num_routes: int) -> tf.Tensor:
    """Rows that share routes: with at most E possible routes each route's k experts run once, fused, on the
    route's rows (:func:`dispatch_fused_routes`); with more, each row takes its route's experts and gates and the
    rows are dispatched by expert (:func:`dispatch_by_expert`), so the traced step never holds more than E pairs
    of expert matmuls, however many task sentences the data has.

    Args:
      rows: [B, S, D] examples (all S tokens of a row follow the row's route).
      route_index: [B] int32 index of each row's route in ``route_experts`` (from ``tf.unique``), < R.
      route_experts: [R, k] int32 experts chosen by each distinct route.
      route_gates: [R, k] float32 their renormalized gate weights.
      kernel_in, bias_in, kernel_out, bias_out: expert weights (see module doc), in the compute dtype.
      activation: hidden activation.
      num_routes: static upper bound on R (the router's ``num_routes``).

    Returns:
      [B, S, D] = sum_j gates[r, j] * expert_{experts[r, j]}(rows[b]) with r = route_index[b].
    """
    weights = (kernel_in, bias_in, kernel_out, bias_out)
    num_experts = int(kernel_in.shape[0])
    if num_routes <= num_experts:
        return dispatch_fused_routes(rows, route_index, route_experts, route_gates, *weights, activation=activation,
                                     num_routes=num_routes)
    y, _ = dispatch_by_expert(rows, tf.gather(route_experts, route_index), tf.gather(route_gates, route_index),
                              *weights, activation=activation, num_experts=num_experts)
    return y


def dispatch_fused_routes(rows: tf.Tensor, route_index: tf.Tensor, route_experts: tf.Tensor, route_gates: tf.Tensor,
                          kernel_in: tf.Tensor, bias_in: tf.Tensor, kernel_out: tf.Tensor, bias_out: tf.Tensor,
                          activation: Callable[[tf.Tensor], tf.Tensor], num_routes: int) -> tf.Tensor:
    """:func:`dispatch_by_route` with one partition per possible route (``num_routes`` of them, the ones past the
    batch's R routes empty): each route's k experts run as one expert of width k * F
    (:func:`fused_route_weights`), two matmuls per route. Args and result as :func:`dispatch_by_route`."""
    tokens, width = tf.shape(rows)[1], tf.shape(rows)[2]
    parts = tf.dynamic_partition(rows, route_index, num_routes)
    positions = tf.dynamic_partition(tf.range(tf.shape(rows)[0]), route_index, num_routes)
    # partition r holds route r's rows; past the batch's R routes it is empty and any route's weights will do
    route = tf.minimum(tf.range(num_routes), tf.shape(route_experts)[0] - 1)
    weights = fused_route_weights(tf.gather(route_experts, route), tf.gather(route_gates, route), kernel_in, bias_in,
                                  kernel_out, bias_out)
    # unstacked once: the gradient is one stack, where an index per route would scatter into zeros each time
    w_in, b_in, w_out, b_out = (tf.unstack(weight, num=num_routes) for weight in weights)
    bucket = rows.dtype in _BUCKETED_DTYPES
    outputs = []
    for r in range(num_routes):
        part, count = _padded(parts[r], bucket)
        flat = tf.reshape(part, [-1, width])  # [n_r * S, D]
        out = tf.matmul(activation(tf.matmul(flat, w_in[r]) + b_in[r]), w_out[r]) + b_out[r]
        outputs.append(tf.reshape(out, [-1, tokens, width])[:count])
    return tf.dynamic_stitch(positions, outputs)


def fused_route_weights(route_experts: tf.Tensor, route_gates: tf.Tensor, kernel_in: tf.Tensor, bias_in: tf.Tensor,
                        kernel_out: tf.Tensor,
                        bias_out: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Each route's k experts as one expert of hidden width k * F, the gates folded into the output side.

    Args: route_experts [R, k] int32, route_gates [R, k] float32, the expert weights (see module doc).

    Returns: w_in [R, D, k F] (expert j's kernel in columns j F .. (j + 1) F), b_in [R, k F], w_out [R, k F, D]
    (expert j's kernel times gate j in rows j F .. (j + 1) F) and b_out [R, D] = sum_j gate_j b_out[e_j].
    """
    top_k, (_, width, hidden) = route_experts.shape[-1], kernel_in.shape
    gates = tf.cast(route_gates, kernel_out.dtype)
    w_in = tf.transpose(gather_with_dense_gradient(kernel_in, route_experts), [0, 2, 1, 3])  # [R, D, k, F]
    w_out = gather_with_dense_gradient(kernel_out, route_experts) * gates[..., tf.newaxis, tf.newaxis]
    return (tf.reshape(w_in, [-1, width, top_k * hidden]),
            tf.reshape(gather_with_dense_gradient(bias_in, route_experts), [-1, top_k * hidden]),
            tf.reshape(w_out, [-1, top_k * hidden, width]),
            tf.einsum("rk,rkd->rd", gates, gather_with_dense_gradient(bias_out, route_experts)))


@tf.custom_gradient
def gather_with_dense_gradient(params: tf.Tensor, indices: tf.Tensor):
    """``tf.gather(params, indices)`` whose gradient for ``params`` is a dense tensor summed over repeated indices,
    not ``IndexedSlices``: an expert chosen by several routes must reach the optimizer as one dense gradient (with
    slices, Adam would square each route's share separately), and selecting by one-hot contraction instead would
    cost FLOPs that grow with E."""

    def grad(upstream: tf.Tensor):
        return tf.math.unsorted_segment_sum(upstream, indices, tf.shape(params)[0]), None

    return tf.gather(params, indices), grad
