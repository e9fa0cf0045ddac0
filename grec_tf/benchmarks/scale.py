"""``scale`` benchmark: the Beam + TFRecord path against the in-memory pandas path as the data grows (issue 15).

    python -m pipelines.benchmark scale --out benchmarks/results [--option impressions=1000000,4000000] \
        [--option train_impressions=200000] [--option steps=30] [--option rounds=3] [--option quick=1] \
        [--option work_dir=/big/disk] [--option max_rss_gib=16]

1. Preprocessing, on each size of telecom impressions (generated once per size, untimed): the Beam pipeline
   (``pipelines.preprocess``) with one DirectRunner worker (in-process) and with two
   (``--direct_num_workers=2 --direct_running_mode=multi_processing``), and the pandas path (read + validate,
   ``compute_feature_statistics``, ``frame_to_arrays`` of every split). Each run is its own process
   (:mod:`grec_tf.benchmarks.scale_jobs`): input rows/s and impressions/s over the work (imports excluded), and
   the peak of the summed RSS of the process and its children (Beam's workers), sampled every 0.2 s
   (:mod:`grec_tf.benchmarks.process_memory`), with ``ru_maxrss`` beside it.
2. Training examples/s of telecom GRec 8/4 (the config's model) fed from the TFRecord shards vs from the in-memory
   arrays: same rows, batch and model, alternating rounds of a fixed number of steps after warm-up.
3. The same model trained from the shards by a ``MultiWorkerMirroredStrategy`` cluster of 1 and of 2 worker
   processes on 127.0.0.1 ports, global batch fixed (report only).

Targets: the Beam pipeline's peak RSS at the largest size <= 1.5x its peak at the smallest ("flat"; the pandas
path's growth is reported beside it) and TFRecord training >= 0.9x the in-memory path's examples/s.
Writes ``scale.json`` and ``scale.md``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from grec_tf.atomic_files import write_report
from grec_tf.benchmarks.process_memory import available_memory_bytes, run_measured
from grec_tf.benchmarks.step_timing import machine_description
from grec_tf.benchmarks.throughput import QUICK_OVERRIDES
from grec_tf.training.local_cluster import free_ports, start_workers

ROOT = Path(__file__).resolve().parents[2]
JOBS = ["-m", "grec_tf.benchmarks.scale_jobs"]
#: preprocessing path -> (job, its arguments)
PATHS = {"beam_1_worker": ("beam", ["--workers", "1"]), "beam_2_workers": ("beam", ["--workers", "2"]),
         "pandas": ("pandas", [])}
FLAT_LIMIT, STREAMING_LIMIT = 1.5, 0.9
#: the shuffle window of the training comparison, in rows (docs: what memory allows for TFRecord, e.g. 100000)
TRAIN_OVERRIDES = ["data.shuffle_buffer=100000"]
QUICK = {"impressions": "2000,8000", "train_impressions": "2000", "steps": "3", "rounds": "2", "warmup": "2"}
CLUSTER_WORKERS = (1, 2)
CLUSTER_SECONDS = 1800
#: a preprocessing job is stopped when its RSS passes this share of the memory available when the benchmark starts
RSS_LIMIT_SHARE = 0.8
#: ... but never below this: the smallest jobs need ~1-3 GiB, and other jobs' memory comes and goes
RSS_LIMIT_FLOOR_GIB = 4
MIB = 1024 * 1024
GIB = 1024 * MIB


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def generate(impressions: int, folder: Path, overrides: Sequence[str]) -> Dict:
    """The telecom splits of ``impressions`` in ``folder`` (``pipelines.generate``, untimed); its card."""
    if not (folder / "card.json").exists():
        command = [sys.executable, "-m", "pipelines.generate", "--config", str(ROOT / "configs" / "telecom.yaml"),
                   "--rows", str(impressions), "--out", str(folder), "--quiet", *_sets(overrides)]
        subprocess.run(command, cwd=ROOT, env=_env(), check=True)
    return json.loads((folder / "card.json").read_text())


def _env() -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _sets(overrides: Sequence[str]) -> List[str]:
    return [part for override in overrides for part in ("--set", override)]


def measured_job(job: str, args: Sequence[str], overrides: Sequence[str], work: Path, name: str,
                 rss_limit: Optional[int] = None) -> Dict:
    """Runs one job of :mod:`grec_tf.benchmarks.scale_jobs` in its own process tree, sampling its memory; the
    job's result with ``wall_seconds``, ``peak_tree_rss_mib``, ``max_single_rss_mib`` (``wait4``'s
    ``ru_maxrss``) and ``rss_samples``. A job whose processes pass ``rss_limit`` bytes of RSS is stopped: its
    entry then says so under ``stopped`` and has no result of the job's own."""
    result, log = work / f"{name}.json", work / f"{name}.log"
    measured = run_measured([sys.executable, *JOBS, job, "--result", str(result), *args, *_sets(overrides)],
                            str(log), env=_env(), cwd=str(ROOT), rss_limit_bytes=rss_limit)
    memory = {"wall_seconds": measured.seconds, "peak_tree_rss_mib": measured.peak_tree_rss_bytes / MIB,
              "max_single_rss_mib": measured.max_single_rss_bytes / MIB, "rss_samples": measured.samples}
    if measured.stopped_at_limit:
        return {"stopped": f"killed when its processes' RSS passed the limit of {rss_limit / MIB:,.0f} MiB", **memory}
    if measured.returncode != 0 or not result.exists():
        raise RuntimeError(f"scale job {name} failed (exit {measured.returncode}); end of {log}:\n{_tail(log)}")
    return {**json.loads(result.read_text()), **memory}


