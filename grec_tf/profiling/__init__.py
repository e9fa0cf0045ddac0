"""Profiling helpers from TensorFlow's profiler: FLOPs of traced functions, op time of steps by op type."""
from grec_tf.profiling.flops import count_flops, count_flops_by_scope, register_flops_statistics
from grec_tf.profiling.op_time import matmul_share, op_milliseconds_by_type

__all__ = ["count_flops", "count_flops_by_scope", "matmul_share", "op_milliseconds_by_type",
           "register_flops_statistics"]
