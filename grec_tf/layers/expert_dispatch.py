"""Sparse expert dispatch: run only the selected experts, each once, on the rows that chose it.

Expert weights (E experts, D width, F hidden): ``kernel_in`` [E, D, F], ``bias_in`` [E, F],
``kernel_out`` [E, F, D], ``bias_out`` [E, D]; expert e computes ``act(x W_in[e] + b_in[e]) W_out[e] + b_out[e]``.

One mechanism, free of Python loops over rows and of control-flow ops (so TF's profiler sees every matmul of a
traced function): :func:`dispatch_by_expert`. The (unit, slot) assignments are partitioned by expert id
(``tf.dynamic_partition``, order-preserving), each expert gathers its units, runs once on them as two plain
matmuls, and the gate-weighted outputs are summed back per unit with ``tf.math.unsorted_segment_sum``. The
weights are unstacked once (``tf.unstack``: its gradient is one ``stack``, where per-expert slices would each
scatter into a zero [E, ...] tensor). Expert capacity drops the assignments past ``capacity`` in slot-major,
then unit order (all first choices are served before any second choice).

Task routings (:func:`dispatch_by_route`, rows share a route) reuse it: each row takes its route's experts and
gates (a gather of [R, k] by the row's route index), then the rows are dispatched by expert. E partitions, each
one plain matmul per layer on every row that chose the expert, cost fewer and larger ops than one partition per
route (R = flows x use cases, each gathering its k experts' weights), for the same FLOPs; measured faster
(forward + backward) on CPU.
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
    keep, partition = _capacity_partition(assign_expert, num_experts, capacity)
    unit_parts = tf.dynamic_partition(assign_unit, partition, num_experts + 1)
    gate_parts = tf.dynamic_partition(assign_gate, partition, num_experts + 1)
    w_in, b_in, w_out, b_out = (tf.unstack(weight, num=num_experts) for weight in
                                (kernel_in, bias_in, kernel_out, bias_out))
    outputs = []
    for e in range(num_experts):
        rows = tf.reshape(tf.gather(flat_units, unit_parts[e]), [-1, width])  # [n_e * S, D]
        hidden = activation(tf.matmul(rows, w_in[e]) + b_in[e])
        out = tf.matmul(hidden, w_out[e]) + b_out[e]
        outputs.append(tf.reshape(out, [-1, tokens_per_unit * width]) * gate_parts[e][:, tf.newaxis])
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
                      activation: Callable[[tf.Tensor], tf.Tensor], num_experts: int) -> tf.Tensor:
    """Rows that share routes: each row takes its route's k experts and gates, then is dispatched by expert.

    Args:
      rows: [B, S, D] examples (all S tokens of a row follow the row's route).
      route_index: [B] int32 index of each row's route in ``route_experts`` (from ``tf.unique``), < R.
      route_experts: [R, k] int32 experts chosen by each distinct route.
      route_gates: [R, k] float32 their renormalized gate weights.
      kernel_in, bias_in, kernel_out, bias_out: expert weights (see module doc), in the compute dtype.
      activation: hidden activation.
      num_experts: E (static).

    Returns:
      [B, S, D] = sum_j gates[r, j] * expert_{experts[r, j]}(rows[b]) with r = route_index[b].
    """
    y, _ = dispatch_by_expert(rows, tf.gather(route_experts, route_index), tf.gather(route_gates, route_index),
                              kernel_in, bias_in, kernel_out, bias_out, activation, num_experts)
    return y
