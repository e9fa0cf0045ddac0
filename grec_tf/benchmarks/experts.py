"""``experts`` benchmark: the paper's Fig. 4 - GRec's AUC vs top-k and vs the total experts E, and its cost vs E.

    python -m pipelines.benchmark experts --out benchmarks/results [--option top_k=1,2,4] \
        [--option experts=4,8,16,32] [--option seeds=1] [--option quick=1] [--option rounds=15] \
        [--option config=configs/aliexpress.yaml] [--option overrides=data.path=data/aliexpress/AliExpress_NL]

Every (top-k, E) point with k <= E (a point with k > E is skipped with a note) is GRec with task-sentence routing,
trained once per seed (``train.seed``; the data split is fixed) on the same splits with the same budget, like
:mod:`grec_tf.benchmarks.quality`. Per point: test AUC, mean over task sentences and per use case (mean, std and
standard error over seeds); forward FLOPs per example of the bottom and towers (TF's profiler,
:func:`grec_tf.benchmarks.forward_flops.model_flops`); and the training step's time (``model.train_step`` on one
training batch, all points timed together in interleaved rounds, :func:`grec_tf.benchmarks.step_timing.
time_interleaved`, so load from other processes hits them alike; growth ratios are medians of same-round ratios).

Targets state the paper's claims: AUC rises with top-k (largest k vs smallest, at each E) and with E (largest E vs
smallest, at each k) by more than two standard errors of the difference (with one seed there is no standard error:
the sign decides and the report says so); FLOPs and step time grow at most :data:`GROWTH_LIMIT` x from the smallest
E to the largest (at each k).

Writes ``experts_{dataset}.json``, ``.md`` and ``.png`` (AUC vs E, one line per top-k; FLOPs and step time vs E).
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.forward_flops import FLOPS_BATCH, model_flops
from grec_tf.benchmarks.line_plots import save_log2_panels
from grec_tf.benchmarks.quality import base_config_of, variant_config
from grec_tf.benchmarks.seed_comparison import compare, format_statistics, seed_statistics
from grec_tf.benchmarks.step_timing import machine_description, round_ratio, time_interleaved
from grec_tf.config import ExperimentConfig
from grec_tf.data.sources import load_splits
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment

#: the paper's Fig. 4 grid
TOP_KS, EXPERTS = "1,2,4", "4,8,16,32"
#: ``quick``: three points (k = 2 with E = 1 is skipped) at the quality benchmark's quick sizes, for the tests
QUICK_TOP_KS, QUICK_EXPERTS, QUICK_ROUNDS = "1,2", "1,2", 3
#: FLOPs and step time may grow at most this many times from the smallest E to the largest ("barely change")
GROWTH_LIMIT = 1.25
ROUTING = "model.routing=task_sentence"


def point_key(top_k: int, experts: int) -> str:
    """The report's key of one grid point, e.g. ``k2_E16``."""
    return f"k{top_k}_E{experts}"


def grid(top_ks: Sequence[int], experts: Sequence[int]) -> Tuple[List[Tuple[int, int]], List[str]]:
    """``([(k, E) with k <= E], [a note per skipped point])``, k-major."""
    points, notes = [], []
    for k in top_ks:
        for e in experts:
            if k > e:
                notes.append(f"top-k {k} with E = {e} skipped: top-k cannot exceed the experts")
            else:
                points.append((k, e))
    return points, notes


def point_runs(top_k: int, experts: int, base: Experiment, seeds: Sequence[int], work: str,
               verbose: int) -> Tuple[List[Dict], tf.keras.Model, Dict[str, tf.Tensor]]:
    """One (k, E) point trained per seed: ``(runs, the first seed's model, one training batch of it)``; each run
    has the test metrics, params and (first seed) FLOPs per example."""
    name = point_key(top_k, experts)
    overrides = ["model.type=grec", ROUTING, f"model.num_experts={experts}", f"model.top_k={top_k}"]
    runs, kept = [], None
    for seed in seeds:
        experiment = Experiment(variant_config(base.config, overrides, seed, name), splits=base.splits,
                                statistics=base.statistics)
        trained = experiment.train(os.path.join(work, f"{name}-{seed}"), verbose=verbose)
        run = {"seed": seed, "test": trained.metrics["test"], "params": trained.metrics["model"]["params"]}
        if kept is None:  # cost is the same for every seed: priced and timed on the first
            batch = next(iter(experiment.dataset("test", batch_size=FLOPS_BATCH)))
            run["flops_per_example"] = model_flops(trained.model, {k: v for k, v in batch.items() if k != "label"})
            kept = (trained.model, next(iter(experiment.dataset("train", shuffle=True))))
        runs.append(run)
    return runs, kept[0], kept[1]


