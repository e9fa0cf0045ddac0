"""python -m pipelines.export --run DIR [--export_dir D] [--version N]

Exports a finished training run as a TF Serving SavedModel at {export_dir}/{model_name}/{version}
(next version by default), written to a temporary folder and renamed into place.
"""
import argparse
import sys

import grec_tf  # noqa: F401
from grec_tf.errors import GRecError
from grec_tf.serving.signatures import export_model
from grec_tf.training.run_folder import load_run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.export", description=__doc__.split("\n\n")[1])
    parser.add_argument("--run", required=True, help="folder written by pipelines.train --out")
    parser.add_argument("--export_dir", default=None, help="default: the run config's export.export_dir")
    parser.add_argument("--version", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        config, model = load_run(args.run)
        print(export_model(model, config, args.export_dir or config.export.export_dir, args.version))
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
