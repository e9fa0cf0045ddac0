"""Writes the embedded synthetic telecom dataset to parquet and prints its dataset card.

    python -m pipelines.generate --rows 1000000 --seed 7 --out data/telecom
    python -m pipelines.generate --config configs/telecom.yaml --set data.rows=20000

``--rows`` counts impressions (about 3.1 long-format rows each). Defaults come from the config
(``data.rows``, ``data.seed``, ``data.path``, ``data.flows``, ``data.use_cases``); flags win over the
config. Writes ``OUT/{train,valid,test}.parquet`` and ``OUT/card.json`` atomically: a temporary folder
next to ``OUT`` is renamed into place, so ``OUT`` is never half-written.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from grec_tf.config import load_config
from grec_tf.errors import GRecError

DEFAULT_OUT = "data/telecom"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.generate",
        description="Generate the embedded synthetic telecom dataset (long format parquet + dataset card).")
    parser.add_argument("--rows", type=int, default=None,
                        help="number of impressions (default: data.rows of the config)")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default: data.seed)")
    parser.add_argument("--out", default=None,
                        help=f"output folder (default: data.path of the config, else {DEFAULT_OUT})")
    parser.add_argument("--config", default=None, help="YAML experiment config (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set data.rows=20000 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="do not print the dataset card")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from grec_tf.data import telecom

    try:
        config = load_config(args.config, args.overrides)
        if config.data.source != "telecom":
            print(f"warning: data.source is {config.data.source!r}; generating the telecom dataset anyway",
                  file=sys.stderr)
        rows = args.rows if args.rows is not None else config.data.rows
        seed = args.seed if args.seed is not None else config.data.seed
        out = args.out or config.data.path or DEFAULT_OUT
        flows = None if list(config.data.flows) == list(telecom.FLOWS) else config.data.flows
        use_cases = None if list(config.data.use_cases) == list(telecom.USE_CASES) else config.data.use_cases
        started = time.perf_counter()
        card = telecom.write_dataset(out, rows=rows, seed=seed, flows=flows, use_cases=use_cases)
    except GRecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(telecom.format_card(card))
        print(f"wrote {out}/{{train,valid,test}}.parquet and {out}/card.json "
              f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
