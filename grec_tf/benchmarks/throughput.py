"""``throughput`` benchmark: training and inference speed of GRec-TF's models next to DeepCTR's MMoE and
shared-bottom, on the same data, machine and budget, in float32 and in ``mixed_bfloat16``.

    python -m pipelines.benchmark throughput --out benchmarks/results \
        [--option epochs=10] [--option adult_path=/work/shared/data/adult/adult.parquet] \
        [--option telecom_rows=50000] [--option models=grec,mmoe,deepctr_mmoe] [--option quick=1] [--option tag=T]

Datasets: UCI Adult (two tasks, income and never-married; skipped with a note when the file is absent) and
the generated telecom data (GRec-TF models only; ``telecom_rows=0`` skips it). DeepCTR (the optional
``peers`` extra) sees the very rows GRec-TF sees, one row per person instead of GRec-TF's one long row per
(person, task): categorical features as ``SparseFeat`` (embedding width 16, vocabulary of the training
split, unknown values -> index 0) and numerical ones as ``DenseFeat`` normalized with training statistics.

Budget shared by every model: the config's batch size (in rows of each model's own input: a GRec-TF batch
of 1024 long rows holds 512 Adult persons, a DeepCTR batch of 1024 holds 1024 persons), embedding width 16,
the config's optimizer (``grec_tf.training.optimizer``: rate and schedule, the schedule planned over each model's
own batches), at most ``epochs`` epochs with early stopping (patience 2, best weights restored) on the validation
loss (``val_task_loss`` for GRec-TF, ``val_loss`` for DeepCTR).
Training speed counts only the training phase of each epoch (validation excluded); inference speed is
the median of 3 timed passes over the test split after an untimed one (graph tracing excluded).

Models: ``grec``, ``mmoe``, ``shared_bottom`` and DeepCTR's two by default; any GRec-TF variant of the ``quality``
benchmark (``grec_relu``, ``grec_cross``, ...) can be named too, and is timed like ``grec``.

Writes ``throughput.json`` and ``throughput.md`` (``throughput_{tag}.*`` with ``tag=``).
"""
from __future__ import annotations

import math
import os
import platform
import statistics as stats
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.deepctr_peers import (EMBEDDING_DIM, PEER_MODELS, build_peer, import_peers,
                                              missing_peers_note, peer_arrays, peer_dataset, person_count)
from grec_tf.benchmarks.forward_flops import FLOPS_BATCH
from grec_tf.benchmarks.quality import VARIANTS
from grec_tf.benchmarks.quality_report import optimizer_words
from grec_tf.benchmarks.step_cost import (flop_rate_split, grec_forward_flops_per_row, peer_forward_flops_per_example,
                                          profile_markdown, train_step_profile)
from grec_tf.config import ExperimentConfig, load_config
from grec_tf.experiment import Experiment, load_experiment
from grec_tf.metrics import roc_auc
from grec_tf.training.evaluation import evaluate_scores
from grec_tf.training.trainer import count_params

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
ADULT_PATH = "/work/shared/data/adult/adult.parquet"
GREC_MODELS = ("grec", "mmoe", "shared_bottom")
DEFAULT_MODELS = ",".join(GREC_MODELS + ("deepctr_mmoe", "deepctr_shared_bottom"))
#: precision label -> Keras mixed-precision policy (GRec-TF models run in both; DeepCTR in float32)
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
PATIENCE = 2
INFERENCE_PASSES = 3
#: dataset -> config file, what one training example of a person-level model is, and its id column
DATASETS = {"adult": {"config": "adult.yaml", "unit": "persons", "unit_column": "row_id"},
            "telecom": {"config": "telecom.yaml", "unit": "impressions", "unit_column": "impression_id"}}
#: ``quick``: sizes small enough for the test suite (the budget stays the same for every model)
QUICK_OVERRIDES = ["data.batch_size=128", "model.d_model=16", "model.expert_hidden=32", "model.tower_units=[16]"]
QUICK_TELECOM_ROWS = 400
SPEED_TARGET, BF16_TARGET, BF16_AUC_TOLERANCE = 1.0, 1.5, 0.002