def _rates(run: Dict, card: Dict) -> Dict:
    """Input rows/s and impressions/s of a preprocessing run over the work's seconds."""
    rows, impressions = sum(card["splits"].values()), sum(card["impressions"].values())
    return {"rows_per_second": rows / run["seconds"], "impressions_per_second": impressions / run["seconds"]}


def measure_size(impressions: int, work: Path, overrides: Sequence[str], rss_limit: int) -> Dict:
    """Every preprocessing path on ``impressions`` generated impressions (outputs kept under ``work``); a path
    whose processes pass ``rss_limit`` bytes of RSS is stopped and has no rates."""
    folder = work / f"{impressions}"
    card = generate(impressions, folder / "data", overrides)
    size = list(overrides) + [f"data.rows={impressions}", f"data.path={folder / 'data'}"]
    paths = {}
    for name, (job, args) in PATHS.items():
        print(f"== scale: {name}, {impressions:,} impressions", flush=True)
        extra = ["--out", str(folder / name)] if job == "beam" else []
        run = measured_job(job, [*args, *extra], size, folder, name, rss_limit)
        paths[name] = run if "stopped" in run else {**run, **_rates(run, card)}
    return {"impressions": impressions, "input_rows": sum(card["splits"].values()), "splits": card["splits"],
            "paths": paths}


def shards_of(impressions: int, work: Path, overrides: Sequence[str]) -> Path:
    """The Beam output of ``impressions`` impressions: the preprocessing measurement's, or made now (untimed)."""
    folder = work / f"{impressions}"
    shards = folder / "beam_1_worker"
    if not (shards / "manifest.json").exists():
        generate(impressions, folder / "data", overrides)
        size = list(overrides) + [f"data.rows={impressions}", f"data.path={folder / 'data'}"]
        measured_job("beam", ["--workers", "1", "--out", str(shards)], size, folder, "beam_for_training")
    return shards


def measure_training(impressions: int, work: Path, overrides: Sequence[str], steps: int, rounds: int,
                     warmup: int) -> Dict:
    """Training examples/s from the shards vs from memory (:func:`scale_jobs.training_job`), same rows."""
    shards = shards_of(impressions, work, overrides)
    folder = work / f"{impressions}"
    size = list(overrides) + TRAIN_OVERRIDES + [f"data.rows={impressions}", f"data.path={folder / 'data'}"]
    print(f"== scale: training from shards vs memory, {impressions:,} impressions", flush=True)
    run = measured_job("training", ["--shards", str(shards), "--steps", str(steps), "--rounds", str(rounds),
                                    "--warmup", str(warmup)], size, folder, "training")
    samples = run["samples"]
    run["tfrecord_over_memory"] = statistics.median(t / m for t, m in zip(samples["tfrecord"], samples["memory"]))
    run["tfrecord_over_memory_rowwise"] = statistics.median(
        t / m for t, m in zip(samples["tfrecord"], samples["memory_rowwise"]))
    return {"impressions": impressions, **run}


