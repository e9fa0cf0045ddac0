"""`layers` benchmark: sparse MoE routings vs running all experts densely, and multi-query vs multi-head attention.

Workload (the same for every routing and for the dense baseline, so ratios are fair): N = 2048 rows, where a
row is one D-wide token vector through the MoE, arranged as B = 512 examples x S = 4 tokens; D = 256, F = 1024,
E = 8, k in {2, 4}. The examples belong to 12 task sentences (3 flows x 4 use cases), spread uniformly at random.
Every routing registered in ``grec_tf.layers.ROUTERS`` is measured: token routing routes each of the 2048
tokens; sentence, task and task-sentence routing route each of the 512 examples (its 4 tokens follow it). No
capacity (it must not bind for the comparison), no jitter.

Timed step: forward + backward in one ``tf.function`` -- loss = mean(y^2) + aux losses, gradients w.r.t. the input
and every trainable weight (densified, as an optimizer would apply them). The configurations are timed in
interleaved rounds (one step of each per round) so that load from other processes hits them alike; ``ms`` is the
median over the rounds, and every target ratio is the median over rounds of that round's ratio (sparse step /
dense step of the same round), which is robust to the machine's load changing during the run. FLOPs of the same
step come from TF's profiler (:func:`grec_tf.profiling.count_flops`).

Dense baseline: all E experts on every token combined with the full softmax of the token router
(:func:`grec_tf.layers.dense_moe_reference` with ``mask_to_top_k=False``); the same computation serves every k.
"""
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.step_timing import machine_description, precision_policy, time_interleaved
from grec_tf.layers import (ROUTERS, FeedForwardExperts, MultiQueryAttention, SparseMoE, dense_moe_reference,
                            make_router)
from grec_tf.profiling import count_flops

TOP_KS = (2, 4)
# Time ratio targets by dispatch strategy: routing by task runs each route's experts fused, once per route (1.2);
# routing per token or example sorts assignments by expert, which costs more bookkeeping (1.5).
TARGET_ROUTING_BY_TASK, TARGET_ROUTING_BY_UNIT = 1.2, 1.5
FLOPS_GROWTH_TARGET = 0.05
MQA_TARGET = 0.7


def ratio_target(routing: str) -> float:
    """Target of (routing ms / dense ms) / (k/E) for a routing registered in ROUTERS."""
    return TARGET_ROUTING_BY_TASK if ROUTERS[routing].routes_by_task else TARGET_ROUTING_BY_UNIT


def _moe_step(layer: SparseMoE, dense: bool) -> Callable:
    @tf.function(jit_compile=False)
    def step(x, flow_id, use_case_id):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if dense:
                y = dense_moe_reference(layer, x, mask_to_top_k=False)
                aux = 0.0
            else:
                y = layer(x, flow_id, use_case_id, training=True)
                aux = tf.add_n(layer.losses) if layer.losses else 0.0
            loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32))) + aux
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        return loss, [tf.convert_to_tensor(g) for g in grads]
    return step


def _attention_step(layer: tf.keras.layers.Layer, keras_mha: bool) -> Callable:
    @tf.function(jit_compile=False)
    def step(x, key_mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if keras_mha:
                y = layer(x, x, attention_mask=key_mask[:, tf.newaxis, :], training=True)
            else:
                y = layer(x, key_mask=key_mask, training=True)
            loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32)))
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        return loss, [tf.convert_to_tensor(g) for g in grads]
    return step


def _make_moe(routing: str, top_k: int, num_experts: int, hidden: int, flows: int, use_cases: int,
              x: tf.Tensor, flow_id: tf.Tensor, use_case_id: tf.Tensor) -> SparseMoE:
    router = make_router(routing, num_experts=num_experts, top_k=top_k, num_flows=flows, num_use_cases=use_cases,
                         jitter=0.0)
    layer = SparseMoE(FeedForwardExperts(num_experts, hidden), router, capacity_factor=0.0)
    layer(x[:2], flow_id[:2], use_case_id[:2])  # build
    return layer


