"""python -m pipelines.train --config configs/telecom.yaml [--set k=v ...] --out DIR

Builds the data, trains with model.fit (TensorBoard logs, checkpoints, resume), evaluates on the
test split, writes DIR/metrics.json, prints each task sentence's AUC next to the oracle's, and
exports the SavedModel to {export.export_dir}/{export.model_name}/{version} (a relative export_dir
is taken relative to DIR).
"""
import argparse
import os
import sys

import grec_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
from grec_tf.config import add_config_arguments, config_from_args
from grec_tf.data.sources import load_splits
from grec_tf.errors import GRecError
from grec_tf.metrics.report import metrics_table
from grec_tf.serving.signatures import export_model
from grec_tf.training.trainer import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.split("\n\n")[1])
    add_config_arguments(parser)
    parser.add_argument("--out", default="runs/latest", help="run folder (resumes if it holds a backup)")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    parser.add_argument("--verbose", type=int, default=1, help="Keras fit verbosity (0, 1, 2)")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        splits = load_splits(config, default_dir=os.path.join(args.out, "data"))
        run = train(config, args.out, splits, verbose=args.verbose)
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m = run.metrics
    print(f"\n{config.name}: {m['model']['type']} routing={m['model']['routing']} experts={m['model']['experts']} "
          f"top_k={m['model']['top_k']} params={m['model']['params']:,}; {m['train']['steps']} steps in "
          f"{m['train']['seconds']:.0f}s")
    print(metrics_table(m["test"], m.get("oracle")))
    print(f"metrics: {os.path.join(args.out, 'metrics.json')}")
    if not args.no_export:
        export_dir = config.export.export_dir
        if not os.path.isabs(export_dir):
            export_dir = os.path.join(args.out, export_dir)
        print(f"exported: {export_model(run.model, config, export_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