def run_cluster(workers: int, shards: Path, work: Path, overrides: Sequence[str], steps: int, rounds: int) -> Dict:
    """Trains from ``shards`` on a cluster of ``workers`` processes (:func:`scale_jobs.worker_job`); the chief's
    result. Kills the workers and raises with their stderr when one fails or after CLUSTER_SECONDS."""
    logs = work / f"cluster_{workers}"
    logs.mkdir(parents=True, exist_ok=True)
    result = logs / "result.json"
    sets = list(overrides) + TRAIN_OVERRIDES + ["data.source=tfrecord", f"data.path={shards}",
                                                "train.distribution=multi_worker"]
    command = [*JOBS, "worker", "--result", str(result), "--steps", str(steps), "--rounds", str(rounds), *_sets(sets)]
    processes = start_workers(command, free_ports(workers), logs, ROOT)
    deadline = time.monotonic() + CLUSTER_SECONDS
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                tails = "\n".join(f"--- worker{i}.err\n{_tail(logs / f'worker{i}.err')}" for i in range(workers))
                raise RuntimeError(f"cluster of {workers}: {'a worker failed' if failed else 'timed out'}\n{tails}")
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    if any(p.returncode for p in processes):
        raise RuntimeError(f"cluster of {workers}: a worker failed\n{_tail(logs / 'worker0.err')}")
    return json.loads(result.read_text())


def measure_cluster(impressions: int, work: Path, overrides: Sequence[str], steps: int, rounds: int) -> Dict:
    """Examples/s (global) of 1 and 2 workers training from the same shards, and 2 over 1."""
    shards = shards_of(impressions, work, overrides)
    runs = {}
    for workers in CLUSTER_WORKERS:
        print(f"== scale: {workers}-worker cluster from the shards, {impressions:,} impressions", flush=True)
        runs[str(workers)] = run_cluster(workers, shards, work, overrides, steps, rounds)
    two_over_one = runs["2"]["examples_per_second"] / runs["1"]["examples_per_second"]
    return {"impressions": impressions, "workers": runs, "two_over_one": two_over_one}


def targets(sizes: List[Dict], training: Dict) -> Dict[str, Dict]:
    """The issue's targets, computed from the measured values."""
    factor = sizes[-1]["impressions"] / sizes[0]["impressions"]
    growths = memory_growth(sizes)
    out = {}
    for path, label in (("beam_1_worker", "1 worker"), ("beam_2_workers", "2 workers")):
        growth = growths[path]
        out[f"Beam ({label}) peak RSS at {factor:g}x the impressions <= {FLAT_LIMIT}x"] = {
            "value": growth, "limit": FLAT_LIMIT, "pass": bool(growth <= FLAT_LIMIT)}
    ratio = training["tfrecord_over_memory"]
    out[f"training examples/s from TFRecord shards >= {STREAMING_LIMIT}x in-memory"] = {
        "value": ratio, "limit": STREAMING_LIMIT, "pass": bool(ratio >= STREAMING_LIMIT)}
    return out


def memory_growth(sizes: List[Dict]) -> Dict[str, float]:
    """Peak RSS at the largest size / at the smallest, per preprocessing path."""
    return {path: sizes[-1]["paths"][path]["peak_tree_rss_mib"] / sizes[0]["paths"][path]["peak_tree_rss_mib"]
            for path in PATHS}


def _truthy(text: str) -> bool:
    return str(text).strip().lower() in ("1", "true", "yes", "on")