def moe_steps_and_flops(moe_args: Tuple[tf.Tensor, tf.Tensor, tf.Tensor], hidden: int, experts: int, flows: int,
                        use_cases: int) -> Tuple[Dict[str, Callable], Dict[str, int], Dict[str, int]]:
    """The MoE steps to time and their FLOPs on ``moe_args`` = (x [B, S, D], flow_id [B], use_case_id [B]).

    Returns:
      steps and flops keyed "ROUTING/kK" for every routing in ROUTERS plus "dense" (the token router's full
      softmax over all experts), and the k = 4 FLOPs at 4 x experts keyed by routing.
    """
    def make_layer(routing, k, num_experts=experts):
        return _make_moe("token" if routing == "dense" else routing, k, num_experts, hidden, flows, use_cases,
                         *moe_args)

    steps, flops = {}, {}
    for k in TOP_KS:
        for routing in list(ROUTERS) + ["dense"]:
            name = f"{routing}/k{k}"
            steps[name] = _moe_step(make_layer(routing, k), dense=routing == "dense")
            flops[name] = count_flops(steps[name], *moe_args)
    # Sparse scaling: FLOPs at E = 4 * experts, k = 4.
    flops_wide = {routing: count_flops(_moe_step(make_layer(routing, 4, 4 * experts), dense=False), *moe_args)
                  for routing in ROUTERS}
    return steps, flops, flops_wide


def run(out_dir, rounds: int = 25, policy: str = "float32", batch: int = 512, tokens: int = 4,
        width: int = 256, hidden: int = 1024, experts: int = 8, flows: int = 3, use_cases: int = 4,
        attention_batch: int = 2048, attention_length: int = 16, seed: int = 0) -> dict:
    """Run the benchmark, write ``layers.json`` and ``layers.md`` into ``out_dir``; return the results dict."""
    rounds, batch, tokens, width, hidden, experts = map(int, (rounds, batch, tokens, width, hidden, experts))
    flows, use_cases, attention_batch, attention_length = map(int, (flows, use_cases, attention_batch,
                                                                    attention_length))
    with precision_policy(policy):
        results = _run(rounds, policy, batch, tokens, width, hidden, experts, flows, use_cases,
                       attention_batch, attention_length, int(seed))
    write_report(out_dir, "layers", results, render_markdown(results))
    return results


ATTENTION_HEADS, ATTENTION_HEAD_DIM = 8, 32


def _attention_steps(rng: np.random.Generator, batch: int, length: int):
    """Forward+backward steps of multi-query vs Keras multi-head attention, their inputs and FLOPs."""
    att_x = tf.constant(rng.standard_normal((batch, length, ATTENTION_HEADS * ATTENTION_HEAD_DIM)), tf.float32)
    key_mask = tf.sequence_mask(rng.integers(1, length + 1, size=batch), length)
    mqa = MultiQueryAttention(ATTENTION_HEADS, ATTENTION_HEAD_DIM)
    mha = tf.keras.layers.MultiHeadAttention(num_heads=ATTENTION_HEADS, key_dim=ATTENTION_HEAD_DIM)
    mqa(att_x[:2], key_mask=key_mask[:2])
    mha(att_x[:2], att_x[:2], attention_mask=key_mask[:2, tf.newaxis, :])
    steps = {"attention/mqa": _attention_step(mqa, keras_mha=False),
             "attention/mha": _attention_step(mha, keras_mha=True)}
    flops = {name: count_flops(step, att_x, key_mask) for name, step in steps.items()}
    return steps, {name: (att_x, key_mask) for name in steps}, flops


def _moe_table(medians, samples, flops, rows: int) -> Dict[str, Dict[str, dict]]:
    """routing -> k -> median ms, GFLOPs, MFLOPs per row and the per-round samples."""
    return {routing: {str(k): {"ms": round(medians[f"{routing}/k{k}"], 3),
                               "gflops": round(flops[f"{routing}/k{k}"] / 1e9, 4),
                               "mflops_per_row": round(flops[f"{routing}/k{k}"] / rows / 1e6, 4),
                               "ms_samples": [round(v, 2) for v in samples[f"{routing}/k{k}"]]}
                      for k in TOP_KS}
            for routing in list(ROUTERS) + ["dense"]}


