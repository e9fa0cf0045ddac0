"""Profiling helpers: FLOPs of traced functions from TensorFlow's profiler."""
from grec_tf.profiling.flops import count_flops, count_flops_by_scope, register_flops_statistics

__all__ = ["count_flops", "count_flops_by_scope", "register_flops_statistics"]