MEANING = [
    "- Rates divide the input rows (impressions) of all three splits by the seconds of the work inside the job's "
    "process (Python start and imports excluded). CPU seconds: the job's and its waited-for children's, imports "
    "included; on a loaded machine they say more about the cost than the wall seconds. Peak RSS is the largest "
    "sum of the resident memory of the job and every process below it, sampled every 0.2 s (a spike shorter than "
    "that can be missed); `max single` is `ru_maxrss` from `wait4`: exact, but of the largest single process, "
    "and at least the RSS of the benchmark's own process that started the job (Linux keeps the high-water mark "
    "across `exec`).",
    "- Beam's DirectRunner runs the pipeline on this machine: with 2 workers they are two Python processes taking "
    "bundles, not a cluster, and each starts its own Python, TensorFlow and Beam (a fixed cost that dominates small "
    "sizes). On 2 cores shared with other jobs a second worker cannot double the speed; the Beam numbers say what "
    "the pipeline costs per row, and the memory growth whether its memory follows the data (it reads, checks and "
    "writes chunks of 65,536 rows), which decides whether Flink, Spark or Dataflow can run the same pipeline on "
    "data of any size.",
    "- The pandas path holds every split as a frame and as arrays at once, so its memory is expected to grow "
    "with the rows; at small sizes the fixed memory of Python and TensorFlow hides that growth.",
    "- Training: one model, one Keras train function; the paths alternate in rounds so that load from other "
    "processes hits them alike. `memory` is `Experiment.dataset` (impressions encoded once per batch); the shards "
    "carry an impression key and are shuffled in blocks of consecutive rows, so they too encode an impression once "
    "per batch, except where a block boundary cuts it; `memory rowwise` feeds the same arrays without the key "
    "(every row encoded), the cost of training without impressions.",
    "- Workers: `MultiWorkerMirroredStrategy` over two processes on 127.0.0.1 of this 2-core machine, global batch "
    "fixed, the shards split between the workers as `pipelines.train` splits them: by file, or by data (each "
    "worker reads every shard and keeps its half of each batch) when the split has fewer shard files than workers, "
    "as a split that was one unit of Beam work is one file. The point is that it runs and "
    "trains correctly (tests/training/test_multi_worker.py checks the weights); a speed-up needs more cores or "
    "machines than this one has.",
]