def _moe_targets(moe, round_ratio, growth, experts: int) -> List[dict]:  # entries keyed by "what" below
    """Time vs FLOP-proportional dense time per routing and k, and FLOPs growth with 4x the experts."""
    targets = []
    for routing in ROUTERS:
        limit = ratio_target(routing)
        for k in TOP_KS:
            ratio = round_ratio(f"{routing}/k{k}", f"dense/k{k}") / (k / experts)
            targets.append({"what": f"moe {routing} k={k} ms <= {limit} x (k/E) x dense ms",
                            "value": round(ratio, 3), "limit": limit,
                            "ratio_to_flop_proportional": round(ratio, 3),
                            "ratio_of_medians": round(moe[routing][str(k)]["ms"]
                                                      / (k / experts * moe["dense"][str(k)]["ms"]), 3),
                            "pass": ratio <= limit})
    for routing in ROUTERS:
        targets.append({"what": f"moe {routing} k=4 FLOPs growth E={experts} -> E={4 * experts} < "
                                f"{FLOPS_GROWTH_TARGET:.0%}",
                        "value": round(growth[routing], 5), "limit": FLOPS_GROWTH_TARGET,
                        "pass": growth[routing] < FLOPS_GROWTH_TARGET})
    return targets


def _attention_report(medians, samples, flops, round_ratio) -> Tuple[dict, dict]:
    """MQA vs MHA timings and FLOPs, and the MQA <= MQA_TARGET x MHA target."""
    attention = {"mqa_ms": round(medians["attention/mqa"], 3), "mha_ms": round(medians["attention/mha"], 3),
                 "mqa_gflops": round(flops["attention/mqa"] / 1e9, 4),
                 "mha_gflops": round(flops["attention/mha"] / 1e9, 4),
                 "mqa_ms_samples": [round(v, 2) for v in samples["attention/mqa"]],
                 "mha_ms_samples": [round(v, 2) for v in samples["attention/mha"]]}
    ratio = round_ratio("attention/mqa", "attention/mha")
    attention["mqa_over_mha"] = round(ratio, 3)
    target = {"what": f"MQA ms <= {MQA_TARGET} x MHA ms", "value": round(ratio, 3), "limit": MQA_TARGET,
              "ratio": round(ratio, 3), "ratio_of_medians": round(attention["mqa_ms"] / attention["mha_ms"], 3),
              "pass": ratio <= MQA_TARGET}
    return attention, target


