"""python -m pipelines.train --config configs/telecom.yaml [--set k=v ...] --out DIR

Builds the data, trains with model.fit (TensorBoard logs, checkpoints, resume), evaluates on the test
split, writes DIR/metrics.json, prints each task sentence's metrics (next to the oracle's when the data
has one), and exports the SavedModel to {export.export_dir}/{model name}/{version} (a relative export_dir
is taken relative to DIR; the model name defaults to model.type).

With train.distribution multi_worker (or auto and a TF_CONFIG naming several workers) every worker runs this
same command with its own TF_CONFIG; the chief writes DIR and the export and prints the report.
"""
import argparse
import os
import sys

from grec_tf.config import add_config_arguments, config_from_args
from grec_tf.errors import GRecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.split("\n\n")[1])
    add_config_arguments(parser)
    parser.add_argument("--out", default="runs/latest", help="run folder (resumes if it holds a backup)")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--verbose", type=int, default=1, help="Keras fit verbosity (0, 1, 2)")
    return parser


def summary_line(name: str, metrics: dict) -> str:
    """``NAME: grec (routing task_sentence, experts 8, top_k 4), 123,456 params; 800 steps in 95 s``."""
    model = dict(metrics["model"])
    kind, params = model.pop("type"), model.pop("params")
    details = ", ".join(f"{key} {value}" for key, value in model.items())
    t = metrics["train"]
    return (f"{name}: {kind}{f' ({details})' if details else ''}, {params:,} params; {t['steps']} steps in "
            f"{t['seconds']:.0f} s ({t['examples_per_second']:,.0f} rows/s)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)  # config errors answer before TensorFlow loads
        from grec_tf.experiment import Experiment
        from grec_tf.metrics.report import metrics_table
        from grec_tf.training.distribution import writable_dir
        from grec_tf.training.run_folder import resolve_export_dir

        experiment = Experiment(config, data_dir=os.path.join(args.out, "data"))
        strategy = experiment.strategy  # a multi-worker strategy joins its cluster before TensorFlow runs anything
        experiment.splits  # noqa: B018  (read the data now, to say what was read before training)
        print(experiment.data.description)
        ignored = experiment.unapplied_keys()
        if ignored:
            print(f"not applied (no effect with these settings): {', '.join(ignored)}")
        run = experiment.train(args.out, verbose=args.verbose)
        exported = None
        if not args.no_export:  # every worker exports (saving is collective); only the chief's is kept
            with writable_dir(resolve_export_dir(config, args.out), strategy) as export_dir:
                exported = experiment.export(run.model, export_dir)
        if not run.chief:
            print(f"\nworker done ({run.metrics['train']['steps']} steps); the chief writes {args.out}")
            return 0
        print(f"\n{summary_line(config.name, run.metrics)}")
        print(metrics_table(run.metrics["test"], run.metrics.get("oracle")))
        print(f"metrics: {os.path.join(args.out, 'metrics.json')}")
        if exported:
            print(f"exported: {exported}")
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
