"""GRec custom Keras layers, each registered under the "grec_tf" package."""
from grec_tf.layers.dense_moe_reference import dense_moe_reference
from grec_tf.layers.feed_forward_experts import FeedForwardExperts
from grec_tf.layers.multi_query_attention import MultiQueryAttention, multi_query_attend
from grec_tf.layers.parallel_transformer_block import ParallelTransformerBlock
from grec_tf.layers.periodic_embedding import PeriodicEmbedding
from grec_tf.layers.piecewise_linear_embedding import PiecewiseLinearEmbedding
from grec_tf.layers.routers import (ROUTERS, Router, SentenceRouter, TaskIdRouter, TaskRouter, TaskSentenceRouter,
                                    TokenRouter, make_router, register_router)
from grec_tf.layers.sparse_moe import SparseMoE
from grec_tf.layers.top_k_gate import load_balance_loss, router_z_loss, top_k_gate

__all__ = [
    "MultiQueryAttention", "ParallelTransformerBlock", "PeriodicEmbedding", "PiecewiseLinearEmbedding", "SparseMoE",
    "FeedForwardExperts",
    "Router", "TokenRouter", "SentenceRouter", "TaskIdRouter", "TaskRouter", "TaskSentenceRouter", "ROUTERS",
    "make_router", "register_router", "dense_moe_reference", "multi_query_attend", "top_k_gate",
    "load_balance_loss", "router_z_loss",
]
