"""python -m pipelines.export --run DIR [--export_dir D] [--version N] [--task_sentences FLOW/USE_CASE,...]

Exports a finished training run as a TF Serving SavedModel at {export_dir}/{model name}/{version} (next
version by default), written to a temporary folder and renamed into place. Without --export_dir, the
run config's export.export_dir is used, relative to DIR when relative (as pipelines.train does).

With --task_sentences (GRec with task or task_sentence routing only), the SavedModel is the sub-model of those
task sentences: only the experts their routes use, the routes frozen as constants, only their towers; the
same signatures and inputs, and any other (flow, use case) is refused (HTTP 400 from a server).
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
    parser.add_argument("--task_sentences", default=None, metavar="FLOW/USE_CASE,...",
                        help="export the sub-model of these comma-separated task sentences, e.g. AAL/CVR,EUP/CVR "
                             "(default: the whole model)")
    args = parser.parse_args(argv)
    try:
        from grec_tf.experiment import load_run
        from grec_tf.training.run_folder import read_run, resolve_export_dir

        if args.task_sentences is not None:  # refuse a request that cannot be met before loading the model
            from grec_tf.serving.sub_model import check_extractable, parse_task_sentences

            config = read_run(args.run)[0]
            check_extractable(config)
            parse_task_sentences(config, args.task_sentences)
        experiment, model = load_run(args.run)
        print(experiment.export(model, resolve_export_dir(experiment.config, args.run, args.export_dir),
                                args.version, task_sentences=args.task_sentences))
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
