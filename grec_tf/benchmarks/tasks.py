"""``tasks`` benchmark: quality and cost as the number of task sentences T grows, GRec vs its baselines.

    python -m pipelines.benchmark tasks --out benchmarks/results [--option quick=1] \
        [--option models=grec,mmoe,ple,single_task] [--option task_sentences=3,6,12,24] \
        [--option overrides=data.rows=100000;train.epochs=2]

Data: one telecom task world of 3 flows x 8 use cases (:mod:`grec_tf.data.telecom.task_world`), generated
once; each T trains on a subset of its task sentences, T = flows x use cases with the split of the
``scaling`` benchmark (:func:`grec_tf.benchmarks.scaling.split_task_sentences`): 3 = 1 x 3, 6 = 2 x 3,
12 = 3 x 4 (today's dataset), 24 = 3 x 8 (four more use cases; COMPARE and SHARE are sparse like CVR).
The first flows and use cases of the world are taken, so every T's task sentences include the smaller T's.

Models (same inputs, one tower per task sentence, same budget): GRec (task-sentence routing, 8 experts,
top 4), MMoE (8 experts), and PLE and single-task when ``model.type`` accepts them (otherwise the report
says they were skipped and why).

Per (model, T): the AUC gap to the oracle of every task sentence (oracle AUC - model AUC on the test split),
its mean over all task sentences and over the sparse ones; training time (seconds in all, and the median
training batch after the first, which traces the step) and inference time (one warm ``tf.function`` over
the test split, ms per 1,000 rows). Targets: GRec's growth of train and inference time from the first T
to the last at most MMoE's.

Writes ``tasks.json``, ``tasks.md`` and ``tasks.png``. ``quick=1`` is a tiny size for tests (T = 3 and 24,
small model, one epoch); the full size is the defaults.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.line_plots import save_log2_panels
from grec_tf.benchmarks.scaling import split_task_sentences
from grec_tf.benchmarks.step_timing import machine_description
from grec_tf.config import MODEL_TYPES, ExperimentConfig, apply_overrides, load_config, parse_config
from grec_tf.data.sources import load_splits
from grec_tf.data.telecom.task_world import task_world
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment

#: the world every T is drawn from: 3 flows x 8 use cases
WORLD_FLOWS, WORLD_USE_CASES = 3, 8
#: model -> config overrides (everything else, budget included, shared)
VARIANTS: Dict[str, List[str]] = {
    "grec": ["model.type=grec", "model.routing=task_sentence", "model.num_experts=8", "model.top_k=4"],
    "mmoe": ["model.type=mmoe", "model.num_experts=8"],
    "ple": ["model.type=ple"],
    "single_task": ["model.type=single_task"],
}
SHARED = ["model.towers=task_sentence", f"data.telecom_flows={WORLD_FLOWS}",
          f"data.telecom_use_cases={WORLD_USE_CASES}"]
# quick: a few features (one per kind the world's signal needs), a tiny model, one epoch
QUICK = {"overrides": "data.rows=2500;data.batch_size=256;train.epochs=1;model.d_model=16;model.expert_hidden=32;"
                      "model.tower_units=[16];features=[{name: channel, kind: categorical}, "
                      "{name: plan, kind: categorical}, {name: item_id, kind: item_id, group: item}, "
                      "{name: item_price, kind: numerical, group: item}]", "task_sentences": "3,24"}
#: GRec's growth (last T / first T) of train and inference time at most this many times MMoE's
GROWTH_TARGET = 1.0


def task_config(base: ExperimentConfig, t: int, model: str) -> ExperimentConfig:
    """``base`` restricted to the first T task sentences of the world, for ``model``.

    Raises:
      ConfigError: ``model`` is not a variant, or its ``model.type`` is not known to this build.
    """
    if model not in VARIANTS:
        raise ConfigError(f"models: unknown model {model!r}; available: {', '.join(VARIANTS)}")
    flows, use_cases = split_task_sentences(t)
    world = task_world(WORLD_FLOWS, WORLD_USE_CASES)
    if flows > len(world.flows) or use_cases > len(world.use_cases):
        raise ConfigError(f"task_sentences: T = {t} needs {flows} flows x {use_cases} use cases; the world has "
                          f"{len(world.flows)} x {len(world.use_cases)}")
    data = [f"data.flows=[{','.join(world.flows[:flows])}]",
            f"data.use_cases=[{','.join(world.use_cases[:use_cases])}]"]
    return parse_config(apply_overrides(base.to_dict(), SHARED + data + VARIANTS[model]),
                        source=f"tasks T={t} {model}")


class StepTimer(tf.keras.callbacks.Callback):
    """Wall time of every training batch call (a step, or ``steps_per_execution`` steps), in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: List[float] = []
        self._started = 0.0

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._started)

    def median_ms(self) -> float:
        """Median batch time in ms without the first batch (it traces the step); that batch if it is the only one."""
        warm = self.seconds[1:] or self.seconds
        return 1000.0 * float(np.median(warm)) if warm else float("nan")


