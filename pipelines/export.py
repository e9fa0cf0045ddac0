"""python -m pipelines.export --run DIR [--export_dir D] [--version N]

Exports a finished training run as a TF Serving SavedModel at {export_dir}/{model name}/{version} (next
version by default), written to a temporary folder and renamed into place. Without --export_dir, the
run config's export.export_dir is used, relative to DIR when relative (as pipelines.train does).
"""
import argparse
import sys

from grec_tf.errors import GRecError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.export", description=__doc__.split("\n\n")[1])
    parser.add_argument("--run", required=True, help="folder written by pipelines.train --out")
    parser.add_argument("--export_dir", default=None,
                        help="default: the run config's export.export_dir (relative to --run)")
    parser.add_argument("--version", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        from grec_tf.experiment import load_run
        from grec_tf.training.run_folder import resolve_export_dir

        experiment, model = load_run(args.run)
        print(experiment.export(model, resolve_export_dir(experiment.config, args.run, args.export_dir),
                                args.version))
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
