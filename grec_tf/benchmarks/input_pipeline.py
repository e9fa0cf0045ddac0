"""`input_pipeline` benchmark: what iterating the training ``tf.data`` pipeline costs next to a training step.

For each dataset (telecom generated with ``data.rows`` = 20,000 by default; UCI Adult when its Parquet file
exists), on the training split with the config's batch size, shuffling on and, by default, one pass over the split
per round (as in training):

* ``before``: the element-wise pipeline ``make_dataset`` used to be (:func:`element_wise_dataset`:
  ``from_tensor_slices`` over every array, row-by-row shuffle, ``batch``);
* ``after``: :func:`grec_tf.data.dataset.make_dataset` (shuffled row indices, whole batches gathered);
* ``train_step``: the model's Keras ``train_step`` (forward, loss, backward, Adam update) in one ``tf.function``
  on batches already in memory, so no input pipeline is in it.

A pipeline is timed alone: a fresh iterator per round (so the shuffle buffer's fill at an epoch start counts, as
in training), wall time to its ``batches``-th batch / ``batches``. The training step: ``batches`` steps cycling
over the held batches, wall time / ``batches``. Pipelines and steps alternate within each round so load from
other processes hits them alike; ``ms`` are medians over rounds and each fraction is the median over rounds of
that round's pipeline ms / step ms. Target: the pipeline (``after``) costs at most 10% of the step.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.step_timing import machine_description
from grec_tf.data.dataset import as_tensors, make_dataset
from grec_tf.experiment import Experiment, load_experiment

#: the pipeline may cost at most this fraction of a training step
TARGET_FRACTION = 0.10
#: at most this many distinct batches are held in memory for the training-step timing
HELD_BATCHES = 8
#: Adult as a Parquet file, shared read-only on the benchmark machine
ADULT_PATH = "/work/shared/data/adult/adult.parquet"


def element_wise_dataset(arrays: Dict[str, np.ndarray], batch_size: int, shuffle: bool = False,
                         shuffle_buffer: int = 50_000, seed: Optional[int] = None,
                         repeat: bool = False) -> tf.data.Dataset:
    """The pipeline ``make_dataset`` replaced, kept as this benchmark's ``before`` and as the reference of its
    tests: one tf.data element per row (dict name -> [...]), shuffled row by row in a window of
    ``shuffle_buffer`` rows, then batched to name -> [batch, ...] (last partial batch kept)."""
    dataset = tf.data.Dataset.from_tensor_slices(as_tensors(arrays))
    if shuffle:
        rows = len(next(iter(arrays.values())))
        dataset = dataset.shuffle(min(shuffle_buffer, rows), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


PIPELINES: Dict[str, Callable[..., tf.data.Dataset]] = {"before": element_wise_dataset, "after": make_dataset}


def _iterate_ms(dataset: tf.data.Dataset, batches: int) -> float:
    """ms per batch of a fresh iterator up to its ``batches``-th batch."""
    start = time.perf_counter()
    iterator = iter(dataset)
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) * 1e3 / batches


def _steps_ms(step: Callable, held: List[dict], batches: int) -> float:
    """ms per training step over ``batches`` steps cycling through the held batches."""
    start = time.perf_counter()
    for i in range(batches):
        step(held[i % len(held)])["total_loss"].numpy()  # read back: the step has finished
    return (time.perf_counter() - start) * 1e3 / batches


def measure_input_pipeline(experiment: Experiment, batch_size: int, batches: int, rounds: int = 3,
                           split: str = "train") -> Dict:
    """ms per batch of iterating each pipeline of ``PIPELINES`` alone vs one training step of the experiment's
    model on held batches of ``batch_size`` rows, and each pipeline's cost as a fraction of the step.

    Returns ``{"rows", "batch_size", "batches", "rounds", "ms_per_batch": {pipeline..., "train_step"},
    "fraction_of_step": {pipeline...}, "samples": {name: [ms per round]}}``.
    """
    arrays, data = experiment.arrays(split), experiment.config.data
    datasets = {name: build(arrays, batch_size, shuffle=True, shuffle_buffer=data.shuffle_buffer, seed=data.seed,
                            repeat=True) for name, build in PIPELINES.items()}
    held = list(datasets["after"].take(min(batches, HELD_BATCHES)))
    step = tf.function(experiment.build_model().train_step)
    _steps_ms(step, held, 2)  # traces the step
    for dataset in datasets.values():
        _iterate_ms(dataset, 2)  # first-use set-up of each pipeline
    samples: Dict[str, List[float]] = {name: [] for name in [*datasets, "train_step"]}
    for _ in range(rounds):
        for name, dataset in datasets.items():
            samples[name].append(_iterate_ms(dataset, batches))
        samples["train_step"].append(_steps_ms(step, held, batches))
    fractions = {name: statistics.median(p / s for p, s in zip(samples[name], samples["train_step"]))
                 for name in datasets}
    return {"rows": len(arrays["label"]), "batch_size": batch_size, "batches": batches, "rounds": rounds,
            "ms_per_batch": {name: round(statistics.median(values), 3) for name, values in samples.items()},
            "fraction_of_step": {name: round(value, 4) for name, value in fractions.items()},
            "samples": {name: [round(v, 2) for v in values] for name, values in samples.items()}}


def _experiments(telecom_rows: int, adult_path: str, work: str) -> Dict[str, Optional[Experiment]]:
    """The benchmarked experiments by name; None for Adult when its file is missing."""
    telecom = load_experiment("configs/telecom.yaml", [f"data.rows={telecom_rows}"], data_dir=work)
    adult = (load_experiment("configs/adult.yaml", [f"data.path={adult_path}"])
             if os.path.isfile(adult_path) else None)
    return {"telecom": telecom, "adult": adult}


def run(out_dir: str, batches: int = 0, rounds: int = 3, telecom_rows: int = 20_000,
        adult_path: str = ADULT_PATH, batch_size: int = 0) -> Dict:
    """Measures every dataset, writes ``input_pipeline.json`` and ``.md`` into ``out_dir``; returns the results.
    ``batch_size`` 0: each config's ``data.batch_size``; ``batches`` 0: one pass over the training split (so the
    shuffle buffer's fill is spread over an epoch's batches, as in training)."""
    measured, skipped = {}, {}
    with tempfile.TemporaryDirectory(prefix="grec-input-pipeline-") as work:
        for name, experiment in _experiments(int(telecom_rows), adult_path, work).items():
            if experiment is None:
                skipped[name] = f"{adult_path} does not exist"
                continue
            size = int(batch_size) or experiment.config.data.batch_size
            count = int(batches) or math.ceil(len(experiment.arrays("train")["label"]) / size)
            measured[name] = measure_input_pipeline(experiment, size, count, int(rounds))
    limit = round(100 * TARGET_FRACTION, 1)
    targets = {f"input pipeline <= {limit:g}% of step time ({name})":
               {"value": round(100 * m["fraction_of_step"]["after"], 2), "limit": limit,
                "pass": bool(m["fraction_of_step"]["after"] <= TARGET_FRACTION)} for name, m in measured.items()}
    results = {"datasets": measured, "skipped": skipped, "targets": targets,
               "all_targets_pass": all(t["pass"] for t in targets.values()),
               "workload": {"split": "train", "telecom_rows": int(telecom_rows), "adult_path": adult_path,
                            "target_value": "after-pipeline ms per batch / training-step ms, in percent",
                            "timing": "medians over rounds; fractions: median over rounds of the round's ratio"},
               "machine": machine_description()}
    write_report(out_dir, "input_pipeline", results, render_markdown(results))
    return results


def render_markdown(results: Dict) -> str:
    """Readable report of a results dict: one row per dataset, then the targets."""
    description = (__doc__ or "").split("\n\n", 1)[1].strip().replace("``", "`").replace(":func:", "")
    lines = ["# `input_pipeline` benchmark", "", description, "",
             "| dataset | train rows | batch | batches x rounds | before ms/batch | after ms/batch | train step ms "
             "| before % of step | after % of step | before / after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in results["datasets"].items():
        ms, fraction = m["ms_per_batch"], m["fraction_of_step"]
        lines.append(f"| {name} | {m['rows']:,} | {m['batch_size']} | {m['batches']} x {m['rounds']} | "
                     f"{ms['before']:.1f} | {ms['after']:.1f} | "
                     f"{ms['train_step']:.1f} | {100 * fraction['before']:.1f} | {100 * fraction['after']:.1f} | "
                     f"{ms['before'] / ms['after']:.1f}x |")
    lines += [f"\nSkipped: {name} ({why})." for name, why in results["skipped"].items()]
    lines += ["", "| target | value | limit | pass |", "|---|---|---|---|"]
    lines += [f"| {what} | {t['value']:.2f} | {t['limit']:g} | {'yes' if t['pass'] else 'NO'} |"
              for what, t in results["targets"].items()]
    machine = results["machine"]
    lines += ["", f"Machine: {machine['cpu']}, {machine['cores']} cores (shared), TensorFlow "
                  f"{machine['tensorflow']}, load average at start "
                  f"{', '.join(f'{v:.2f}' for v in machine['load_average_at_start'])}.", ""]
    return "\n".join(lines)
