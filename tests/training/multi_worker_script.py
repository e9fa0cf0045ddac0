"""One worker of a test cluster, with its ``TF_CONFIG`` in the environment:

    python -m tests.training.multi_worker_script --config C --out DIR [--set k=v] [--routing R ...]
        [--hang-at STEP --marker FILE]

Trains like ``pipelines.train`` (``Experiment.train``, no export) after seeding TensorFlow with ``data.seed``, so
a run's initial weights are those of any other run seeded the same way. With ``--routing`` (repeatable) it
trains one run per routing, into ``DIR/ROUTING``, one after the other in this process. ``--hang-at`` makes this
worker stop making progress once the optimizer has run STEP steps (after that step's backup): it writes
``--marker`` and sleeps, so a test can SIGKILL it at a known point of training instead of racing a running one.
"""
import argparse
import os
import sys
import time
from typing import Optional, Sequence

import grec_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow loads)
import tensorflow as tf

from grec_tf.config import load_config
from grec_tf.experiment import Experiment
from grec_tf.training.trainer import TrainingRun


class HangAt(tf.keras.callbacks.Callback):
    """Blocks the process at the end of the batch where the optimizer reaches ``step`` (placed after
    ``BackupAndRestore``, so that step's backup is written first)."""

    def __init__(self, step: int, marker: str):
        super().__init__()
        self.step, self.marker = step, marker

    def on_train_batch_end(self, batch, logs=None) -> None:
        steps = int(self.model.optimizer.iterations.numpy())
        if steps >= self.step:
            with open(self.marker, "w", encoding="utf-8") as handle:
                handle.write(str(steps))
            while True:  # until the test kills this process
                time.sleep(1)


def seeded_train(config_path: str, out: str, overrides: Sequence[str] = (),
                 callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> TrainingRun:
    """``Experiment.train`` of the config with the overrides, TensorFlow seeded with ``data.seed`` first."""
    config = load_config(config_path, overrides)
    tf.keras.utils.set_random_seed(config.data.seed)
    return Experiment(config).train(out, callbacks=callbacks, verbose=0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--routing", dest="routings", action="append", default=[])
    parser.add_argument("--hang-at", type=int, default=0)
    parser.add_argument("--marker", default="")
    args = parser.parse_args(argv)
    callbacks = [HangAt(args.hang_at, args.marker)] if args.hang_at else []
    runs = {routing: (os.path.join(args.out, routing), [f"model.routing={routing}"]) for routing in args.routings}
    for out, overrides in runs.values() or [(args.out, [])]:
        run = seeded_train(args.config, out, args.overrides + overrides, callbacks)
        print(f"{out}: steps {run.metrics['train']['steps']}, chief {run.chief}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
