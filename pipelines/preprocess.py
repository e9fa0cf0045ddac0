"""python -m pipelines.preprocess --config configs/X.yaml --out DIR [--dead_letter DIR2] [beam options]

Runs the Beam preprocessing pipeline (tf.Transform on tfx-bsl): reads the train / valid / test long tables of
the config's data (a csv / parquet folder with the three files, or the telecom generator's folder), validates
every row with the in-memory path's messages, and writes DIR/{train,valid,test}/part-*.tfrecord.gz
(tf.Example of raw values and an impression_key, each impression's rows together), DIR/transform_output,
DIR/schema.pbtxt, DIR/statistics.json and DIR/manifest.json.
Train from it with --set data.source=tfrecord --set data.path=DIR.

Any other option goes to Beam unchanged: DirectRunner by default, --direct_num_workers=2
--direct_running_mode=multi_processing for a parallel local run, --runner=FlinkRunner / SparkRunner /
DataflowRunner with their own options on a cluster (docs/data.md lists the commands).
"""
import argparse
import sys

from grec_tf.config import add_config_arguments, config_from_args
from grec_tf.errors import GRecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.preprocess", description=__doc__.split("\n\n")[1],
                                     epilog="Unknown options are Beam pipeline options, passed on unchanged.")
    add_config_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder (its earlier outputs are replaced)")
    parser.add_argument("--dead_letter", default=None,
                        help="folder for rejected rows ({split}-*.jsonl); without it the first bad row fails the run")
    parser.add_argument("--data_dir", default=None,
                        help="telecom: where the generated data lives when data.path is unset (default: OUT/raw)")
    return parser


def main(argv=None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    try:
        config = config_from_args(args)  # config errors answer before TensorFlow and Beam load
        import os

        from grec_tf.preprocessing.pipeline import run_preprocessing

        manifest = run_preprocessing(config, args.out, beam_args, args.dead_letter,
                                     default_dir=args.data_dir or os.path.join(args.out, "raw"))
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = manifest["rows"]
    print(f"preprocessed {manifest['origin']}: {rows['train']:,} / {rows['valid']:,} / {rows['test']:,} rows "
          f"(train / valid / test) -> {args.out}")
    if manifest["dead_letter_rows"] is not None:
        print(f"dead letters: {manifest['dead_letter_rows']} rows -> {args.dead_letter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
