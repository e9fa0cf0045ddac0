"""The measured jobs of the ``scale`` benchmark (:mod:`grec_tf.benchmarks.scale`), one process each, so that each
one's memory is its own:

    python -m grec_tf.benchmarks.scale_jobs JOB --result FILE [--set key=value ...] [job options]

- ``beam --out DIR --workers W``: the Beam preprocessing pipeline (``pipelines.preprocess``) on the DirectRunner,
  in-process (W = 1) or with W worker processes (``--direct_running_mode=multi_processing``);
- ``pandas``: the in-memory path: the splits read and validated with pandas (``load_splits``), the training
  statistics (``compute_feature_statistics``) and every split's model-input arrays (``frame_to_arrays``), all
  held at the end as an ``Experiment`` holds them;
- ``training --shards DIR --steps S --rounds R``: training steps of one model fed from the in-memory arrays and
  from the TFRecord shards of the same rows, timed in alternating rounds;
- ``worker --steps S --rounds R``: one worker of a local ``MultiWorkerMirroredStrategy`` cluster (``TF_CONFIG``
  in the environment) training from the shards; the chief writes the result.

The config is ``configs/telecom.yaml`` with the ``--set`` overrides (the data folder, its size, quick sizes). Each
job writes a JSON object to ``--result``: what it did, the seconds of its work (interpreter start and imports
excluded), and the ``ru_maxrss`` (KiB) and CPU seconds of itself and of its waited-for children.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import grec_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)
from grec_tf.config import ExperimentConfig, load_config

CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "telecom.yaml"


def beam_job(config: ExperimentConfig, out: str, workers: int) -> Dict:
    """Runs the preprocessing pipeline into ``out``; rows per split and the training shards written."""
    import tensorflow_transform.beam  # noqa: F401  (loads tf.Transform and tfx-bsl before the clock starts)
    from grec_tf.data.tfrecord_source import reading_config, shard_files
    from grec_tf.preprocessing.pipeline import run_preprocessing

    beam_args = [] if workers == 1 else [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    started = time.perf_counter()
    manifest = run_preprocessing(config, out, beam_args)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": manifest["rows"],
            "train_shards": len(shard_files(reading_config(config, out), "train"))}


def pandas_job(config: ExperimentConfig) -> Dict:
    """The in-memory path: frames, statistics and arrays of every split, all held until the end."""
    import grec_tf.text  # noqa: F401  (loads tensorflow-text, for the WordPiece vocabulary, before the clock starts)
    from grec_tf.data.feature_arrays import frame_to_arrays
    from grec_tf.data.feature_statistics import compute_feature_statistics
    from grec_tf.data.sources import load_splits

    started = time.perf_counter()
    frames = load_splits(config)
    statistics_ = compute_feature_statistics(frames["train"], config)
    arrays = {split: frame_to_arrays(frame, config) for split, frame in frames.items()}
    seconds = time.perf_counter() - started
    held = sum(a.nbytes for split in arrays.values() for a in split.values())  # object arrays: pointers only
    return {"seconds": seconds, "rows": {split: len(frame) for split, frame in frames.items()},
            "vocabularies": len(statistics_.vocabularies), "array_bytes": held}


def _timed_steps(train_function: Callable, iterator, steps: int) -> float:
    """Seconds of ``steps`` training steps, each taking its batch from ``iterator`` (input included)."""
    started = time.perf_counter()
    for _ in range(steps):
        logs = train_function(iterator)
    float(logs["loss"])  # read back: the last step has finished
    return time.perf_counter() - started


def training_job(config: ExperimentConfig, shards: str, steps: int, rounds: int, warmup: int) -> Dict:
    """Examples/s of one model's training steps fed by each input path (same rows, batch and model), timed in
    ``rounds`` rounds of ``steps`` steps per path after ``warmup`` steps each (tracing, shuffle-buffer fill); the
    path order alternates between rounds so that load from other processes hits the paths alike.

    Paths: ``tfrecord`` (the shards, streamed), ``memory`` (``Experiment.dataset``: numpy arrays, impressions
    encoded once per batch; the shards' ``impression_key`` does the same for ``tfrecord``), ``memory_rowwise``
    (the same arrays without ``impression_key``: every row encoded, what training without impressions costs)."""
    from grec_tf.data.dataset import make_dataset
    from grec_tf.data.feature_arrays import IMPRESSION_KEY
    from grec_tf.data.tfrecord_source import reading_config
    from grec_tf.experiment import Experiment

    memory, streamed = Experiment(config), Experiment(reading_config(config, shards))
    d = config.data
    rowwise = {k: v for k, v in memory.arrays("train").items() if k != IMPRESSION_KEY}
    datasets = {"tfrecord": streamed.dataset("train", shuffle=True).repeat(),
                "memory": memory.dataset("train", shuffle=True).repeat(),
                "memory_rowwise": make_dataset(rowwise, d.batch_size, shuffle=True, shuffle_buffer=d.shuffle_buffer,
                                               seed=d.seed, repeat=True)}
    train_function = memory.build_model().make_train_function()
    iterators = {name: iter(dataset) for name, dataset in datasets.items()}
    for iterator in iterators.values():
        _timed_steps(train_function, iterator, warmup)
    seconds: Dict[str, List[float]] = {name: [] for name in iterators}
    for round_ in range(rounds):
        for name in (list(iterators) if round_ % 2 == 0 else list(iterators)[::-1]):
            seconds[name].append(_timed_steps(train_function, iterators[name], steps))
    rates = {name: [steps * d.batch_size / s for s in values] for name, values in seconds.items()}
    return {"seconds": sum(sum(v) for v in seconds.values()), "train_rows": len(rowwise["label"]),
            "batch_size": d.batch_size, "steps": steps, "rounds": rounds, "warmup_steps": warmup,
            "examples_per_second": {name: statistics.median(values) for name, values in rates.items()},
            "samples": rates}


def worker_job(config: ExperimentConfig, steps: int, rounds: int) -> Optional[Dict]:
    """One cluster worker: ``1 + rounds`` epochs of ``steps`` global batches from the shards (the first epoch
    traces and fills the shuffle buffer, untimed), sharded as ``pipelines.train`` shards them. The chief's
    result (global examples/s: every replica's rows); None on the other workers."""
    from grec_tf.benchmarks.throughput import TrainingPhaseTimer
    from grec_tf.data.tfrecord_source import shard_files
    from grec_tf.experiment import Experiment
    from grec_tf.training import distribution

    experiment = Experiment(config)
    strategy = experiment.strategy  # first: joins the cluster before other TensorFlow work
    distribution.check_global_batch(config.data.batch_size, strategy)
    model = experiment.build_model(strategy)
    files = len(shard_files(config, "train"))
    data = distribution.shard_policy(experiment.dataset("train", shuffle=True), config.data.source, files).repeat()
    timer = TrainingPhaseTimer()
    started = time.perf_counter()
    model.fit(data, epochs=1 + rounds, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    timed = timer.epoch_seconds[1:]
    if not distribution.is_chief(strategy):
        return None
    return {"seconds": time.perf_counter() - started, "replicas": strategy.num_replicas_in_sync, "train_shards": files,
            "sharding": data.options().experimental_distribute.auto_shard_policy.name.lower(),
            "batch_size": config.data.batch_size, "steps": steps, "rounds": rounds,
            "examples_per_second": steps * config.data.batch_size * len(timed) / sum(timed),
            "optimizer_steps": int(model.optimizer.iterations.numpy())}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grec_tf.benchmarks.scale_jobs", description=__doc__.split("\n")[0])
    parser.add_argument("job", choices=("beam", "pandas", "training", "worker"))
    parser.add_argument("--result", required=True, help="JSON file the job's result is written to")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="beam: the output folder")
    parser.add_argument("--workers", type=int, default=1, help="beam: DirectRunner worker processes")
    parser.add_argument("--shards", help="training: the preprocessed folder of the same rows")
    parser.add_argument("--steps", type=int, default=20, help="training, worker: timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="training, worker: timed rounds")
    parser.add_argument("--warmup", type=int, default=5, help="training: untimed steps per path first")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_config(str(CONFIG_PATH), args.overrides)
    jobs = {"beam": lambda: beam_job(config, args.out, args.workers), "pandas": lambda: pandas_job(config),
            "training": lambda: training_job(config, args.shards, args.steps, args.rounds, args.warmup),
            "worker": lambda: worker_job(config, args.steps, args.rounds)}
    result = jobs[args.job]()
    if result is not None:
        usage = {who: resource.getrusage(kind) for who, kind in (("self", resource.RUSAGE_SELF),
                                                                  ("children", resource.RUSAGE_CHILDREN))}
        result["ru_maxrss_kib"] = {who: u.ru_maxrss for who, u in usage.items()}
        # CPU seconds of the whole process (imports included): what a quiet machine's wall time is bounded by
        result["cpu_seconds"] = {who: u.ru_utime + u.ru_stime for who, u in usage.items()}
        Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