def _run(rounds, policy, batch, tokens, width, hidden, experts, flows, use_cases, attention_batch,
         attention_length, seed) -> dict:
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    x = tf.constant(rng.standard_normal((batch, tokens, width)), tf.float32)
    task = rng.integers(0, flows * use_cases, size=batch)
    moe_args = (x, tf.constant(task // use_cases, tf.int32), tf.constant(task % use_cases, tf.int32))
    steps, flops, flops_wide = moe_steps_and_flops(moe_args, hidden, experts, flows, use_cases)
    args = {name: moe_args for name in steps}
    attention_steps, attention_args, attention_flops = _attention_steps(rng, attention_batch, attention_length)
    steps.update(attention_steps)
    args.update(attention_args)
    flops.update(attention_flops)

    started = time.time()
    medians, samples = time_interleaved(steps, args, rounds)
    elapsed = time.time() - started

    def round_ratio(name, reference):  # median over rounds of the same-round ratio
        return statistics.median(a / b for a, b in zip(samples[name], samples[reference]))

    rows = batch * tokens
    moe = _moe_table(medians, samples, flops, rows)
    growth = {r: (flops_wide[r] - flops[f"{r}/k4"]) / flops[f"{r}/k4"] for r in ROUTERS}
    attention, attention_target = _attention_report(medians, samples, flops, round_ratio)
    # name -> {"value", "limit", "pass", ...}, as every benchmark's targets
    targets = {t.pop("what"): t for t in _moe_targets(moe, round_ratio, growth, experts) + [attention_target]}
    heads, head_dim = ATTENTION_HEADS, ATTENTION_HEAD_DIM
    return {
        "moe": moe,
        "attention": attention,
        "flops_e8_vs_e32": {r: {"e8_gflops": round(flops[f"{r}/k4"] / 1e9, 4),
                                "e32_gflops": round(flops_wide[r] / 1e9, 4),
                                "growth": round(growth[r], 5)} for r in ROUTERS},
        "targets": targets,
        "all_targets_pass": all(t["pass"] for t in targets.values()),
        "workload": {"rows": rows, "row": "one D-wide token vector", "examples": batch,
                     "tokens_per_example": tokens, "D": width, "F": hidden, "E": experts, "k": list(TOP_KS),
                     "task_sentences": flows * use_cases,
                     "distinct_task_sentences_in_batch": int(len(np.unique(task))),
                     "attention": {"batch": attention_batch, "length": attention_length, "heads": heads,
                                   "key_dim": head_dim},
                     "step": "forward + backward (grads w.r.t. input and all weights) in one tf.function",
                     "timing": f"median of {rounds} interleaved rounds after 3 warm-up steps each",
                     "gflops": "per timed step (whole batch), from TF's profiler with Einsum registered",
                     "policy": policy, "timing_seconds": round(elapsed, 1)},
        "machine": machine_description(),
    }


def render_markdown(results: dict) -> str:
    """Readable report of a results dict (ratios vs targets)."""
    w = results["workload"]
    e = w["E"]
    lines = [
        "# `layers` benchmark",
        "",
        f"Workload: N = {w['rows']} rows, a row being {w['row']} ({w['examples']} examples x "
        f"{w['tokens_per_example']} tokens), D = {w['D']}, F = {w['F']}, E = {e}; the same rows for every "
        f"routing and for the dense baseline. {w['distinct_task_sentences_in_batch']} distinct task sentences "
        f"in the batch. Step: {w['step']}; {w['timing']}. Policy `{w['policy']}`. FLOPs {w['gflops']}.",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores (shared), "
        f"TensorFlow {results['machine']['tensorflow']}.",
        "",
        "## Sparse MoE vs all experts (dense)",
        "",
        "Ratio = median over rounds of (routing ms / dense ms in the same round) / (k/E): 1.0 is FLOP-proportional.",
        "",
        "| routing | k | ms (median) | dense ms (median) | ratio | target | GFLOPs/step | dense GFLOPs | pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for what, target in results["targets"].items():
        if "ratio_to_flop_proportional" not in target:
            continue
        routing, k = what.split()[1], what.split()[2].split("=")[1]
        row = results["moe"][routing][k]
        dense = results["moe"]["dense"][k]
        lines.append(f"| {routing} | {k} | {row['ms']:.1f} | {dense['ms']:.1f} | "
                     f"{target['ratio_to_flop_proportional']:.2f} | <= {ratio_target(routing)} | {row['gflops']:.2f} | "
                     f"{dense['gflops']:.2f} | {'yes' if target['pass'] else 'NO'} |")
    lines += ["", f"## FLOPs growth from E = {e} to E = {4 * e} at k = 4 (target < {FLOPS_GROWTH_TARGET:.0%})", "",
              "| routing | GFLOPs E=8 | GFLOPs E=32 | growth | pass |", "|---|---|---|---|---|"]
    for routing, row in results["flops_e8_vs_e32"].items():
        lines.append(f"| {routing} | {row['e8_gflops']:.3f} | {row['e32_gflops']:.3f} | {row['growth']:.2%} | "
                     f"{'yes' if row['growth'] < FLOPS_GROWTH_TARGET else 'NO'} |")
    att = results["attention"]
    aw = w["attention"]
    ratio = att.get("mqa_over_mha", att["mqa_ms"] / att["mha_ms"])
    lines += ["", f"## Multi-query vs tf.keras MultiHeadAttention (batch {aw['batch']}, length {aw['length']}, "
                  f"{aw['heads']} heads of {aw['key_dim']}, key-padding mask)", "",
              "| layer | ms | GFLOPs/step |", "|---|---|---|",
              f"| MultiQueryAttention | {att['mqa_ms']:.1f} | {att['mqa_gflops']:.2f} |",
              f"| MultiHeadAttention | {att['mha_ms']:.1f} | {att['mha_gflops']:.2f} |",
              "", f"MQA / MHA = {ratio:.2f} (median of same-round ratios; target <= {MQA_TARGET}): "
                  f"{'pass' if ratio <= MQA_TARGET else 'FAIL'}",
              "", f"All targets pass: **{'yes' if results['all_targets_pass'] else 'NO'}**", ""]
    return "\n".join(lines)


__all__ = ["run", "render_markdown", "moe_steps_and_flops"]