class TrainingPhaseTimer(tf.keras.callbacks.Callback):
    """Seconds of each epoch's training phase: from the epoch's start to the start of its validation
    (or to its end without validation data)."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds: List[float] = []
        self._started: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._started = time.perf_counter()

    def _stop(self) -> None:
        if self._started is not None:
            self.epoch_seconds.append(time.perf_counter() - self._started)
            self._started = None

    def on_test_begin(self, logs=None) -> None:
        self._stop()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._stop()


def fit_timed(model: tf.keras.Model, train: tf.data.Dataset, valid: tf.data.Dataset, monitor: str,
              epochs: int) -> List[float]:
    """Fits with early stopping on ``monitor`` (patience 2, best weights restored); returns the seconds of
    each epoch's training phase (one entry per epoch run)."""
    timer = TrainingPhaseTimer()
    stopping = tf.keras.callbacks.EarlyStopping(monitor=monitor, patience=PATIENCE, restore_best_weights=True)
    model.fit(train, validation_data=valid, epochs=epochs, callbacks=[stopping, timer], verbose=0)
    return timer.epoch_seconds


def timed_predict(score: Callable[[Dict[str, tf.Tensor]], tf.Tensor],
                  dataset: tf.data.Dataset) -> Tuple[np.ndarray, float]:
    """Scores [N, ...] of ``score`` (one feature batch -> its scores) over ``dataset`` (feature dicts, or
    ``(features, labels)`` pairs), and the median seconds of the timed passes over it."""
    paired = isinstance(dataset.element_spec, tuple)
    # one graph for every batch size (the last batch is smaller), traced by the untimed pass
    predict = tf.function(score, input_signature=[dataset.element_spec[0] if paired else dataset.element_spec])

    def one_pass() -> np.ndarray:
        return np.concatenate([predict(batch[0] if paired else batch).numpy() for batch in dataset])

    scores = one_pass()
    seconds = []
    for _ in range(INFERENCE_PASSES):
        started = time.perf_counter()
        one_pass()
        seconds.append(time.perf_counter() - started)
    return scores, stats.median(seconds)


def speed_row(epoch_seconds: List[float], train_units: Dict[str, int], test_units: Dict[str, int],
              inference_seconds: float) -> Dict:
    """Training and test examples/s for each unit counted (e.g. ``persons`` and ``rows``).

    Training speed is timed over epochs 2+ (``timed_epochs``): the first epoch also traces the training
    graph, a one-time cost reported as ``first_epoch_seconds``. With a single epoch run it is all there is.
    """
    timed = epoch_seconds[1:] or epoch_seconds
    row = {"epochs_run": len(epoch_seconds), "timed_epochs": len(timed) if len(epoch_seconds) > 1 else 0,
           "first_epoch_seconds": round(epoch_seconds[0], 3), "train_seconds": round(sum(epoch_seconds), 3),
           "inference_seconds": round(inference_seconds, 4)}
    for unit, count in train_units.items():
        row[f"train_{unit}_per_second"] = count * len(timed) / max(sum(timed), 1e-9)
    for unit, count in test_units.items():
        row[f"inference_{unit}_per_second"] = count / max(inference_seconds, 1e-9)
    return row


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _units(frame: pd.DataFrame, unit: str, column: str) -> Dict[str, int]:
    """Examples in a long-format split: distinct ``column`` values (``unit``) and long rows."""
    return {unit: int(frame[column].nunique()), "rows": len(frame)}