def _preprocessing_table(sizes: List[Dict]) -> List[str]:
    lines = ["| path | impressions | input rows | seconds | CPU seconds | rows/s | impressions/s | "
             "peak RSS MiB (tree) | max single RSS MiB | train shards |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in sizes:
        for name, run in size["paths"].items():
            if "stopped" in run:
                speed = f"{run['stopped']} after {run['wall_seconds']:.0f} s | - | - | - "
            else:
                speed = (f"{run['seconds']:.1f} | {sum(run['cpu_seconds'].values()):.1f} | "
                         f"{run['rows_per_second']:,.0f} | {run['impressions_per_second']:,.0f} ")
            lines.append(f"| {name} | {size['impressions']:,} | {size['input_rows']:,} | {speed}| "
                         f"{run['peak_tree_rss_mib']:,.0f} | {run['max_single_rss_mib']:,.0f} | "
                         f"{run.get('train_shards', '-')} |")
    return lines


def markdown(report: Dict) -> str:
    """The tables, the targets, the machine and load, what the numbers mean, and the command."""
    sizes, training, cluster = report["preprocessing"], report["training"], report["cluster"]
    machine = report["machine"]
    rates = training["examples_per_second"]
    quick = " with the quick sizes" if report["options"]["quick"] else ""
    lines = ["# `scale` benchmark: Beam + TFRecord vs the in-memory pandas path", "",
             f"Telecom data, config `configs/telecom.yaml` (GRec, 8 experts, top-4){quick}. Machine: {machine['cpu']}, "
             f"{machine['cores']} cores, shared; load average (1/5/15 min) at start "
             f"{[round(v, 2) for v in machine['load_average_at_start']]}, at the end {report['load_average_end']}.",
             "", "## Preprocessing", ""] + _preprocessing_table(sizes)
    growth = ", ".join(f"{path} x{value:.2f}" + (" or more (stopped at the memory limit)" if any(
        "stopped" in size["paths"][path] for size in sizes) else "") for path, value in report["memory_growth"].items())
    lines += ["", f"Peak RSS growth from {sizes[0]['impressions']:,} to {sizes[-1]['impressions']:,} impressions: "
              f"{growth}.", "", "## Training examples/s", "",
              f"{training['impressions']:,} impressions ({training['train_rows']:,} training rows), batch "
              f"{training['batch_size']}, {training['rounds']} rounds of {training['steps']} steps per path after "
              f"{training['warmup_steps']} warm-up steps; medians over rounds.", "",
              "| path | examples/s |", "|---|---|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in rates.items()]
    lines += ["", f"TFRecord / memory: {training['tfrecord_over_memory']:.2f}x; TFRecord / memory rowwise: "
              f"{training['tfrecord_over_memory_rowwise']:.2f}x (medians of the per-round ratios).", "",
              "## 1 vs 2 workers (report only)", "",
              "| workers | replicas | examples/s (global) | optimizer steps | train shards | sharded by |",
              "|---|---|---|---|---|---|"]
    for workers, run in cluster["workers"].items():
        lines.append(f"| {workers} | {run['replicas']} | {run['examples_per_second']:,.0f} | "
                     f"{run['optimizer_steps']} | {run['train_shards']} | {run['sharding']} |")
    lines += ["", f"2 workers / 1 worker: {cluster['two_over_one']:.2f}x.", "", "## Targets", ""]
    for name, target in report["targets"].items():
        lines.append(f"- {name}: **{'pass' if target['pass'] else 'FAIL'}** (measured {target['value']:.2f}, "
                     f"limit {target['limit']})")
    lines += ["", "## What the numbers mean", ""] + MEANING
    lines += ["", "## Command", "", f"```bash\n{report['command']}\n```", ""]
    return "\n".join(lines)


def _command(options: Dict[str, str]) -> str:
    parts = ["python -m pipelines.benchmark scale --out benchmarks/results"]
    return " ".join(parts + [f"--option {key}={value}" for key, value in options.items()])


def run(out_dir: str, impressions: str = "1000000,4000000", train_impressions: str = "200000", steps: str = "30",
        rounds: str = "3", warmup: str = "5", cluster_steps: str = "20", quick: str = "0", work_dir: str = "",
        max_rss_gib: str = "") -> Dict:
    """Measures preprocessing at each size, training from shards vs memory and 1 vs 2 workers; writes
    ``scale.json`` / ``scale.md`` into ``out_dir``. ``quick``: tiny sizes and model (for tests); ``work_dir``:
    where the data and outputs go (a temporary folder inside it, removed at the end); ``max_rss_gib``: a
    preprocessing job past this much RSS is stopped (default: RSS_LIMIT_SHARE of the memory available at the
    start, at least RSS_LIMIT_FLOOR_GIB), so that the pandas path at a size this machine cannot hold is a finding,
    not an OOM kill of anything."""
    given = dict(impressions=impressions, train_impressions=train_impressions, steps=steps, rounds=rounds,
                 warmup=warmup, cluster_steps=cluster_steps)
    options = {**given, **(QUICK if _truthy(quick) else {})}
    if _truthy(quick):
        options["cluster_steps"] = QUICK["steps"]
    overrides = list(QUICK_OVERRIDES) if _truthy(quick) else []
    sizes = sorted(int(n) for n in options["impressions"].split(","))
    if len(sizes) < 2:
        raise ValueError(f"option impressions: expected at least two sizes, got {impressions!r}")
    machine = machine_description()
    rss_limit = int(float(max_rss_gib) * GIB) if max_rss_gib else \
        max(int(RSS_LIMIT_SHARE * available_memory_bytes()), RSS_LIMIT_FLOOR_GIB * GIB)
    machine["rss_limit_mib"] = rss_limit / MIB
    with tempfile.TemporaryDirectory(prefix="grec-scale-", dir=work_dir or None) as tmp:
        work = Path(tmp)
        measured = [measure_size(n, work, overrides, rss_limit) for n in sizes]
        train_size, steps_, rounds_ = int(options["train_impressions"]), int(options["steps"]), int(options["rounds"])
        training = measure_training(train_size, work, overrides, steps_, rounds_, int(options["warmup"]))
        cluster = measure_cluster(train_size, work, overrides, int(options["cluster_steps"]), rounds_)
    report = {"options": {**options, "quick": _truthy(quick)}, "overrides": overrides + TRAIN_OVERRIDES,
              "preprocessing": measured, "memory_growth": memory_growth(measured), "training": training,
              "cluster": cluster, "targets": targets(measured, training), "machine": machine,
              "load_average_end": [round(v, 2) for v in os.getloadavg()],
              "command": _command({"quick": "1"} if _truthy(quick) else given)}
    write_report(out_dir, "scale", report, markdown(report))
    return report
