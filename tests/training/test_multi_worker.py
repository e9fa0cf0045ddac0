"""Training under ``tf.distribute``: a real two-worker gRPC cluster on 127.0.0.1, one worker being killed, and
MirroredStrategy on this machine's one CPU device.

Each cluster worker is a fresh Python process (``tests/training/multi_worker_script.py`` or
``python -m pipelines.train``) with its own ``TF_CONFIG``; every wait is bounded and a failing test kills its
workers. Slow by nature: a worker imports TensorFlow and traces the model (15-20 s of CPU), and the file runs
six of them plus three in-process trainings: about 190 s of CPU in all, measured 2:00 on an idle 2-core machine
and 9:40 at load 6-10. The two cluster tests are the slow ones (40-55 s each when idle).

The model is the tiny experiment without its text and sequence features (they add tracing time and no
distribution-specific code), ``load_balance_weight`` 0: the load-balance loss is a product of two batch means,
so its value on half a batch is not half its value on the whole batch, and a two-worker run could not equal a
one-worker run with it; every other part of the loss splits exactly over replicas.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import tensorflow as tf
import yaml

import grec_tf  # noqa: F401
from grec_tf.config import load_config, parse_config
from grec_tf.data.dataset import make_dataset
from grec_tf.data.feature_arrays import frame_to_arrays
from grec_tf.errors import ConfigError
from grec_tf.experiment import Experiment
from grec_tf.training import distribution
from grec_tf.training.local_cluster import free_ports, start_workers, worker_tf_config
from pipelines import train as train_cli
from tests.tiny_experiment import tiny_config, tiny_frame
from tests.training.multi_worker_script import seeded_train

ROOT = Path(__file__).resolve().parents[2]
ROUTINGS = ("task_sentence", "token")
STEPS = 2 * 640 // 64  # 2 epochs of 640 rows in global batches of 64
#: max |difference| of a weight or Adam slot between the two-worker and the one-worker run after STEPS steps at
#: learning rate 0.01. Most differ by < 1e-6 (float32 all-reduce order); a few biases whose true gradient is zero
#: (the attention key bias: softmax ignores it) move by Adam's lr * noise / (|noise| + eps), up to ~1e-4.
WEIGHT_TOLERANCE = 1e-4
#: checkpoint entries that are Keras metric state (each worker's own counts), not weights or optimizer state
METRIC_STATE = ("_ranking_metrics/", "use_case_losses/", "task_loss/")
WAIT_SECONDS = 600  # per cluster phase; a healthy phase takes 30-120 s, a hung collective never ends


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """The config file of the tiny experiment (parquet splits of 640 / 256 / 384 rows)."""
    root = tmp_path_factory.mktemp("tiny")
    for split, (rows, seed) in {"train": (640, 0), "valid": (256, 1), "test": (384, 2)}.items():
        tiny_frame(rows, seed).to_parquet(root / f"{split}.parquet")
    config = tiny_config(load_balance_weight=0.0)
    config.data.path = str(root)
    config.features = [f for f in config.features if f.kind not in ("text", "sequence")]
    config.train.checkpoint_every = 4
    config.train.early_stopping_patience = 5
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return str(path)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> Dict[str, str]:
    """routing -> run folder of the uninterrupted one-worker run (default strategy, in this process)."""
    root = tmp_path_factory.mktemp("reference")
    runs = {routing: str(root / routing) for routing in ROUTINGS}
    for routing, out in runs.items():
        seeded_train(tiny, out, [f"model.routing={routing}"])
    return runs


# ---- a local cluster ------------------------------------------------------------------------------------------
def start_cluster(command: Sequence[str], ports: Sequence[int], logs: Path,
                  extra_args: Optional[Dict[int, Sequence[str]]] = None) -> List[subprocess.Popen]:
    """One process per port running ``command`` (+ ``extra_args`` of its index) from the repository root, each
    with its TF_CONFIG, its own TMPDIR and log files under ``logs``."""
    return start_workers(command, ports, logs, ROOT, extra_args)


def kill(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def wait_until(condition, processes: Sequence[subprocess.Popen], logs: Path, what: str) -> None:
    """Polls ``condition`` until it holds; kills the cluster and fails (with the workers' stderr) when a worker
    exits with an error first or after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        failed = [p for p in processes if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            kill(processes)
            tails = "\n".join(f"--- worker{i}.err\n{(logs / f'worker{i}.err').read_text()[-3000:]}"
                              for i in range(len(processes)))
            pytest.fail(f"{what}: {'a worker failed' if failed else f'not after {WAIT_SECONDS} s'}\n{tails}")
        time.sleep(0.5)


def run_cluster(command: Sequence[str], logs: Path, workers: int = 2) -> List[str]:
    """Runs ``command`` on a fresh cluster to completion; the workers' stdout."""
    processes = start_cluster(command, free_ports(workers), logs)
    try:
        wait_until(lambda: all(p.poll() == 0 for p in processes), processes, logs, "cluster run")
    finally:
        kill(processes)
    return [(logs / f"worker{i}.out").read_text() for i in range(workers)]


def checkpoint_values(prefix: str) -> Dict[str, np.ndarray]:
    """The weights and optimizer state of a ``save_weights`` checkpoint, by checkpoint key."""
    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH" and not any(part in key for part in METRIC_STATE)}


def assert_written_by_chief_only(out: str, logs: Path) -> None:
    """The run folder holds no worker's temporary folder (Keras' ``workertemp_N``), and the temporary run
    folders of the workers (``grec_worker*`` in their TMPDIR) are gone."""
    assert not list(Path(out).rglob("*workertemp*"))
    assert not list(logs.glob("tmp*/grec_worker*"))


# ---- tests ----------------------------------------------------------------------------------------------------
def test_two_workers_equal_one_worker_with_the_global_batch(tiny, reference, tmp_path):
    out = tmp_path / "cluster"
    command = ["-m", "tests.training.multi_worker_script", "--config", tiny, "--out", str(out),
               "--set", "train.distribution=multi_worker", *[arg for r in ROUTINGS for arg in ("--routing", r)]]
    printed = run_cluster(command, tmp_path / "logs")
    assert "chief True" in printed[0] and "chief False" in printed[1]
    for routing in ROUTINGS:
        single = checkpoint_values(os.path.join(reference[routing], "checkpoints", "final"))
        multi = checkpoint_values(str(out / routing / "checkpoints" / "final"))
        assert set(multi) == set(single) and len(single) > 50
        assert int(multi["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == STEPS
        worst = max((float(np.max(np.abs(multi[k] - single[k]), initial=0.0)), k) for k in single)
        assert worst[0] <= WEIGHT_TOLERANCE, f"{routing}: {worst}"
        # the chief's report: the same predictions, so the same test metrics
        metrics = json.loads((out / routing / "metrics.json").read_text())
        expected = json.loads(Path(reference[routing], "metrics.json").read_text())
        assert metrics["train"]["steps"] == expected["train"]["steps"] == STEPS
        for key, entry in expected["test"].items():
            assert metrics["test"][key]["auc"] == pytest.approx(entry["auc"], abs=1e-3), (routing, key)
        assert any(name.startswith("events") for name in os.listdir(out / routing / "logs" / "train"))
        assert_written_by_chief_only(str(out / routing), tmp_path / "logs")


def test_killed_worker_and_restarted_cluster_resume_from_the_backup(tiny, reference, tmp_path):
    out, logs, marker = tmp_path / "run", tmp_path / "logs", tmp_path / "hung"
    script = ["-m", "tests.training.multi_worker_script", "--config", tiny, "--out", str(out),
              "--set", "train.distribution=multi_worker"]
    # worker 1 stops at step 14 (epoch 2, batch 4): the last backup (every 4 steps) is step 12's, and the chief
    # finished writing it before joining step 13
    processes = start_cluster(script, free_ports(2), logs, {1: ["--hang-at", "14", "--marker", str(marker)]})
    try:
        wait_until(marker.exists, processes, logs, "worker 1 reaching step 14")
        processes[1].send_signal(signal.SIGKILL)  # the killed worker
    finally:
        kill(processes)  # the scheduler restarts the whole cluster
    assert (out / "backup" / "chief").is_dir() and not (out / "metrics.json").exists()

    command = ["-m", "pipelines.train", "--config", tiny, "--set", "train.distribution=auto", "--out", str(out),
               "--verbose", "0"]
    printed = run_cluster(command, tmp_path / "restart")
    metrics = json.loads((out / "metrics.json").read_text())
    uninterrupted = json.loads(Path(reference["task_sentence"], "metrics.json").read_text())
    assert metrics["train"]["steps"] == uninterrupted["train"]["steps"] == STEPS
    assert metrics["train"]["steps_this_run"] == STEPS - 12  # resumed at the backup, not from scratch
    assert "| AAL/CTR |" in printed[0] and "worker done (20 steps)" in printed[1]
    assert (out / "exports" / "grec" / "1" / "saved_model.pb").is_file()
    assert not (out / "backup").exists() or not any((out / "backup").rglob("*.index"))
    assert_written_by_chief_only(str(out), tmp_path / "restart")


def test_mirrored_on_one_device_trains(tiny, tmp_path):
    config = load_config(tiny, ["train.distribution=mirrored", "model.routing=token", "train.epochs=1"])
    experiment = Experiment(config)
    run = experiment.train(str(tmp_path / "run"), verbose=0)
    assert isinstance(experiment.strategy, tf.distribute.MirroredStrategy)
    assert run.model.distribute_strategy is experiment.strategy and run.chief
    assert run.metrics["train"]["steps"] == STEPS // 2
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert np.isfinite(run.history["loss"]).all()


def test_unchosen_experts_get_zero_gradients_not_none(tiny):
    """One task sentence routes every row to the same k of E experts: under the strategy every variable still
    gets a gradient (an all-reduce needs one from every replica), dense for the expert weights, zero for the
    experts no row chose."""
    config = load_config(tiny, ["train.distribution=mirrored"])
    experiment = Experiment(config)
    model = experiment.build_model()
    frame = experiment.splits["train"]
    rows = frame[(frame["flow"] == "AAL") & (frame["use_case"] == "CTR")]
    batch = next(iter(make_dataset(frame_to_arrays(rows, config), 64)))

    def replica_step(batch):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True) + tf.add_n(model.losses)
        return tape.gradient(loss, model.trainable_variables), model(batch)["routing"]

    gradients, routing = tf.function(lambda b: experiment.strategy.run(replica_step, args=(b,)))(batch)
    assert all(g is not None for g in gradients)
    chosen = routing.numpy().sum(axis=0) > 0  # [E]
    assert chosen.sum() == config.model.top_k
    experts = {v.name: g for v, g in zip(model.trainable_variables, gradients) if "/experts/" in v.name}
    assert len(experts) == 4  # kernel_in, bias_in, kernel_out, bias_out
    for name, gradient in experts.items():
        assert isinstance(gradient, tf.Tensor), f"{name}: {type(gradient).__name__}"
        per_expert = np.abs(gradient.numpy()).reshape(len(chosen), -1).sum(axis=1)
        assert (per_expert[~chosen] == 0).all() and (per_expert[chosen] > 0).all(), (name, per_expert)


def test_distribution_is_validated_with_its_key(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"train\.distribution: expected one of \['none', 'mirrored', "
                                          r"'multi_worker', 'auto'\], got 'gpus'"):
        parse_config({"train": {"distribution": "gpus"}})
    assert train_cli.main(["--config", tiny, "--set", "train.distribution=gpus", "--out", str(tmp_path)]) == 2
    assert "train.distribution" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"data\.batch_size: 63 rows do not split evenly over the 2 replicas"):
        distribution.check_global_batch(63, SimpleNamespace(num_replicas_in_sync=2))


def test_auto_reads_the_cluster_from_tf_config():
    two = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})
    one = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}})
    assert distribution.resolve_distribution("auto", {"TF_CONFIG": two}) == "multi_worker"
    assert distribution.resolve_distribution("auto", {"TF_CONFIG": chief}) == "multi_worker"
    assert distribution.resolve_distribution("auto", {"TF_CONFIG": one}) == "none"
    assert distribution.resolve_distribution("auto", {}) == "none"
    assert distribution.resolve_distribution("mirrored", {"TF_CONFIG": two}) == "mirrored"
    with pytest.raises(ConfigError, match="TF_CONFIG: expected a JSON object"):
        distribution.resolve_distribution("auto", {"TF_CONFIG": "{worker: a:1}"})


def test_shards_split_by_file_only_when_every_worker_gets_one(monkeypatch):
    """tf.data fails at the first batch when FILE sharding has fewer files than workers (a small split is often
    one shard file): such a split is sharded by DATA instead."""
    monkeypatch.setenv("TF_CONFIG", worker_tf_config([1, 2], 0))
    data = tf.data.Dataset.range(4)

    def policy(source, files=None):
        return distribution.shard_policy(data, source, files).options().experimental_distribute.auto_shard_policy

    shard = tf.data.experimental.AutoShardPolicy
    assert policy("tfrecord") == policy("tfrecord", 2) == policy("tfrecord", 3) == shard.FILE
    assert policy("tfrecord", 1) == shard.DATA
    assert policy("parquet") == policy("parquet", 5) == shard.DATA