def grec_row(config: ExperimentConfig, splits: Dict[str, pd.DataFrame], base: Experiment, epochs: int,
             unit: Tuple[str, str], profile: bool = False) -> Dict:
    """Trains and times one GRec-TF model (``config`` carries its variant and precision) on ``splits``;
    the test AUC of each task sentence, their mean, params, the speeds of :func:`speed_row`, forward FLOPs per
    long row and per ``unit``, and with ``profile`` the trained step's op time by op type."""
    experiment = Experiment(config, splits=splits, statistics=base.statistics)
    extra = {}
    try:
        model = experiment.build_model()  # sets the config's mixed-precision policy
        epoch_seconds = fit_timed(model, experiment.dataset("train", shuffle=True), experiment.dataset("valid"),
                                  "val_task_loss", epochs)
        scores, seconds = timed_predict(
            lambda batch: model({k: v for k, v in batch.items() if k != "label"}, training=False)["probability"],
            experiment.dataset("test"))
        params = count_params(model)
        extra["forward_flops_per_row"] = grec_forward_flops_per_row(model, experiment.dataset("test",
                                                                                              batch_size=FLOPS_BATCH))
        if profile:
            extra["step_profile"] = train_step_profile(model, experiment.dataset("train", shuffle=True))
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    test = evaluate_scores(splits["test"], scores.astype(np.float64), config)["test"]
    auc = {s: test[s]["auc"] for s in test if not s.startswith("use_case/")}
    train_units = _units(splits["train"], *unit)
    extra[f"forward_flops_per_{unit[0]}"] = extra["forward_flops_per_row"] * train_units["rows"] / train_units[unit[0]]
    return {"auc": auc, "mean_auc": _mean(list(auc.values())), "params": params, **extra,
            **speed_row(epoch_seconds, train_units, _units(splits["test"], *unit), seconds)}


def grec_rows(config_path: str, overrides: List[str], models: Sequence[str], epochs: int, data_dir: str,
              unit: Tuple[str, str]) -> Tuple[Dict[str, Dict], Experiment]:
    """``{"{model}/{precision}": row}`` for the GRec-TF models in ``models``, and the shared experiment
    (its splits and statistics feed every model)."""
    base = load_experiment(config_path, overrides, data_dir=data_dir)
    splits = base.splits
    rows = {}
    for name in [m for m in models if m in VARIANTS]:
        for precision, policy in PRECISIONS.items():
            print(f"== {base.config.data.source}: {name}/{precision}", flush=True)
            config = load_config(config_path, overrides + VARIANTS[name] + [f"train.mixed_precision={policy}"])
            rows[f"{name}/{precision}"] = grec_row(config, splits, base, epochs, unit, profile=name.startswith("grec"))
            tf.keras.backend.clear_session()
    return rows, base


def peer_row(name: str, peers: Dict[str, type], feature_columns: list, arrays: Dict[str, Dict[str, np.ndarray]],
             config: ExperimentConfig, epochs: int, unit: str) -> Dict:
    """Trains and times one DeepCTR model (``name``: a ``PEER_MODELS`` key, its default architecture) in
    float32; the same report as :func:`grec_row` (DeepCTR's MMoE, the reference, with its step profiled)."""
    tasks = list(config.data.use_cases)
    model = build_peer(name, peers, feature_columns, config, person_count(arrays["train"]))
    epoch_seconds = fit_timed(model, peer_dataset(arrays["train"], config, True),
                              peer_dataset(arrays["valid"], config, False), "val_loss", epochs)
    scores, seconds = timed_predict(lambda features: tf.concat(model(features, training=False), axis=1),
                                    peer_dataset(arrays["test"], config, False))
    features = {k: v for k, v in arrays["test"].items() if not k.startswith("label/")}
    flops = peer_forward_flops_per_example(model, features)
    extra = {"step_profile": train_step_profile(model, peer_dataset(arrays["train"], config, True))} \
        if name == "deepctr_mmoe" else {}
    flow = config.data.flows[0]
    auc = {f"{flow}/{task}": roc_auc(arrays["test"][f"label/{task}"], scores[:, i]) for i, task in enumerate(tasks)}
    units = {split: {unit: person_count(arrays[split]), "rows": person_count(arrays[split]) * len(tasks)}
             for split in ("train", "test")}
    return {"auc": auc, "mean_auc": _mean(list(auc.values())), "params": count_params(model),
            f"forward_flops_per_{unit}": flops, "forward_flops_per_row": flops / len(tasks), **extra,
            **speed_row(epoch_seconds, units["train"], units["test"], seconds)}