def step_times(models: Dict[str, Tuple[tf.keras.Model, Dict[str, tf.Tensor]]],
               rounds: int) -> Tuple[Dict[str, float], Dict[str, List[float]]]:
    """Median ms of one training step (``model.train_step`` on its batch: forward, backward, Adam update) of each
    model, all timed in interleaved rounds; also every sample."""
    steps, args = {}, {}
    for key, (model, batch) in models.items():
        step = tf.function(model.train_step)
        steps[key] = lambda inputs, step=step: (step(inputs)["total_loss"],)
        args[key] = (batch,)
    return time_interleaved(steps, args, rounds)


def point_summary(runs: List[Dict], sentences: Sequence[str], use_cases: Sequence[str]) -> Dict:
    """One point over its seeds: :func:`seed_statistics` of the mean AUC over task sentences and of each use
    case's AUC; FLOPs and params of the first seed."""
    def auc(run: Dict, key: str) -> Optional[float]:
        return run["test"].get(key, {}).get("auc")

    def mean_auc(run: Dict) -> float:  # over the task sentences whose AUC is defined (a test split has positives)
        defined = [a for a in (auc(run, s) for s in sentences) if a is not None and not np.isnan(a)]
        return float(np.mean(defined)) if defined else float("nan")

    return {"mean_auc": seed_statistics([mean_auc(r) for r in runs]),
            "use_cases": {u: seed_statistics([auc(r, f"use_case/{u}") for r in runs]) for u in use_cases},
            "flops_per_example": runs[0]["flops_per_example"], "params": runs[0]["params"]}


def _claim(a: Dict, b: Dict) -> Dict:
    """A "``a`` above ``b``" target from two :func:`seed_statistics`: value = difference of means, limit = two
    standard errors of it (0 with one seed, where the sign decides)."""
    result = compare(a, b)
    decided = not np.isnan(result["limit"])
    limit = result["limit"] if decided else 0.0
    return {"value": round(result["difference"], 5), "limit": round(limit, 5),
            "pass": bool(result["difference"] > limit),
            "detail": result["verdict"] if decided else "one seed: no standard error, the sign decides"}


def targets(summary: Dict[str, Dict], top_ks: Sequence[int], experts: Sequence[int],
            steps: Dict[str, float]) -> Dict[str, Dict]:
    """The paper's Fig. 4 claims as ``name -> {"value", "limit", "pass", "detail"}`` computed from the points:
    AUC rises with top-k (at each E), with E (at each k); FLOPs and step time barely change with E (at each k)."""
    out: Dict[str, Dict] = {}
    for e in experts:
        ks = [k for k in top_ks if point_key(k, e) in summary]
        if len(ks) > 1:
            out[f"AUC rises with top-k at E={e}: AUC(k={ks[-1]}) - AUC(k={ks[0]}) > 2 SE"] = _claim(
                summary[point_key(ks[-1], e)]["mean_auc"], summary[point_key(ks[0], e)]["mean_auc"])
    for k in top_ks:
        es = [e for e in experts if point_key(k, e) in summary]
        if len(es) < 2:
            continue
        first, last = point_key(k, es[0]), point_key(k, es[-1])
        out[f"AUC rises with E at top-k={k}: AUC(E={es[-1]}) - AUC(E={es[0]}) > 2 SE"] = _claim(
            summary[last]["mean_auc"], summary[first]["mean_auc"])
        flops = summary[last]["flops_per_example"]["total"] / summary[first]["flops_per_example"]["total"]
        out[f"FLOPs per example grow <= {GROWTH_LIMIT}x from E={es[0]} to E={es[-1]} at top-k={k}"] = {
            "value": round(flops, 4), "limit": GROWTH_LIMIT, "pass": bool(flops <= GROWTH_LIMIT),
            "detail": "bottom + towers, TF profiler"}
        step = steps.get(f"{last}/{first}")
        if step is not None:
            out[f"training step time grows <= {GROWTH_LIMIT}x from E={es[0]} to E={es[-1]} at top-k={k}"] = {
                "value": step, "limit": GROWTH_LIMIT, "pass": bool(step <= GROWTH_LIMIT),
                "detail": "median over interleaved rounds of the same-round ratio"}
    return out


def _ints(text: Optional[str], default: str) -> List[int]:
    values = sorted({int(v) for v in str(default if text is None else text).split(",") if v.strip()})
    if not values or values[0] < 1:
        raise ConfigError(f"experts/top_k: expected positive integers separated by commas, got {text!r}")
    return values


