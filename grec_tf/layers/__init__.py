"""GRec custom Keras layers (SPEC §3 items 3-5), each registered under the "grec_tf" package."""
from grec_tf.layers.dense_moe_reference import dense_moe_reference
from grec_tf.layers.multi_query_attention import MultiQueryAttention, multi_query_attend
from grec_tf.layers.parallel_transformer_block import ParallelTransformerBlock
from grec_tf.layers.sparse_moe import ROUTINGS, SparseMoE
from grec_tf.layers.top_k_gate import load_balance_loss, router_z_loss, top_k_gate

__all__ = [
    "MultiQueryAttention", "ParallelTransformerBlock", "SparseMoE", "ROUTINGS", "dense_moe_reference",
    "multi_query_attend", "top_k_gate", "load_balance_loss", "router_z_loss",
]
