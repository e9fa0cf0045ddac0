"""`scaling` benchmark: training-step time as task sentences grow and as experts grow, GRec vs MMoE.

Workload: the bottom + towers of the ranker on a random token stack -- tokens [B, S, D] (B = 512, S = 5 as the
model's five tokens, D = 64), random 0/1 labels, and each example assigned uniformly at random to one of the T
task sentences. Defaults are ``ModelConfig``'s (D = 64, expert hidden F = 128, 4 heads, towers [64]).

* Task sentences T = flows x use cases, with flows = the largest divisor of T that is <= 3 and <= sqrt(T)
  (3 = 1 x 3, 6 = 2 x 3, 12 = 3 x 4, 24 = 3 x 8). Ids follow the model: flow ids 1..flows and use-case ids
  1..use_cases, 0 being the out-of-vocabulary slot (vocabularies flows + 1 and use_cases + 1).
* Towers: one per task sentence (the model's ``towers: task_sentence``), T towers -- the model's untrained OOV
  tower slots are left out so the tower count is exactly T. Each row runs only its own tower
  (``towers(x, tower=...)``, as the model), for both models alike.
* GRec: ``SparseMoEBottom`` (token mixer, ``task_sentence``-routed ``SparseMoE`` with top_k = 2, attention pool)
  -> [B, D] shared by the towers. Only k experts run per row, so its cost should barely depend on E.
* MMoE: ``MMoEBottom`` with E experts of the same hidden width F and one softmax gate per tower (T gates), every
  expert computed for every row -> [B, T, D] into the towers.

Timed step: forward + backward in one ``tf.function`` -- loss = mean BCE of each row's own tower logit vs its
label + the bottom's auxiliary losses (GRec's load-balance and z-loss), gradients of every trainable weight
(densified, as an optimizer would apply them). Two sweeps: T in (3, 6, 12, 24) at E = 8 and E in (8, 16, 32, 48)
at T = 12. All distinct (model, T, E) configurations are timed together in interleaved rounds (one step of each
per round, after warm-up) so load from other processes hits them alike; ``ms`` is the median over rounds, and
every ratio (GRec / MMoE at a point, last / first point of a sweep) is the median over rounds of that round's
ratio. FLOPs of the same step come from TF's profiler (:func:`grec_tf.profiling.count_flops`). Targets: GRec's
step at most :data:`STEP_RATIO_TARGET` x MMoE's at each T of the E = 8 sweep (efficiency at equal experts).
"""
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.step_cost import profile_markdown, step_profile
from grec_tf.benchmarks.step_timing import machine_description, precision_policy, time_interleaved
from grec_tf.benchmarks.step_timing import round_ratio as same_round_ratio
from grec_tf.config import ModelConfig
from grec_tf.models.factory import build_bottom
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.profiling import count_flops

MODELS = ("grec", "mmoe")
_MODEL = ModelConfig()  # defaults of the sizes below


def split_task_sentences(t: int) -> Tuple[int, int]:
    """(flows, use_cases) for T task sentences: flows = the largest divisor of T that is <= 3 and <= sqrt(T)."""
    flows = max(f for f in range(1, 4) if t % f == 0 and f * f <= t)
    return flows, t // flows


def _ints(value) -> List[int]:
    return [int(v) for v in str(value).split(",") if v.strip()]


def _build(model: str, t: int, experts: int, sizes: dict, inputs: tuple) -> Tuple[Callable, int]:
    """The training step of one configuration and its trainable parameter count."""
    flows, use_cases = split_task_sentences(t)
    config = ModelConfig(type=model, routing="task_sentence", num_experts=experts, top_k=sizes["top_k"],
                         expert_hidden=sizes["hidden"], d_model=sizes["width"], num_heads=sizes["heads"], jitter=0.0)
    bottom = build_bottom(config, flows + 1, use_cases + 1, t)
    towers = MultiTaskTowers(t, sizes["tower_units"], name="towers")
    tokens, flow_id, use_case_id = inputs[:3]
    towers(bottom(tokens[:2], flow_id[:2], use_case_id[:2])[0])  # build
    weights = bottom.trainable_variables + towers.trainable_variables

    @tf.function(jit_compile=False)
    def step(tokens, flow_id, use_case_id, tower, labels):
        with tf.GradientTape() as tape:
            representation, _ = bottom(tokens, flow_id, use_case_id, training=True)
            logit = towers(representation, tower=tower)  # each row's own tower only, as the model trains
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logit))
            if bottom.losses:
                loss += tf.add_n(bottom.losses)
        grads = tape.gradient(loss, weights)
        return loss, [tf.convert_to_tensor(g) for g in grads]

    return step, int(sum(w.shape.num_elements() for w in weights))


