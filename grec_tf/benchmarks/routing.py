"""``routing`` benchmark: the paper's Table 1 on telecom - MMoE 4/4 and GRec 8/4 under each routing strategy.

    python -m pipelines.benchmark routing --out benchmarks/results [--option seeds=3] [--option quick=1] \
        [--option config=configs/telecom.yaml] [--option overrides=data.rows=200000]

Every variant is trained once per seed (``train.seed``; the data split is fixed) on the same splits with the same
budget, like :mod:`grec_tf.benchmarks.quality`. Per use case (over its task sentences' test rows): AP and AUC as
mean and std over seeds. Per example: routing FLOPs (the ops under the router's name scope: gate inputs, logits,
softmax, top-k) and total forward FLOPs of the bottom and towers (the part the variants differ in), from TF's
profiler on a test batch (:func:`grec_tf.profiling.count_flops_by_scope`); training examples/s (long rows, from
the run's report) and inference examples/s (the test split scored in batches).

Writes ``routing.json``, ``routing.md`` and ``routing.png``: the paper's Table 1 beside ours, column for column,
and which of the paper's orderings hold on this data (a difference under two standard errors is a tie).
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import save_figure_atomic, write_report
from grec_tf.benchmarks.forward_flops import FLOPS_BATCH, model_flops
from grec_tf.benchmarks.quality import base_config_of, variant_config
from grec_tf.benchmarks.seed_comparison import compare, format_statistics, seed_statistics
from grec_tf.data.sources import load_splits
from grec_tf.experiment import Experiment
from grec_tf.training.evaluation import predict_probabilities

#: variant -> config overrides (the paper's Table 1: 8 experts, top-4, capacity 2 where it applies)
VARIANTS: Dict[str, List[str]] = {
    "mmoe_4_4": ["model.type=mmoe", "model.num_experts=4"],
    "token": ["model.type=grec", "model.routing=token", "model.num_experts=8", "model.top_k=4",
              "model.capacity_factor=2"],
    "sentence": ["model.type=grec", "model.routing=sentence", "model.num_experts=8", "model.top_k=4",
                 "model.capacity_factor=2"],
    "task": ["model.type=grec", "model.routing=task", "model.num_experts=8", "model.top_k=4"],
    "task_sentence": ["model.type=grec", "model.routing=task_sentence", "model.num_experts=8", "model.top_k=4"],
}
USE_CASES = ("CTR", "CTCVR", "ATC", "CVR")
#: The paper's Table 1 (AP in %, routing FLOPs); None where the paper gives no number.
PAPER = {
    "mmoe_4_4": {"ap": {"CTR": 64.15, "CTCVR": 79.02, "ATC": 55.73, "CVR": 84.17}, "routing_flops": None},
    "token": {"ap": {"CTR": 64.53, "CTCVR": 80.72, "ATC": 56.23, "CVR": 84.63}, "routing_flops": 4.1e6},
    "sentence": {"ap": {}, "routing_flops": None},
    "task": {"ap": {}, "routing_flops": 1.0e6},
    "task_sentence": {"ap": {"CTR": 64.51, "CTCVR": 80.71, "ATC": 56.85, "CVR": 84.94}, "routing_flops": 2.1e6},
}


def inference_rate(model: tf.keras.Model, dataset: tf.data.Dataset, rows: int) -> float:
    """Test rows scored per second (the second of two passes: the first traces the function)."""
    predict_probabilities(model, dataset)
    started = time.perf_counter()
    predict_probabilities(model, dataset)
    return rows / (time.perf_counter() - started)


def variant_runs(name: str, base: Experiment, seeds: Sequence[int], work: str) -> List[Dict]:
    """One variant trained per seed: per-use-case test metrics, speed and (first seed) FLOPs."""
    runs = []
    for seed in seeds:
        experiment = Experiment(variant_config(base.config, VARIANTS[name], seed, name), splits=base.splits,
                                statistics=base.statistics)
        trained = experiment.train(os.path.join(work, f"{name}-{seed}"), verbose=0)
        test = experiment.dataset("test")
        run = {"seed": seed, "test": trained.metrics["test"],
               "train_examples_per_second": trained.metrics["train"]["examples_per_second"],
               "inference_examples_per_second": inference_rate(trained.model, test, len(base.splits["test"])),
               "params": trained.metrics["model"]["params"]}
        if not runs:
            batch = next(iter(experiment.dataset("test", batch_size=FLOPS_BATCH)))
            run["flops_per_example"] = model_flops(trained.model, {k: v for k, v in batch.items() if k != "label"})
        runs.append(run)
        tf.keras.backend.clear_session()
    return runs


def summarize(runs: List[Dict]) -> Dict:
    """Mean/std over seeds of each use case's AP and AUC, and of the speeds; FLOPs of the first seed."""
    per_use_case = {u: {metric: seed_statistics([r["test"].get(f"use_case/{u}", {}).get(metric) for r in runs])
                        for metric in ("ap", "auc")} for u in USE_CASES}
    return {"use_cases": per_use_case,
            "mean_auc": seed_statistics([np.mean([r["test"][f"use_case/{u}"]["auc"] for u in USE_CASES
                                                  if f"use_case/{u}" in r["test"]]) for r in runs]),
            "train_examples_per_second": seed_statistics([r["train_examples_per_second"] for r in runs]),
            "inference_examples_per_second": seed_statistics([r["inference_examples_per_second"] for r in runs]),
            "flops_per_example": runs[0]["flops_per_example"], "params": runs[0]["params"]}


