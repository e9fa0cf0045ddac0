"""Run a named benchmark and write its results (JSON + Markdown) into a folder.

    python -m pipelines.benchmark NAME [--out DIR] [--option key=value ...]

NAME is a key of ``BENCHMARKS``; each entry is a function ``run(out_dir, **options)`` (options arrive as strings).
To add a benchmark, add ``"name": "module.path:function"`` to ``BENCHMARKS`` (imported only when run).
"""
import argparse
import importlib
import sys

import grec_tf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

BENCHMARKS = {
    "experts": "grec_tf.benchmarks.experts:run",
    "input_pipeline": "grec_tf.benchmarks.input_pipeline:run",
    "layers": "grec_tf.benchmarks.layers:run",
    "quality": "grec_tf.benchmarks.quality:run",
    "routing": "grec_tf.benchmarks.routing:run",
    "scaling": "grec_tf.benchmarks.scaling:run",
    "serving": "grec_tf.benchmarks.serving:run",
    "tasks": "grec_tf.benchmarks.tasks:run",
    "scale": "grec_tf.benchmarks.scale:run",
    "throughput": "grec_tf.benchmarks.throughput:run",
}
DEFAULT_OUT = "benchmarks/results"


def resolve(name: str):
    """The benchmark function registered under ``name``; ValueError listing the names if unknown."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(sorted(BENCHMARKS))}")
    module_name, function_name = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _parse_options(pairs):
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--option expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        options[key.strip()] = value.strip()
    return options


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("name", help=f"benchmark to run: {', '.join(sorted(BENCHMARKS))}")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="benchmark-specific option, repeatable (e.g. rounds=25, policy=mixed_bfloat16)")
    args = parser.parse_args(argv)
    try:
        fn = resolve(args.name)
        options = _parse_options(args.option)
    except ValueError as error:
        parser.error(str(error))
    fn(args.out, **options)
    print(f"{args.name}: results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
