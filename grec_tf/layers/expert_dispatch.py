"""Sparse expert dispatch: run only the selected experts, each once, on the rows that chose it.

Expert weights (E experts, D width, F hidden): ``kernel_in`` [E, D, F], ``bias_in`` [E, F],
``kernel_out`` [E, F, D], ``bias_out`` [E, D]; expert e computes ``act(x W_in[e] + b_in[e]) W_out[e] + b_out[e]``.

Two strategies, both free of Python loops over rows and of control-flow ops (so TF's profiler sees every
matmul of a traced function):

* :func:`dispatch_by_expert` (token / sentence routing, every unit has its own route): the (unit, slot)
  assignments are partitioned by expert id (``tf.dynamic_partition``, order-preserving), each expert gathers its
  units, runs once on them, and the weighted outputs are summed back with ``tf.math.unsorted_segment_sum``.
  Expert capacity drops the assignments past ``capacity`` in slot-major, then unit order (all first choices
  are served before any second choice).
* :func:`dispatch_by_route` (task / task-sentence routing, rows share a route): rows are partitioned by their
  distinct route; each route gathers its k selected experts' weights ([k, D, F] and [k, F, D]) and runs them
  fused as one batched feed-forward (one batched matmul per layer, the route's rows broadcast over the k
  experts, no weight transposes) once on that route's rows; the k outputs are combined with the gates.
"""
from typing import Callable, Optional, Tuple

import tensorflow as tf


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
    if capacity is not None:
        one_hot = tf.one_hot(assign_expert, num_experts, dtype=tf.int32)
        position = tf.reduce_sum(tf.cumsum(one_hot, axis=0) * one_hot, axis=-1) - 1  # rank within expert
        keep = position < capacity
        partition = tf.where(keep, assign_expert, num_experts)  # dropped -> extra partition, never computed
    else:
        keep = tf.ones_like(assign_expert, dtype=tf.bool)
        partition = assign_expert
    unit_parts = tf.dynamic_partition(assign_unit, partition, num_experts + 1)
    gate_parts = tf.dynamic_partition(assign_gate, partition, num_experts + 1)
    outputs = []
    for e in range(num_experts):
        rows = tf.reshape(tf.gather(flat_units, unit_parts[e]), [-1, width])  # [n_e * S, D]
        hidden = activation(tf.matmul(rows, kernel_in[e]) + bias_in[e])
        out = tf.matmul(hidden, kernel_out[e]) + bias_out[e]
        out = tf.reshape(out, [-1, tokens_per_unit * width]) * gate_parts[e][:, tf.newaxis]
        outputs.append(out)
    y = tf.math.unsorted_segment_sum(tf.concat(outputs, axis=0), tf.concat(unit_parts[:num_experts], axis=0),
                                     num_units)
    kept = tf.transpose(tf.reshape(keep, [top_k, num_units]))
    return tf.reshape(y, tf.shape(units)), kept


def dispatch_by_route(rows: tf.Tensor, route_index: tf.Tensor, max_routes: int, route_experts: tf.Tensor,
                      route_gates: tf.Tensor, kernel_in: tf.Tensor, bias_in: tf.Tensor, kernel_out: tf.Tensor,
                      bias_out: tf.Tensor, activation: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """Run each distinct route's k experts, fused into one batched feed-forward, once on that route's rows.

    Args:
      rows: [B, S, D] examples (all S tokens of a row follow the row's route).
      route_index: [B] int32 index of each row's route in ``route_experts`` (from ``tf.unique``), < R.
      max_routes: static upper bound on the number R of distinct routes (e.g. flows x use cases).
      route_experts: [R, k] int32 experts chosen by each distinct route.
      route_gates: [R, k] float32 their renormalized gate weights.
      kernel_in, bias_in, kernel_out, bias_out: expert weights (see module doc), in the compute dtype.
      activation: hidden activation.

    Returns:
      [B, S, D] = sum_j gates[r, j] * expert_{experts[r, j]}(rows[b]) with r = route_index[b].
    """
    batch = tf.shape(rows)[0]
    tokens_per_row = tf.shape(rows)[1]
    width = tf.shape(rows)[2]
    flat_rows = tf.reshape(rows, [batch, -1])
    row_parts = tf.dynamic_partition(flat_rows, route_index, max_routes)
    index_parts = tf.dynamic_partition(tf.range(batch), route_index, max_routes)
    gates = tf.cast(route_gates, rows.dtype)
    outputs = []
    for r in range(max_routes):
        # Slicing [r:r+1] yields zero experts when the batch has fewer than r+1 routes: the empty partition
        # then costs no weight copy and no compute.
        chosen = tf.reshape(route_experts[r:r + 1], [-1])  # [m], m = k or 0
        gate = tf.reshape(gates[r:r + 1], [-1])  # [m]
        x = tf.reshape(row_parts[r], [1, -1, width])  # [1, n_r * S, D], broadcast over the m experts
        hidden = activation(tf.matmul(x, tf.gather(kernel_in, chosen))
                            + tf.gather(bias_in, chosen)[:, tf.newaxis, :])  # [m, n_r * S, F]
        out = tf.matmul(hidden, tf.gather(kernel_out, chosen)) + tf.gather(bias_out, chosen)[:, tf.newaxis, :]
        out = tf.einsum("mnd,m->nd", out, gate)
        outputs.append(tf.reshape(out, [-1, tokens_per_row * width]))
    y = tf.dynamic_stitch(index_parts, outputs)
    return tf.reshape(y, tf.shape(rows))