def orderings(summary: Dict[str, Dict]) -> Dict[str, Dict]:
    """The paper's claims about Table 1 checked on ours, as targets ``{"value", "limit", "pass", "detail"}``.

    AP comparisons use the two-standard-error rule of :func:`compare`; "holds" for a claim of equality means a
    tie on every use case, for a claim of superiority a win (or, for "at least", no loss), for a claim of
    inferiority a loss."""
    def ap(name: str, use_case: str) -> Dict:
        return summary[name]["use_cases"][use_case]["ap"]

    checks: Dict[str, Dict] = {}
    reference = next(iter(summary.values()))["use_cases"]
    present = [u for u in USE_CASES if not np.isnan(reference[u]["ap"]["mean"])]
    if {"task_sentence", "token"} <= set(summary):
        verdicts = {u: compare(ap("task_sentence", u), ap("token", u))["verdict"] for u in present}
        losses = sum(v == "loss" for v in verdicts.values())
        checks["task-sentence routing reaches token routing's AP (no use case lost)"] = {
            "value": losses, "limit": 0, "pass": losses == 0, "detail": verdicts}
        ratio = (summary["task_sentence"]["flops_per_example"]["routing"]
                 / max(summary["token"]["flops_per_example"]["routing"], 1e-9))
        checks["task-sentence routing FLOPs <= 0.5 x token routing's"] = {
            "value": round(ratio, 4), "limit": 0.5, "pass": ratio <= 0.5, "detail": "per example"}
    if {"task_sentence", "mmoe_4_4"} <= set(summary):
        verdicts = {u: compare(ap("task_sentence", u), ap("mmoe_4_4", u))["verdict"] for u in present}
        wins = sum(v == "win" for v in verdicts.values())
        checks["task-sentence routing beats MMoE 4/4 on AP in every use case"] = {
            "value": wins, "limit": len(present), "pass": wins == len(present), "detail": verdicts}
    if {"task", "task_sentence", "token"} <= set(summary):
        flops = [summary[n]["flops_per_example"]["routing"] for n in ("task", "task_sentence", "token")]
        checks["routing FLOPs: task <= task-sentence <= token"] = {
            "value": [round(f, 1) for f in flops], "limit": "ascending", "pass": flops[0] <= flops[1] <= flops[2],
            "detail": "per example"}
    routings = [n for n in ("token", "sentence", "task", "task_sentence") if n in summary]
    if "sentence" in routings and len(routings) > 1:
        means = {n: float(np.nanmean([ap(n, u)["mean"] for u in present])) for n in routings}
        weakest = min(means, key=means.get)
        # Weaker than each other routing: a loss on some use case and a win on none (the two-SE rule), so an
        # ordering of means inside the noise is not taken for the paper's claim.
        verdicts = {other: {u: compare(ap("sentence", u), ap(other, u))["verdict"] for u in present}
                    for other in routings if other != "sentence"}
        weaker = all("loss" in v.values() and "win" not in v.values() for v in verdicts.values())
        checks["sentence routing is the weakest routing (lowest mean AP, a loss to every other routing)"] = {
            "value": weakest, "limit": "sentence", "pass": weakest == "sentence" and weaker,
            "detail": {"mean AP": {n: round(m, 4) for n, m in means.items()}, "sentence vs": verdicts}}
    return checks


def _pct(stats: Dict) -> str:
    """An AP/AUC statistic in percent, ``mean ± std``."""
    scaled = {**stats, "mean": 100 * stats["mean"], "std": 100 * stats["std"]}
    return format_statistics(scaled, digits=2)