def train_grid(base: Experiment, points: Sequence[Tuple[int, int]], seeds: Sequence[int], rounds: int,
               verbose: int) -> Tuple[Dict[str, List[Dict]], Dict[str, float], Dict[str, List[float]]]:
    """Every point trained per seed in a scratch folder, then every point's step timed together: ``(runs by
    point, median step ms by point, step ms samples by point)``."""
    runs, kept = {}, {}
    with tempfile.TemporaryDirectory(prefix="grec-experts-") as work:
        for k, e in points:
            print(f"== experts: top-k {k}, E {e}, seeds {list(seeds)}", flush=True)
            runs[point_key(k, e)], model, batch = point_runs(k, e, base, seeds, work, verbose)
            kept[point_key(k, e)] = (model, batch)
    medians, samples = step_times(kept, rounds)
    tf.keras.backend.clear_session()
    return runs, medians, samples


def run(out_dir: str, config: str = "configs/telecom.yaml", overrides: str = "", top_k: Optional[str] = None,
        experts: Optional[str] = None, seeds: str = "1", quick: str = "0", rounds: Optional[str] = None,
        verbose: str = "0") -> Dict:
    """Trains every (top-k, E) point once per seed on the same splits and writes ``experts_{dataset}.json``,
    ``.md`` and ``.png``; returns the report. ``quick=1``: the quality benchmark's quick sizes and three points
    (an explicit ``top_k``/``experts`` still wins)."""
    is_quick = str(quick).strip().lower() in ("1", "true", "yes", "on")
    top_ks = _ints(top_k, QUICK_TOP_KS if is_quick else TOP_KS)
    expert_counts = _ints(experts, QUICK_EXPERTS if is_quick else EXPERTS)
    seed_list = list(range(int(seeds)))
    if not seed_list:
        raise ConfigError(f"seeds: expected >= 1, got {seeds!r}")
    points, notes = grid(top_ks, expert_counts)
    base_config = base_config_of(config, overrides, is_quick)
    machine = machine_description()  # the load average before training
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grec-experts-data-") as data:
        base = Experiment(base_config, splits=load_splits(base_config, default_dir=data))
        runs, medians, samples = train_grid(base, points, seed_list,
                                            int(rounds or (QUICK_ROUNDS if is_quick else 15)), int(verbose))
    report = assemble(base_config, runs, medians, samples, top_ks, expert_counts, notes)
    report.update({"options": {"config": config, "overrides": overrides, "top_k": top_ks, "experts": expert_counts,
                               "seeds": seed_list, "quick": is_quick},
                   "seconds": round(time.perf_counter() - started, 1), "machine": machine})
    name = f"experts_{base_config.data.source}"
    write_report(out_dir, name, report, markdown(report, name))
    plot(report, os.path.join(out_dir, f"{name}.png"))
    return report


def assemble(config: ExperimentConfig, runs: Dict[str, List[Dict]], medians: Dict[str, float],
             samples: Dict[str, List[float]], top_ks: List[int], experts: List[int], notes: List[str]) -> Dict:
    """The report's measured part: per point its summary and step time, step growth ratios, and the targets."""
    d = config.data
    sentences = [f"{f}/{u}" for f in d.flows for u in d.use_cases]
    summary = {key: {**point_summary(r, sentences, d.use_cases), "step_ms": round(medians[key], 3)}
               for key, r in runs.items()}
    growth = {}
    for k in top_ks:
        keys = [point_key(k, e) for e in experts if point_key(k, e) in summary]
        growth.update({f"{key}/{keys[0]}": round_ratio(samples, key, keys[0]) for key in keys[1:]})
    return {"dataset": d.source, "config": config.to_dict(), "notes": notes, "sentences": sentences,
            "points": {key: {"top_k": int(key[1:key.index("_")]), "experts": int(key.split("_E")[1])}
                       for key in summary},
            "summary": summary, "step_growth": growth, "step_ms_samples": samples,
            "targets": targets(summary, top_ks, experts, growth), "runs": runs}


PAPER_CLAIM = ("The paper's Fig. 4 (AliExpress NL/ES/FR/US): AUC rises with top-k and with the total number of "
               "experts E, while FLOPs barely change as experts are added (only k experts run per example).")
#: the full size's wall time, measured
FULL_RUN_ESTIMATE = ("42 min on telecom on this 2-core machine (2,537 s measured for the 12 points with one seed; each "
                     "further seed adds about as much); the full AliExpress release (millions of impressions per "
                     "country, batch 2048, 3 epochs) extrapolates to about a day per country on 2 cores: run it on a "
                     "larger machine")