def peer_rows(models: Sequence[str], base: Experiment, epochs: int, unit: str) -> Tuple[Dict[str, Dict], List[str]]:
    """``{"{deepctr model}/fp32": row}`` for the DeepCTR models in ``models`` and notes (why rows are
    missing: DeepCTR not importable, or a dataset DeepCTR's person-level models cannot read)."""
    wanted = [m for m in models if m in PEER_MODELS]
    if not wanted:
        return {}, []
    peers = import_peers()
    if isinstance(peers, str):
        return {}, [missing_peers_note(wanted, peers)]
    arrays, feature_columns = peer_arrays(base.splits, base.config, peers)
    rows = {}
    for name in wanted:
        print(f"== {base.config.data.source}: {name}/fp32", flush=True)
        rows[f"{name}/fp32"] = peer_row(name, peers, feature_columns, arrays, base.config, epochs, unit)
        tf.keras.backend.clear_session()
    return rows, []


def dataset_section(name: str, overrides: List[str], models: Sequence[str], epochs: int, work: str) -> Dict:
    """Every requested model trained on one dataset: its rows, ratios, notes, and what was shared."""
    spec = DATASETS[name]
    config_path = str(CONFIG_DIR / spec["config"])
    overrides = overrides + [f"train.epochs={epochs}", f"train.early_stopping_patience={PATIENCE}",
                             f"model.embedding_dim={EMBEDDING_DIM}"]
    unit = (spec["unit"], spec["unit_column"])
    rows, base = grec_rows(config_path, overrides, models, epochs, os.path.join(work, name), unit)
    notes = []
    if name == "adult":
        peer, notes = peer_rows(models, base, epochs, spec["unit"])
        rows.update(peer)
    elif any(m in PEER_MODELS for m in models):
        notes.append(f"DeepCTR models run on adult only (person-level tables of categorical and numerical "
                     f"features); not on {name}.")
    config = base.config
    return {"unit": spec["unit"], "config_file": config_path, "overrides": overrides,
            "data": {"path": config.data.path, "rows": config.data.rows if name == "telecom" else None,
                     **{f"{split}_{k}": v for split in ("train", "valid", "test")
                        for k, v in _units(base.splits[split], *unit).items()}},
            "budget": {"batch_size": config.data.batch_size, "embedding_dim": EMBEDDING_DIM, "max_epochs": epochs,
                       "patience": PATIENCE, "learning_rate": config.train.learning_rate,
                       "optimizer": optimizer_words(config.to_dict()["train"])},
            "rows": rows, "ratios": ratios(rows, spec["unit"]), "notes": notes}


def ratios(rows: Dict[str, Dict], unit: str) -> Dict[str, Dict]:
    """Training and inference speed of every row relative to the reference (DeepCTR MMoE when it ran, else
    GRec fp32), and bf16 over fp32 (speeds and mean AUC difference) for each GRec-TF model."""
    reference = "deepctr_mmoe/fp32" if "deepctr_mmoe/fp32" in rows else "grec/fp32"
    out = {"reference": reference if reference in rows else None, "vs_reference": {}, "bf16_over_fp32": {},
           "flop_rate_split": flop_rate_split(rows, unit, reference)}
    if reference in rows:
        ref = rows[reference]
        out["vs_reference"] = {
            key: {kind: row[f"{kind}_{unit}_per_second"] / ref[f"{kind}_{unit}_per_second"]
                  for kind in ("train", "inference")} for key, row in rows.items()}
    for model in dict.fromkeys(key.split("/")[0] for key in rows):
        fp32, bf16 = rows.get(f"{model}/fp32"), rows.get(f"{model}/bf16")
        if fp32 and bf16:
            out["bf16_over_fp32"][model] = {
                "train": bf16[f"train_{unit}_per_second"] / fp32[f"train_{unit}_per_second"],
                "inference": bf16[f"inference_{unit}_per_second"] / fp32[f"inference_{unit}_per_second"],
                "mean_auc_delta": bf16["mean_auc"] - fp32["mean_auc"]}
    return out