def markdown(report: Dict) -> str:
    """Table 1 of the paper beside ours, then per-use-case AUC, FLOPs and speed, then the orderings."""
    summary, names = report["summary"], list(report["summary"])
    lines = ["# `routing` benchmark: the paper's Table 1 on telecom", "",
             f"Data: telecom, {report['config']['data']['rows']:,} impressions; seeds {report['options']['seeds']}; "
             f"budget shared by every variant: {report['config']['train']['epochs']} epochs max, batch "
             f"{report['config']['data']['batch_size']}. Machine: {report['environment']['machine']}, "
             f"{report['environment']['cores']} cores, load {report['environment']['load_average_before']}.", "",
             "## AP (%) per use case: the paper's | ours (mean ± std over seeds)", "",
             "| variant | " + " | ".join(f"{u} paper | {u} ours" for u in USE_CASES)
             + " | routing FLOPs paper | routing FLOPs / example ours | total FLOPs / example ours |",
             "|---|" + "---|---|" * len(USE_CASES) + "---|---|---|"]
    for name in names:
        s, paper = summary[name], PAPER.get(name, {"ap": {}, "routing_flops": None})
        cells = []
        for u in USE_CASES:
            cells += [f"{paper['ap'][u]:.2f}" if u in paper["ap"] else "-", _pct(s["use_cases"][u]["ap"])]
        flops = s["flops_per_example"]
        paper_flops = f"{paper['routing_flops'] / 1e6:.1f}M" if paper["routing_flops"] else "-"
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {paper_flops} | {flops['routing']:,.0f} | {flops['total']:,.0f} |")
    lines += ["", "The paper's routing FLOPs are for its production model and batch; ours are per example of this "
              "model (d_model, experts, tokens of the config). Compare ratios between rows, not magnitudes.", "",
              "## AUC (%) per use case, speed and size", "",
              "| variant | " + " | ".join(USE_CASES) + " | train examples/s | inference examples/s | params |",
              "|---|" + "---|" * len(USE_CASES) + "---|---|---|"]
    for name in names:
        s = summary[name]
        lines.append(f"| {name} | " + " | ".join(_pct(s["use_cases"][u]["auc"]) for u in USE_CASES)
                     + f" | {format_statistics(s['train_examples_per_second'], 0)} | "
                     f"{format_statistics(s['inference_examples_per_second'], 0)} | {s['params']:,} |")
    lines += ["", "## Which of the paper's orderings hold here", ""]
    for claim, target in report["targets"].items():
        lines.append(f"- {claim}: **{'holds' if target['pass'] else 'does not hold'}** "
                     f"(value {target['value']}, limit {target['limit']}; {target['detail']})")
    return "\n".join(lines) + "\n"


def plot(report: Dict, path: str) -> None:
    """Two panels: AP per use case of every variant (mean, std bars), routing FLOPs per example."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, names = report["summary"], list(report["summary"])
    figure, (ap_axis, flops_axis) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        stats = [summary[name]["use_cases"][u]["ap"] for u in USE_CASES]
        ap_axis.bar(np.arange(len(USE_CASES)) + i * width, [100 * s["mean"] for s in stats], width,
                    yerr=[100 * (0 if np.isnan(s["std"]) else s["std"]) for s in stats], label=name)
    ap_axis.set_xticks(np.arange(len(USE_CASES)) + 0.4 - width / 2, USE_CASES)
    ap_axis.set_ylabel("test AP (%)")
    ap_axis.legend(fontsize=8)
    flops_axis.bar(names, [summary[n]["flops_per_example"]["routing"] for n in names])
    flops_axis.set_ylabel("routing FLOPs / example")
    flops_axis.tick_params(axis="x", rotation=60)
    figure.tight_layout()
    save_figure_atomic(figure, path)


def run(out_dir: str, config: str = "configs/telecom.yaml", overrides: str = "", seeds: str = "3",
        quick: str = "0", variants: str = ",".join(VARIANTS)) -> Dict:
    """Trains every variant once per seed on the same telecom splits and writes ``routing.json``/``.md``."""
    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"option variants: unknown {unknown}; available: {', '.join(VARIANTS)}")
    seed_list = list(range(int(seeds)))
    base_config = base_config_of(config, overrides, quick.strip().lower() in ("1", "true", "yes"))
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="grec-routing-") as work:
        base = Experiment(base_config, splits=load_splits(base_config, default_dir=os.path.join(work, "data")))
        runs = {}
        for name in names:
            print(f"== routing: {name}, seeds {seed_list}", flush=True)
            runs[name] = variant_runs(name, base, seed_list, work)
    summary = {name: summarize(r) for name, r in runs.items()}
    report = {"options": {"config": config, "overrides": overrides, "seeds": seed_list, "variants": names},
              "config": base_config.to_dict(), "variants": {n: VARIANTS[n] for n in names}, "paper": PAPER,
              "summary": summary, "targets": orderings(summary), "runs": runs,
              "environment": {"machine": platform.machine(), "cores": os.cpu_count(),
                              "load_average_before": load_before,
                              "load_average_after": [round(v, 2) for v in os.getloadavg()]}}
    write_report(out_dir, "routing", report, markdown(report))
    plot(report, os.path.join(out_dir, "routing.png"))
    return report