COMMANDS = ("python -m pipelines.benchmark experts --out benchmarks/results",
            "python -m pipelines.benchmark experts --out benchmarks/results --option config=configs/aliexpress.yaml "
            "--option overrides='data.path=data/aliexpress/AliExpress_NL;data.flow=NL;data.flows=[NL]'")


def _point_row(report: Dict, key: str) -> str:
    s, p = report["summary"][key], report["points"][key]
    use_cases = " | ".join(format_statistics(s["use_cases"][u]) for u in report["config"]["data"]["use_cases"])
    flops = s["flops_per_example"]
    return (f"| {p['experts']} | {p['top_k']} | {format_statistics(s['mean_auc'])} | {use_cases} | "
            f"{flops['total']:,.0f} | {flops['routing']:,.0f} | {s['step_ms']:.1f} | {s['params']:,} |")


def markdown(report: Dict, name: str) -> str:
    """The grid's table, the plot, the paper's claim and which parts hold here, and the commands."""
    c, use_cases = report["config"], report["config"]["data"]["use_cases"]
    m = report["machine"]
    lines = [f"# `experts` benchmark: the paper's Fig. 4 on {report['dataset']}"
             + (" (quick size)" if report["options"]["quick"] else ""), "",
             f"GRec, task-sentence routing, {c['data']['source']} data ({len(report['sentences'])} task sentences: "
             f"{', '.join(report['sentences'])}); seeds {report['options']['seeds']}; budget shared by every point: "
             f"{c['train']['epochs']} epochs max, batch {c['data']['batch_size']}, d_model {c['model']['d_model']}, "
             f"expert hidden {c['model']['expert_hidden']}. AUC on the test split, mean ± std over seeds. FLOPs per "
             "example: forward of the bottom and towers (TF profiler). Step: one `train_step` on one training batch, "
             f"all points timed together in interleaved rounds (median ms). Machine: {m['cpu']}, {m['cores']} cores "
             f"(shared), load average at start {', '.join(f'{v:.2f}' for v in m['load_average_at_start'])}; "
             f"the run took {report['seconds']:.0f} s.", "",
             "| E | top-k | mean AUC over task sentences | " + " | ".join(f"{u} AUC" for u in use_cases)
             + " | FLOPs / example | routing FLOPs / example | step ms | params |",
             "|---|---|---|" + "---|" * len(use_cases) + "---|---|---|---|"]
    lines += [_point_row(report, key) for key in report["summary"]]
    lines += [f"- {note}" for note in report["notes"]]
    lines += ["", f"![AUC, FLOPs and step time vs E]({name}.png)", "", "## The paper's claim and ours", "",
              PAPER_CLAIM, "", "Which parts hold on this data (a difference within two standard errors is a tie, "
              "not a rise; with one seed there is no standard error and only the sign is read):", ""]
    for claim, t in report["targets"].items():
        verdict = "holds" if t["pass"] else "does not hold"
        if t["detail"].startswith("one seed"):  # a sign, not a difference beyond noise: say so in the verdict
            verdict += " by its sign only"
        lines.append(f"- {claim}: **{verdict}** (value {t['value']}, limit {t['limit']}; {t['detail']})")
    lines += ["", "## Commands", "", "```bash", *COMMANDS, "```", "",
              f"Full size (the defaults: top-k 1,2,4 x E 4,8,16,32, one seed): {FULL_RUN_ESTIMATE}. "
              "`--option quick=1` runs three points at tiny sizes (about a minute on a quiet machine, 2 to 3 on a "
              "shared one)."]
    return "\n".join(lines) + "\n"


def plot(report: Dict, path: str) -> None:
    """Three panels vs E (log scale), one line per top-k: mean AUC (std bars), FLOPs per example, step ms."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("mean AUC (test)", lambda s: s["mean_auc"]["mean"]),
              ("FLOPs / example", lambda s: s["flops_per_example"]["total"]),
              ("training step (ms)", lambda s: s["step_ms"]))
    experts = report["options"]["experts"]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for axis, (_, value) in zip(axes, panels):
        for k in report["options"]["top_k"]:
            keys = [point_key(k, e) for e in experts if point_key(k, e) in report["summary"]]
            xs = [report["points"][key]["experts"] for key in keys]
            ys = [value(report["summary"][key]) for key in keys]
            errors = [report["summary"][key]["mean_auc"]["std"] for key in keys] if axis is axes[0] else None
            errors = None if errors is None or all(np.isnan(errors)) else np.nan_to_num(errors)
            axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=f"top-k {k}")
    save_log2_panels(figure, axes, [title for title, _ in panels], experts, "total experts E", path)


__all__ = ["run", "grid", "targets", "markdown", "plot", "point_key"]
