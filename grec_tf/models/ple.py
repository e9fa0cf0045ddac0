"""PLE (Tang et al., RecSys '20): Progressive Layered Extraction, a stack of Customized Gate Control levels.

Each level has ``task_experts`` experts per tower and ``shared_experts`` experts shared by all towers. Tower
t's gate mixes its own experts and the shared ones; a shared gate mixes every expert of the level into the
shared input of the next level (the last level has none). The first level reads the flattened tokens,
later levels the previous level's T + 1 outputs (T towers, then the shared one).
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class CustomizedGateControl(tf.keras.layers.Layer):
    """One CGC level: per-tower and shared two-layer expert MLPs (GELU), all computed, and softmax gates.

    Call: ``x`` [B, W] (every tower and the shared path read the same input) or [B, T + 1, W] (tower t
    reads row t, the shared experts and gate row T). Returns ``(outputs, gates)``: outputs [B, T + 1, H]
    (the last row the shared gate's mixture) or [B, T, H] when ``last``; gates [B, T, task_experts +
    shared_experts] (each tower's own experts first, then the shared ones), float32, rows summing to 1.
    """

    def __init__(self, num_towers: int, task_experts: int, shared_experts: int, hidden_dim: int, output_dim: int,
                 last: bool, **kwargs):
        super().__init__(**kwargs)
        self.num_towers, self.task_experts, self.shared_experts = num_towers, task_experts, shared_experts
        self.hidden_dim, self.output_dim, self.last = hidden_dim, output_dim, last

    def build(self, input_shape) -> None:
        width, T, F, H = int(input_shape[-1]), self.num_towers, self.hidden_dim, self.output_dim
        shapes = {"task": (T, self.task_experts), "shared": (self.shared_experts,)}
        for name, lead in shapes.items():
            setattr(self, f"{name}_w_in", self.add_weight(name=f"{name}_w_in", shape=(*lead, width, F),
                                                          initializer="glorot_uniform"))
            setattr(self, f"{name}_b_in", self.add_weight(name=f"{name}_b_in", shape=(*lead, F), initializer="zeros"))
            setattr(self, f"{name}_w_out", self.add_weight(name=f"{name}_w_out", shape=(*lead, F, H),
                                                           initializer="glorot_uniform"))
            setattr(self, f"{name}_b_out", self.add_weight(name=f"{name}_b_out", shape=(*lead, H),
                                                           initializer="zeros"))
        own = self.task_experts + self.shared_experts
        self.task_gates = self.add_weight(name="task_gates", shape=(T, width, own), initializer="glorot_uniform")
        if not self.last:
            every = T * self.task_experts + self.shared_experts
            self.shared_gate = self.add_weight(name="shared_gate", shape=(width, every), initializer="glorot_uniform")
        super().build(input_shape)

    def _expert_mlp(self, x: tf.Tensor, prefix: str, lead: str) -> tf.Tensor:
        """Two-layer GELU experts: ``x`` [B, W] or [B, T, W] -> [B, (T,) E, H]; ``lead`` names the weights'
        leading axes (``te`` per tower, ``e`` shared)."""
        w_in, b_in, w_out, b_out = (tf.cast(getattr(self, f"{prefix}_{name}"), self.compute_dtype)
                                    for name in ("w_in", "b_in", "w_out", "b_out"))
        rows = "b" if len(x.shape) == 2 else "bt"
        out = "bt" + lead[1:] if lead.startswith("t") else "b" + lead
        h = tf.nn.gelu(tf.einsum(f"{rows}w,{lead}wf->{out}f", x, w_in) + b_in)
        return tf.einsum(f"{out}f,{lead}fh->{out}h", h, w_out) + b_out

    def call(self, x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        towers_in, shared_in = (x, x) if len(x.shape) == 2 else (x[:, :-1], x[:, -1])
        task = self._expert_mlp(towers_in, "task", "te")  # [B, T, task_experts, H]
        shared = self._expert_mlp(shared_in, "shared", "e")  # [B, shared_experts, H]
        rows = "b" if len(x.shape) == 2 else "bt"
        gate_logits = tf.einsum(f"{rows}w,twk->btk", towers_in, tf.cast(self.task_gates, self.compute_dtype))
        gates = tf.nn.softmax(tf.cast(gate_logits, tf.float32), axis=-1)  # softmax in float32 under bf16
        g = tf.cast(gates, task.dtype)
        outputs = (tf.einsum("bte,bteh->bth", g[..., :self.task_experts], task)
                   + tf.einsum("bts,bsh->bth", g[..., self.task_experts:], shared))
        if self.last:
            return outputs, gates
        every = tf.concat([tf.reshape(task, [-1, self.num_towers * self.task_experts, self.output_dim]), shared], 1)
        mix_logits = tf.matmul(shared_in, tf.cast(self.shared_gate, self.compute_dtype))
        mix = tf.cast(tf.nn.softmax(tf.cast(mix_logits, tf.float32), axis=-1), every.dtype)
        return tf.concat([outputs, tf.einsum("bk,bkh->bh", mix, every)[:, None]], axis=1), gates

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_towers": self.num_towers, "task_experts": self.task_experts,
                "shared_experts": self.shared_experts, "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim, "last": self.last}


@tf.keras.utils.register_keras_serializable(package="grec_tf")
class PLEBottom(tf.keras.layers.Layer):
    """PLE over the flattened tokens: ``num_levels`` CGC levels, the last without a shared gate.

    Call: tokens [B, S, D] -> ([B, T, H], the last level's gates [B, T, task_experts + shared_experts]).
    """

    def __init__(self, num_levels: int, num_towers: int, task_experts: int, shared_experts: int, hidden_dim: int,
                 output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_levels, self.num_towers = num_levels, num_towers
        self.task_experts, self.shared_experts = task_experts, shared_experts
        self.hidden_dim, self.output_dim = hidden_dim, output_dim
        self.levels = [CustomizedGateControl(num_towers, task_experts, shared_experts, hidden_dim, output_dim,
                                             last=i == num_levels - 1, name=f"level_{i}")
                       for i in range(num_levels)]

    def call(self, tokens: tf.Tensor, flow_id=None, use_case_id=None, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        x = tf.reshape(tokens, [-1, tokens.shape[1] * tokens.shape[2]])  # static width for the first level
        gates = None
        for level in self.levels:
            x, gates = level(x)
        return x, gates

    def get_config(self) -> Dict:
        return {**super().get_config(), "num_levels": self.num_levels, "num_towers": self.num_towers,
                "task_experts": self.task_experts, "shared_experts": self.shared_experts,
                "hidden_dim": self.hidden_dim, "output_dim": self.output_dim}