def _inputs(t: int, batch: int, tokens: int, width: int, rng: np.random.Generator) -> tuple:
    flows, use_cases = split_task_sentences(t)
    task = rng.integers(0, t, size=batch)  # task sentence index = (flow - 1) * use_cases + (use_case - 1)
    return (tf.constant(rng.standard_normal((batch, tokens, width)), tf.float32),
            tf.constant(1 + task // use_cases, tf.int32), tf.constant(1 + task % use_cases, tf.int32),
            tf.constant(task, tf.int32), tf.constant(rng.integers(0, 2, size=batch), tf.float32))


def run(out_dir, rounds: int = 15, batch: int = 512, tokens: int = 5, width: int = _MODEL.d_model,
        hidden: int = _MODEL.expert_hidden, heads: int = _MODEL.num_heads,
        tower_units: str = ",".join(map(str, _MODEL.tower_units)), top_k: int = 2,
        task_sentences: str = "3,6,12,24", experts: str = "8,16,32,48", fixed_experts: int = 8,
        fixed_task_sentences: int = 12, policy: str = "float32", seed: int = 0) -> dict:
    """Run the benchmark, write ``scaling.json`` and ``scaling.md`` into ``out_dir``; return the results dict.

    ``task_sentences`` is swept at E = ``fixed_experts``, ``experts`` at T = ``fixed_task_sentences``.
    """
    sizes = {"batch": int(batch), "tokens": int(tokens), "width": int(width), "hidden": int(hidden),
             "heads": int(heads), "tower_units": _ints(tower_units), "top_k": int(top_k)}
    sweeps = {"task_sentences": [(t, int(fixed_experts)) for t in _ints(task_sentences)],
              "experts": [(int(fixed_task_sentences), e) for e in _ints(experts)]}
    with precision_policy(policy):
        results = _run(int(rounds), sizes, sweeps, policy, int(seed))
    write_report(out_dir, "scaling", results, render_markdown(results))
    return results


def _run(rounds: int, sizes: dict, sweeps: Dict[str, List[Tuple[int, int]]], policy: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    points = sorted({p for sweep in sweeps.values() for p in sweep})  # the shared point is built and timed once
    inputs = {t: _inputs(t, sizes["batch"], sizes["tokens"], sizes["width"], rng) for t, _ in points}
    steps, args, flops, params = {}, {}, {}, {}
    for t, e in points:
        for model in MODELS:
            key = f"{model}/T{t}/E{e}"
            steps[key], params[key] = _build(model, t, e, sizes, inputs[t])
            args[key] = inputs[t]
            flops[key] = count_flops(steps[key], *inputs[t])
    started = time.time()
    medians, samples = time_interleaved(steps, args, rounds)
    elapsed = time.time() - started
    t_profiled, e_profiled = sweeps["task_sentences"][0]
    profiles = {model: step_profile(lambda key=f"{model}/T{t_profiled}/E{e_profiled}": steps[key](*args[key])[0].numpy())
                for model in MODELS}

    def round_ratio(a: str, b: str) -> float:
        return same_round_ratio(samples, a, b)

    results: Dict[str, dict] = {}
    for name, sweep in sweeps.items():
        rows = []
        for t, e in sweep:
            flows, use_cases = split_task_sentences(t)
            row = {"task_sentences": t, "flows": flows, "use_cases": use_cases, "experts": e, "towers": t}
            for model in MODELS:
                key = f"{model}/T{t}/E{e}"
                row[model] = {"ms": round(medians[key], 3), "flops": int(flops[key]),
                              "gflops": round(flops[key] / 1e9, 4), "params": params[key],
                              "ms_samples": [round(v, 2) for v in samples[key]]}
            g, m = f"grec/T{t}/E{e}", f"mmoe/T{t}/E{e}"
            row["grec_over_mmoe"] = {"ms": round_ratio(g, m), "flops": round(flops[g] / flops[m], 4),
                                     "params": round(params[g] / params[m], 4)}
            rows.append(row)
        (t0, e0), (t1, e1) = sweep[0], sweep[-1]
        growth = {model: {"ms": round_ratio(f"{model}/T{t1}/E{e1}", f"{model}/T{t0}/E{e0}"),
                          "flops": round(flops[f"{model}/T{t1}/E{e1}"] / flops[f"{model}/T{t0}/E{e0}"], 4),
                          "params": round(params[f"{model}/T{t1}/E{e1}"] / params[f"{model}/T{t0}/E{e0}"], 4)}
                  for model in MODELS}
        fixed = {"experts": e0} if name == "task_sentences" else {"task_sentences": t0}
        results[name] = {"fixed": fixed, "points": rows, "growth_first_to_last": growth}
    return {
        "sweeps": results,
        "targets": scaling_targets(results, sizes["top_k"]),
        "op_profile": {"task_sentences": t_profiled, "experts": e_profiled, "models": profiles},
        "workload": {**sizes, "routing": "task_sentence", "towers": "one per task sentence (T)",
                     "task_sentence_split": "flows = largest divisor of T that is <= 3 and <= sqrt(T)",
                     "step": "forward + backward (BCE of own tower + aux losses, grads of all weights) "
                             "in one tf.function",
                     "timing": f"median of {rounds} interleaved rounds after 3 warm-up steps each",
                     "ratios": "median over rounds of the same-round ratio",
                     "gflops": "per timed step (whole batch), from TF's profiler with Einsum registered",
                     "policy": policy, "timing_seconds": round(elapsed, 1)},
        "machine": machine_description(),
    }


#: GRec's step at most this many times MMoE's at the same E (the task-sentence sweep's E)
STEP_RATIO_TARGET = 1.0


def scaling_targets(sweeps: dict, top_k: int) -> Dict[str, dict]:
    """name -> {"value", "limit", "pass"}: GRec's step vs MMoE's at each point of the task-sentence sweep."""
    fixed = sweeps["task_sentences"]["fixed"]["experts"]
    return {f"GRec (top_k {top_k}) step <= {STEP_RATIO_TARGET} x MMoE step at E={fixed}, T={row['task_sentences']}":
            {"value": row["grec_over_mmoe"]["ms"], "limit": STEP_RATIO_TARGET,
             "pass": row["grec_over_mmoe"]["ms"] <= STEP_RATIO_TARGET}
            for row in sweeps["task_sentences"]["points"]}


def _sweep_table(name: str, sweep: dict) -> List[str]:
    axis = "T (flows x use cases)" if name == "task_sentences" else "E"
    lines = [f"| {axis} | GRec ms | MMoE ms | GRec/MMoE ms | GRec GFLOPs | MMoE GFLOPs | GRec/MMoE FLOPs | "
             "GRec params | MMoE params |", "|---|---|---|---|---|---|---|---|---|"]
    for row in sweep["points"]:
        g, m, r = row["grec"], row["mmoe"], row["grec_over_mmoe"]
        point = (f"{row['task_sentences']} ({row['flows']} x {row['use_cases']})" if name == "task_sentences"
                 else str(row["experts"]))
        lines.append(f"| {point} | {g['ms']:.1f} | {m['ms']:.1f} | {r['ms']:.2f} | {g['gflops']:.3f} | "
                     f"{m['gflops']:.3f} | {r['flops']:.2f} | {g['params']:,} | {m['params']:,} |")
    first, last = sweep["points"][0], sweep["points"][-1]
    key = "task_sentences" if name == "task_sentences" else "experts"
    growth = sweep["growth_first_to_last"]
    lines += ["", f"From {key.replace('_', ' ')} = {first[key]} to {last[key]}: step time GRec x"
                  f"{growth['grec']['ms']:.2f}, MMoE x{growth['mmoe']['ms']:.2f}; FLOPs GRec x"
                  f"{growth['grec']['flops']:.2f}, MMoE x{growth['mmoe']['flops']:.2f}."]
    return lines


def render_markdown(results: dict) -> str:
    """Readable report of a results dict: header, then one table per sweep."""
    w, machine = results["workload"], results["machine"]
    sweeps = results["sweeps"]
    lines = [
        "# `scaling` benchmark",
        "",
        f"Bottom + towers of GRec (task-sentence routed sparse MoE, top_k = {w['top_k']}) and MMoE (all experts, "
        f"one gate per tower) on B = {w['batch']} examples of S = {w['tokens']} tokens, D = {w['width']}, "
        f"expert hidden F = {w['hidden']}, {w['heads']} heads, towers {w['tower_units']}, one tower per task "
        f"sentence; task sentences split as {w['task_sentence_split']}. Step: {w['step']}; {w['timing']}; "
        f"ratios are the {w['ratios']}. FLOPs {w['gflops']}. Policy `{w['policy']}`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (shared), TensorFlow {machine['tensorflow']}, "
        f"load average at start {', '.join(f'{v:.2f}' for v in machine['load_average_at_start'])}.",
    ]
    titles = {"task_sentences": f"Task sentences grow (E = {sweeps['task_sentences']['fixed'].get('experts')})",
              "experts": f"Experts grow (T = {sweeps['experts']['fixed'].get('task_sentences')})"}
    for name, sweep in sweeps.items():
        lines += ["", f"## {titles[name]}", ""] + _sweep_table(name, sweep)
    profile = results.get("op_profile")
    if profile:
        lines += ["", f"## Where the step's time goes (T = {profile['task_sentences']}, E = {profile['experts']})", "",
                  "TF profiler, after the timed rounds: thread-milliseconds per step by op type (two cores run up to "
                  "two at once), each model's largest op types, the rest under `other` (`-`: not among that model's "
                  "largest). Matmuls are `_Mkl*MatMul` / `_MklEinsum`; GRec's sparse dispatch is "
                  "`DynamicPartition`, `GatherV2`, `DynamicStitch` and `UnsortedSegmentSum` and their gradients.",
                  ""] + profile_markdown(profile["models"])
    lines += ["", "## Targets", "", "| target | value | limit | pass |", "|---|---|---|---|"]
    lines += [f"| {name} | {t['value']:.2f} | {t['limit']} | {'yes' if t['pass'] else 'NO'} |"
              for name, t in results.get("targets", {}).items()]
    return "\n".join(lines) + "\n"


__all__ = ["run", "render_markdown", "scaling_targets", "split_task_sentences"]