def _target(value: Optional[float], limit: float, passed: Optional[bool], detail: str) -> Dict:
    return {"value": value, "limit": limit, "pass": passed, "detail": detail}


def targets(sections: Dict[str, Dict]) -> Dict[str, Dict]:
    """The issue's targets; a target whose rows did not run has value and pass ``None``."""
    out = {}
    name = f"GRec training persons/s >= {SPEED_TARGET}x DeepCTR MMoE (adult)"
    rows = sections.get("adult", {}).get("rows", {})
    if "grec/fp32" in rows and "deepctr_mmoe/fp32" in rows:
        grec, peer = rows["grec/fp32"], rows["deepctr_mmoe/fp32"]
        ratio = grec["train_persons_per_second"] / peer["train_persons_per_second"]
        equal_auc = bool(grec["mean_auc"] >= peer["mean_auc"])
        split = sections["adult"]["ratios"].get("flop_rate_split", {}).get("grec/fp32", {})
        why = (f"; = flop rate {split['flop_rate_ratio']:.2f}x / forward FLOPs per person {split['flops_ratio']:.2f}x"
               if "flops_ratio" in split else "")
        out[name] = _target(ratio, SPEED_TARGET, bool(ratio >= SPEED_TARGET and equal_auc),
                            f"{grec['train_persons_per_second']:.0f} vs {peer['train_persons_per_second']:.0f} "
                            f"persons/s{why}; mean AUC {grec['mean_auc']:.4f} (GRec) vs {peer['mean_auc']:.4f} "
                            f"(DeepCTR MMoE): {'equal or better' if equal_auc else 'worse'}")
    else:
        out[name] = _target(None, SPEED_TARGET, None, "not measured: adult, grec or deepctr_mmoe did not run")
    for dataset, section in sections.items():
        unit = section["unit"]
        name = (f"bf16 training >= {BF16_TARGET}x fp32 {unit}/s for GRec at mean AUC within "
                f"{BF16_AUC_TOLERANCE} ({dataset})")
        pair = section["ratios"]["bf16_over_fp32"].get("grec")
        if pair is None:
            out[name] = _target(None, BF16_TARGET, None, "not measured: grec did not run")
            continue
        close = bool(abs(pair["mean_auc_delta"]) <= BF16_AUC_TOLERANCE)
        out[name] = _target(pair["train"], BF16_TARGET, bool(pair["train"] >= BF16_TARGET and close),
                            f"{pair['train']:.2f}x; mean AUC bf16 - fp32 = {pair['mean_auc_delta']:+.4f} "
                            f"({'within' if close else 'outside'} {BF16_AUC_TOLERANCE})")
    return out


