"""python -m pipelines.config_reference [--check] [--output FILE]

Writes the configuration reference (docs/configuration.md) generated from the schema in
grec_tf.config: every section and key with its type, default, valid range or choices, an example and
its meaning, and which keys apply when. With --check, writes nothing and exits 1 when the page on disk
differs from the schema.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

import yaml

from grec_tf.config import (APPLICABILITY_RULES, ApplicabilityRule, SchemaKey, schema_keys, schema_sections,
                            type_name)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
COMMAND = "python -m pipelines.config_reference"

INTRO = f"""# Configuration reference

<!-- Generated from grec_tf/config.py by `{COMMAND}`; edit the schema, not this page. -->

An experiment is one YAML file (see `configs/`). Its top-level keys are `name` and the sections
`data`, `features`, `model` (with the nested `model.text_encoder`), `train` and `export`; every key
has a default, so a file only lists what it changes:

```yaml
name: my_experiment
data:
  source: parquet            # your own long-format table
  path: data/events.parquet  # one file, split by data.group_column
  flows: [web, app]
  use_cases: [click, buy]
  group_column: session_id
features:                    # one entry per input column
  - {{name: device, kind: categorical}}
  - {{name: price, kind: numerical, group: item}}
  - {{name: viewed_items, kind: sequence, max_length: 20, vocabulary_of: item_id}}
  - {{name: item_id, kind: item_id, group: item}}
model:
  type: grec
  num_experts: 8
train:
  epochs: 5
```

**Overrides.** Every command that takes `--config FILE` also takes repeatable `--set key.path=value`;
the value is parsed as YAML and applied before validation, e.g.
`--set model.num_experts=16 --set data.flows=[AAL,EUP] --set export.model_name=grec_small`.
Feature entries are a list: `--set features=[...]` replaces all of them.

**Errors.** An unknown key, a wrong type, a missing required key or a value out of range is a
one-line error naming the file and the key path, e.g.
`configs/telecom.yaml: model.top_k: expected >= 1, got 0`.

**Which keys apply.** Some keys are read only for some values of other keys; the rest always apply.
`grec_tf.config.applied_config(config, split_mode)` is the config without the keys a run does not
read, and `unapplied_keys(config, split_mode)` lists the keys set to a non-default value that have no
effect. The split mode is how the loader obtained train/valid/test: `generated` (telecom writes the
three splits), `files` (a folder with train/valid/test files), `release_test` (a public release's
train and test files: valid is carved from train) or `split_by_group` (one file split by
`data.group_column`). The rules (one table in `grec_tf/config.py`):
"""


def _yaml(value: Any) -> str:
    """``value`` as it is written in a YAML file, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[:-len("...")].strip() if text.endswith("\n...") else text


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _rule_table(rule: ApplicabilityRule) -> List[str]:
    lines = [f"- `{rule.section}` keys by {rule.selector}:", "",
             f"  | {rule.selector} | keys of `{rule.section}` that apply only then |", "  |---|---|"]
    for row, keys in rule.keys_by_row.items():
        lines.append(f"  | {row} | {', '.join(_code(k) for k in keys) or '(none)'} |")
    return lines + [""]


def _applies_when(section: str, name: str) -> str:
    """``Applies only when ...`` for a key some rule governs, else ''."""
    conditions = []
    for rule in APPLICABILITY_RULES:
        rows = [row for row, keys in rule.keys_by_row.items() if name in keys]
        if rule.section == section and rows:
            conditions.append(f"{rule.selector} {' or '.join(rows)}")
    return f" *Applies only with {'; '.join(conditions)}.*" if conditions else ""


def _valid(key: SchemaKey) -> str:
    if key.bounds is not None:
        return str(key.bounds)
    if key.choices:
        return "one of " + ", ".join(_code(c) for c in key.choices)
    return ""


def _key_row(section: str, key: SchemaKey) -> str:
    name = key.path.rsplit(".", 1)[-1]
    default = "required" if key.required else _code(_yaml(key.default))
    cells = [_code(name), type_name(key.hint), default, _valid(key), _code(_yaml(key.example)),
             key.help + _applies_when(section, name)]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _section_table(section: str, cls: type) -> List[str]:
    title = f"`{section}`" if section else "Top level"
    doc = " ".join((cls.__doc__ or "").split())
    lines = [f"## {title}", "", doc, "",
             "| Key | Type | Default | Valid | Example | Meaning |", "|---|---|---|---|---|---|"]
    for name, hint, f in schema_keys(cls):
        lines.append(_key_row(section, SchemaKey(f"{section}.{name}" if section else name, hint, f)))
    return lines + [""]


def render_reference() -> str:
    """The whole reference page (Markdown)."""
    lines = [INTRO]
    for rule in APPLICABILITY_RULES:
        lines += _rule_table(rule)
    for section, cls in schema_sections():
        lines += _section_table(section, cls)
    return "\n".join(lines).rstrip() + "\n"


def check_page(page: Path) -> Optional[str]:
    """None when ``page`` holds the current reference, else a message with the start of the diff."""
    expected = render_reference()
    actual = page.read_text(encoding="utf-8") if page.is_file() else ""
    if actual == expected:
        return None
    diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), f"{page} (on disk)",
                                     f"{page} (from the schema)", lineterm="", n=1))
    shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
    return f"{page} differs from the configuration schema; regenerate it with `{COMMAND}`.\n{shown}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[1])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs from the schema")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"the page (default: {PAGE.name} in docs/)")
    args = parser.parse_args(argv)
    if args.check:
        problem = check_page(args.output)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_reference(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
