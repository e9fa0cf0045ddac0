"""python -m pipelines.evaluate --run DIR [--set k=v ...] [--split test]

Scores a split of the run's data (as its config.yaml describes it, with any --set applied) with the
run's final weights and prints AUC, AP, GAUC and logloss per task sentence (next to the oracle's when the
data has one).
"""
import argparse
import sys

from grec_tf.errors import GRecError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.split("\n\n")[1])
    parser.add_argument("--run", required=True, help="folder written by pipelines.train --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the run's data config, e.g. --set data.path=other/")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--json", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    try:
        from grec_tf.atomic_files import write_json_atomic
        from grec_tf.config import apply_overrides, parse_config
        from grec_tf.experiment import Experiment, load_run
        from grec_tf.metrics.report import metrics_table

        experiment, model = load_run(args.run)
        if args.overrides:
            config = parse_config(apply_overrides(experiment.config.to_dict(), args.overrides), source="--set")
            experiment = Experiment(config, data_dir=experiment.data_dir, statistics=experiment.statistics)
        report = experiment.evaluate(model, args.split)
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(metrics_table(report["test"], report.get("oracle")))
    if args.json:
        write_json_atomic(args.json, {args.split: report["test"], "oracle": report.get("oracle")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