def environment(load_before: Tuple[float, ...]) -> Dict:
    """The machine, library versions and the load averages (1, 5, 15 min) before and after the run."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    peers = import_peers()
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "deepctr": None if isinstance(peers, str) else __import__("deepctr").__version__,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()]}


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def section_markdown(dataset: str, section: Dict) -> List[str]:
    """One dataset's table (speeds, AUC, params, epochs), bf16/fp32 ratios and notes."""
    unit, rows, ratio = section["unit"], section["rows"], section["ratios"]
    data, budget = section["data"], section["budget"]
    tasks = sorted({task for row in rows.values() for task in row["auc"]})
    per_task = tasks if len(tasks) <= 4 else []  # telecom's 12 task sentences stay in the JSON
    lines = [f"## {dataset}", "",
             f"Train / valid / test: {data['train_' + unit]:,} / {data['valid_' + unit]:,} / "
             f"{data['test_' + unit]:,} {unit} ({data['train_rows']:,} / {data['valid_rows']:,} / "
             f"{data['test_rows']:,} long rows). Budget: batch {budget['batch_size']}, embedding {EMBEDDING_DIM}, "
             f"{budget['optimizer']}, at most {budget['max_epochs']} epochs, patience {PATIENCE}.", "",
             f"| model | train {unit}/s | train rows/s | inference {unit}/s | train vs {ratio['reference']} | "
             + "".join(f"AUC {t} | " for t in per_task) + "mean AUC | params | epochs | first epoch s | train s |",
             "|---" * (10 + len(per_task)) + "|"]
    for key, row in rows.items():
        versus = ratio["vs_reference"].get(key, {}).get("train")
        lines.append(f"| {key} | {_fmt(row[f'train_{unit}_per_second'], 0)} | {_fmt(row['train_rows_per_second'], 0)}"
                     f" | {_fmt(row[f'inference_{unit}_per_second'], 0)} | {_fmt(versus, 2)}x | "
                     + "".join(f"{_fmt(row['auc'].get(t))} | " for t in per_task) +
                     f"{_fmt(row['mean_auc'])} | {row['params']:,} | {row['epochs_run']} | "
                     f"{row['first_epoch_seconds']:.1f} | {row['train_seconds']:.1f} |")
    for model, pair in ratio["bf16_over_fp32"].items():
        lines.append(f"- {model}: bf16 / fp32 training {pair['train']:.2f}x, inference {pair['inference']:.2f}x, "
                     f"mean AUC bf16 - fp32 {pair['mean_auc_delta']:+.4f}")
    lines += [f"- Note: {note}" for note in section["notes"]] + [""]
    return lines + flops_markdown(unit, ratio) + step_profile_markdown(rows)


def flops_markdown(unit: str, ratio: Dict) -> List[str]:
    """What each model computes and how fast: forward FLOPs per ``unit`` and the training flop rate, both
    against the reference, whose product is the speed ratio (see ``step_cost``)."""
    split = ratio.get("flop_rate_split") or {}
    if not split:
        return []
    lines = [f"### Forward FLOPs and flop rate (vs {ratio['reference']})", "",
             f"Forward FLOPs per {unit[:-1]} from TF's profiler (GRec-TF: bottom and towers of every long row, the "
             f"encoders left out; DeepCTR: the whole model). Training flop rate = train {unit}/s x forward FLOPs per "
             f"{unit[:-1]}. Speed ratio = flop-rate ratio / FLOPs ratio: a model slower for computing more is a design "
             "trade, one slower at computing is an implementation gap.", "",
             f"| model | forward kFLOPs per {unit[:-1]} | training forward GFLOP/s | FLOPs ratio | flop-rate ratio | "
             "speed ratio |", "|---|---|---|---|---|---|"]
    for key, entry in split.items():
        lines.append(f"| {key} | {entry[f'forward_flops_per_{unit}'] / 1e3:,.0f} | "
                     f"{entry['train_gflops_per_second']:.1f} | {_fmt(entry.get('flops_ratio'), 2)} | "
                     f"{_fmt(entry.get('flop_rate_ratio'), 2)} | {_fmt(entry.get('speed_ratio'), 2)} |")
    return lines + [""]


def step_profile_markdown(rows: Dict[str, Dict]) -> List[str]:
    """Op time of the profiled models' training steps by op type (thread-ms: 2 cores hold up to twice the
    wall time)."""
    profiles = {key: row["step_profile"] for key, row in rows.items() if row.get("step_profile")}
    if not profiles:
        return []
    steps = next(iter(profiles.values()))["steps"]
    return [f"### Where the training step's time goes", "",
            f"TF profiler, {steps} steps of the trained model after a warm-up; thread-milliseconds per step by op type "
            "(two cores run up to two at once), each column's largest op types, the rest under `other` (`-`: not "
            "among that column's largest). A step is one batch of the model's own rows: long rows for GRec-TF, "
            "persons (or impressions) for DeepCTR, so compare shares, not milliseconds.", ""] \
        + profile_markdown(profiles) + [""]