def inference_seconds(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
    """Seconds to score every batch of ``dataset`` with one ``tf.function``, after tracing it on the first
    and the last batch (a partial last batch has its own shape)."""
    predict = tf.function(lambda batch: model(batch, training=False)["probability"])
    batches = [{k: v for k, v in batch.items() if k != "label"} for batch in dataset]
    predict(batches[0]).numpy()
    predict(batches[-1]).numpy()
    started = time.perf_counter()
    for batch in batches:
        predict(batch).numpy()
    return time.perf_counter() - started


def _mean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None


def train_point(config: ExperimentConfig, splits: dict, out_dir: str, verbose: int) -> dict:
    """Trains one (model, T) and returns its per-task gaps, mean gaps, times and size."""
    experiment = Experiment(config, splits=splits)
    timer = StepTimer()
    run = experiment.train(out_dir, callbacks=[timer], verbose=verbose)
    metrics = run.metrics
    infer = inference_seconds(run.model, experiment.dataset("test"))
    world = task_world(WORLD_FLOWS, WORLD_USE_CASES)
    sparse = dict(zip(world.use_cases, world.sparse))
    sentences = [f"{f}/{u}" for f in config.data.flows for u in config.data.use_cases]
    gaps = {s: metrics["oracle"][s]["auc"] - metrics["test"][s]["auc"] for s in sentences}
    train = metrics["train"]
    return {
        "auc": {s: metrics["test"][s]["auc"] for s in sentences},
        "oracle_auc": {s: metrics["oracle"][s]["auc"] for s in sentences},
        "auc_gap": gaps,
        "mean_auc_gap": _mean(list(gaps.values())),
        "mean_auc_gap_sparse": _mean([g for s, g in gaps.items() if sparse[s.split("/", 1)[1]]]),
        "train_seconds": train["seconds"], "steps": train["steps_this_run"],
        "train_ms_per_step": timer.median_ms(),
        "infer_seconds": infer, "test_rows": len(splits["test"]),
        "infer_ms_per_1k_rows": 1000.0 * infer / max(len(splits["test"]), 1) * 1000.0,
        "params": metrics["model"]["params"],
    }


def available_models(names: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """``(names this build can train, {skipped name: why})``: a variant whose ``model.type`` is not one of
    :data:`grec_tf.config.MODEL_TYPES` is skipped (PLE and single-task arrive with their own change)."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"models: unknown model(s) {unknown}; available: {', '.join(VARIANTS)}")
    skipped = {}
    for name in names:
        model_type = VARIANTS[name][0].split("=", 1)[1]
        if model_type not in MODEL_TYPES:
            skipped[name] = (f"model.type {model_type!r} is not available in this build (model types: "
                             f"{', '.join(MODEL_TYPES)})")
    return [n for n in names if n not in skipped], skipped


def _ints(text: str) -> List[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def run(out_dir: str, config: str = "configs/telecom.yaml", overrides: str = "",
        models: str = "grec,mmoe,ple,single_task", task_sentences: str = "3,6,12,24", quick: str = "0",
        verbose: str = "0") -> dict:
    """Trains every (model, T), writes ``tasks.json``, ``tasks.md`` and ``tasks.png``; returns the report."""
    if quick not in ("0", "1", 0, 1):
        raise ConfigError(f"quick: expected 0 or 1, got {quick!r}")
    if str(quick) == "1":
        overrides = ";".join(x for x in (QUICK["overrides"], overrides) if x)
        task_sentences = QUICK["task_sentences"]
    base = load_config(config, [item for item in overrides.split(";") if item.strip()])
    ts = _ints(task_sentences)
    names, skipped = available_models([m.strip() for m in models.split(",") if m.strip()])
    machine = machine_description()   # the load average before training
    points: Dict[str, Dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="grec-tasks-") as work:
        for t in ts:
            splits = None
            for name in names:
                cfg = task_config(base, t, name)
                splits = splits or load_splits(cfg, default_dir=os.path.join(work, "data"))
                print(f"== T={t} {name}", flush=True)
                points.setdefault(name, {})[str(t)] = train_point(cfg, splits, os.path.join(work, f"{name}-T{t}"),
                                                                   int(verbose))
    report = {"task_sentences": ts, "layout": {str(t): dict(zip(("flows", "use_cases"), split_task_sentences(t)))
                                               for t in ts},
              "world": {"flows": WORLD_FLOWS, "use_cases": WORLD_USE_CASES}, "config": base.to_dict(),
              "models": points, "skipped": skipped, "growth": growth(points, ts), "quick": str(quick) == "1",
              "machine": machine}
    report["targets"] = tasks_targets(report["growth"])
    write_report(out_dir, "tasks", report, render_markdown(report))
    plot(report, os.path.join(out_dir, "tasks.png"))
    return report


def growth(points: Dict[str, Dict[str, dict]], ts: List[int]) -> Dict[str, Dict[str, float]]:
    """Per model: last T / first T of train ms per step and inference ms per 1,000 rows."""
    first, last = str(ts[0]), str(ts[-1])
    return {name: {key: by_t[last][key] / by_t[first][key] for key in ("train_ms_per_step", "infer_ms_per_1k_rows")}
            for name, by_t in points.items() if first in by_t and last in by_t}


def tasks_targets(growths: Dict[str, Dict[str, float]]) -> Dict[str, dict]:
    """name -> {"value", "limit", "pass"}: GRec's time growth at most GROWTH_TARGET x MMoE's."""
    if "grec" not in growths or "mmoe" not in growths:
        return {}
    out = {}
    for key, label in (("train_ms_per_step", "train time per step"), ("infer_ms_per_1k_rows", "inference time")):
        limit = GROWTH_TARGET * growths["mmoe"][key]
        value = growths["grec"][key]
        out[f"GRec {label} growth over T <= {GROWTH_TARGET} x MMoE's"] = {
            "value": round(value, 3), "limit": round(limit, 3), "pass": bool(value <= limit)}
    return out


def _fmt(value: Optional[float], spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render_markdown(report: dict) -> str:
    """The report as Markdown: summary per (T, model), per-task gaps per T, growth and targets."""
    ts, points = report["task_sentences"], report["models"]
    c = report["config"]
    layout = ", ".join(f"{t} = {v['flows']} x {v['use_cases']}" for t, v in report["layout"].items())
    lines = ["# `tasks` benchmark" + (" (quick size)" if report["quick"] else ""), "",
             f"Telecom task world {report['world']['flows']} flows x {report['world']['use_cases']} use cases, "
             f"{c['data']['rows']:,} impressions (seed {c['data']['seed']}); T task sentences = the first flows x "
             f"use cases of it ({layout}). "
             f"Budget per model: {c['train']['epochs']} epochs max, batch {c['data']['batch_size']}; one tower per "
             "task sentence. Train ms/step is the median training step after the first (tracing); inference is "
             "one warm tf.function over the test split.", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores (shared), load average at "
             f"start {', '.join(f'{v:.2f}' for v in report['machine']['load_average_at_start'])}.", "",
             "| T | model | mean AUC gap to oracle | sparse tasks' gap | train s | train ms/step | "
             "infer ms / 1k rows | params |", "|---|---|---|---|---|---|---|---|"]
    for t in ts:
        for name, by_t in points.items():
            p = by_t.get(str(t))
            if p:
                lines.append(f"| {t} | {name} | {_fmt(p['mean_auc_gap'])} | {_fmt(p['mean_auc_gap_sparse'])} | "
                             f"{p['train_seconds']:.1f} | {p['train_ms_per_step']:.1f} | "
                             f"{p['infer_ms_per_1k_rows']:.1f} | {p['params']:,} |")
    for name, reason in report["skipped"].items():
        lines += ["", f"Skipped `{name}`: {reason}"]
    lines += ["", "## Growth from the first T to the last", "",
              "| model | train ms/step | inference |", "|---|---|---|"]
    lines += [f"| {name} | x{g['train_ms_per_step']:.2f} | x{g['infer_ms_per_1k_rows']:.2f} |"
              for name, g in report["growth"].items()]
    lines += ["", "## Targets", "", "| target | value | limit | pass |", "|---|---|---|---|"]
    lines += [f"| {name} | {t['value']:.2f} | {t['limit']:.2f} | {'yes' if t['pass'] else 'NO'} |"
              for name, t in report["targets"].items()]
    for t in ts:
        names = [n for n in points if str(t) in points[n]]
        if not names:
            continue
        sentences = list(points[names[0]][str(t)]["auc_gap"])
        lines += ["", f"## AUC gap to the oracle per task sentence, T = {t}", "",
                  "| task sentence | oracle AUC | " + " | ".join(f"{n} gap" for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        lines += [f"| {s} | {_fmt(points[names[0]][str(t)]['oracle_auc'][s])} | "
                  + " | ".join(_fmt(points[n][str(t)]["auc_gap"][s]) for n in names) + " |" for s in sentences]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    """Three panels vs T (log scale): mean AUC gap to the oracle, train ms per step, inference ms per 1k rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: Tuple[Tuple[str, str], ...] = (("mean_auc_gap", "mean AUC gap to oracle"),
                                           ("train_ms_per_step", "train ms / step"),
                                           ("infer_ms_per_1k_rows", "inference ms / 1k rows"))
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for axis, (key, _) in zip(axes, panels):
        for name, by_t in report["models"].items():
            ts = [t for t in report["task_sentences"] if str(t) in by_t]
            axis.plot(ts, [by_t[str(t)][key] if by_t[str(t)][key] is not None else np.nan for t in ts],
                      marker="o", label=name)
    save_log2_panels(figure, axes, [title for _, title in panels], report["task_sentences"], "task sentences T", path)


__all__ = ["run", "task_config", "train_point", "growth", "tasks_targets", "render_markdown", "plot"]