def markdown(report: Dict) -> str:
    """The whole report: how it was measured, the machine and its load, each dataset, the targets."""
    env = report["environment"]
    lines = ["# `throughput` benchmark: GRec-TF vs DeepCTR, fp32 vs bf16", "",
             "All models trained in this one run on the same splits and machine. Training speed counts only the "
             "training phase of epochs 2+ (validation excluded; the first epoch, which also traces the graph, is "
             "shown apart). Inference: median of 3 passes over the test split after an untimed one. A GRec-TF "
             "example is a long row (one person or impression x one task); person/impression rates divide by the "
             "tasks per person. DeepCTR runs its default architecture in float32; GRec-TF models in float32 "
             "(fp32) and `mixed_bfloat16` (bf16). Nothing was tuned for either side.", "",
             f"Machine: {env['machine']}, {env['cpu']}, {env['cores']} cores shared with other jobs; TensorFlow "
             f"{env['tensorflow']}, DeepCTR {env['deepctr'] or 'not installed'}. Load average (1/5/15 min) before: "
             f"{env['load_average_before']}, after: {env['load_average_after']}.", ""]
    lines += [f"- Note: {note}" for note in report["notes"]] + ([""] if report["notes"] else [])
    for dataset, section in report["datasets"].items():
        lines += section_markdown(dataset, section)
    lines += ["## Targets", ""]
    for name, target in report["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[target["pass"]]
        lines.append(f"- {name}: **{verdict}** (measured {_fmt(target['value'], 2)}, limit {target['limit']}; "
                     f"{target['detail']})")
    return "\n".join(lines) + "\n"


def _truthy(text: str) -> bool:
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def run(out_dir: str, epochs: str = "10", adult_path: str = ADULT_PATH, telecom_rows: str = "50000",
        models: str = DEFAULT_MODELS, quick: str = "0", tag: str = "") -> Dict:
    """Trains every requested model on adult (when ``adult_path`` exists) and telecom (unless
    ``telecom_rows`` is 0), and writes ``throughput.json`` / ``throughput.md`` (``throughput_{tag}.*`` with
    ``tag``) into ``out_dir``. ``models``: DeepCTR's (``PEER_MODELS``) and any GRec-TF variant of
    :data:`grec_tf.benchmarks.quality.VARIANTS` (e.g. ``grec_relu``)."""
    load_before = os.getloadavg()
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in VARIANTS and m not in PEER_MODELS]
    if unknown:
        available = ", ".join(tuple(VARIANTS) + tuple(PEER_MODELS))
        raise ValueError(f"option models: unknown {unknown}; available: {available}")
    overrides = list(QUICK_OVERRIDES) if _truthy(quick) else []
    max_epochs = min(int(epochs), 2) if _truthy(quick) else int(epochs)
    rows = min(int(telecom_rows), QUICK_TELECOM_ROWS) if _truthy(quick) else int(telecom_rows)
    wanted = {"adult": overrides + [f"data.path={adult_path}"], "telecom": overrides + [f"data.rows={rows}"]}
    notes = []
    if not os.path.isfile(adult_path):
        notes.append(f"adult skipped: option adult_path {adult_path!r} is not a file")
        del wanted["adult"]
    if rows <= 0:
        notes.append("telecom skipped: option telecom_rows is 0")
        del wanted["telecom"]
    with tempfile.TemporaryDirectory(prefix="grec-throughput-") as work:
        sections = {name: dataset_section(name, extra, names, max_epochs, work) for name, extra in wanted.items()}
    report = {"options": {"epochs": max_epochs, "adult_path": adult_path, "telecom_rows": rows, "models": names,
                          "quick": _truthy(quick), "tag": tag},
              "notes": notes, "datasets": sections, "targets": targets(sections),
              "environment": environment(load_before)}
    write_report(out_dir, "throughput" + (f"_{tag}" if tag else ""), report, markdown(report))
    return report
