"""The schema documents and bounds itself: every key has a meaning and an example, every number a
valid range that the validator enforces with a one-line error naming exactly that key."""
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from grec_tf.config import Bounds, SchemaKey, parse_config, schema_leaves
from grec_tf.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
FEATURE = {"name": "x", "kind": "sequence"}  # a feature entry every feature key may be set on
LEAVES = list(schema_leaves())
NUMERIC = [key for key in LEAVES if key.is_numeric]


def _out_of_range(bounds: Bounds, integer: bool) -> list:
    """Values just outside ``bounds`` on each side it has."""
    step = 1 if integer else 0.5
    values = [bounds.low if bounds.low_open else bounds.low - step]
    if bounds.high is not None:
        values.append(bounds.high)
    return values


def _raw_and_path(key: SchemaKey, value, wrap: bool = True):
    """A raw config setting ``key`` to ``value`` (with ``wrap``, as the entry of a list / mapping key)
    and the key path an error about that value must name."""
    origin = typing.get_origin(key.hint) if wrap else None
    if origin is list:
        value, suffix = [value], "[0]"
    elif origin is dict:
        value, suffix = {"CTR": value}, ".CTR"
    else:
        suffix = ""
    *sections, name = key.path.split(".")
    entry = {name: value}
    if sections and sections[0] == "features[]":
        return {"features": [{**FEATURE, **entry}]}, f"features[x].{name}{suffix}"
    for section in reversed(sections):
        entry = {section: entry}
    return entry, key.path + suffix


def test_the_walk_covers_every_section():
    sections = {key.path.rsplit(".", 1)[0] for key in NUMERIC}
    assert {"data", "model", "model.text_encoder", "train", "features[]"} <= sections
    assert {"model.tower_units", "model.loss_weights", "model.route_embedding_dim",
            "features[].embedding_dim"} <= {key.path for key in NUMERIC}


@pytest.mark.parametrize("key", NUMERIC, ids=[key.path for key in NUMERIC])
def test_every_numeric_key_is_bounded_and_enforced(key):
    assert key.bounds is not None, f"{key.path}: a numeric key needs bounds= in its setting()"
    for value in _out_of_range(key.bounds, key.scalar_type is int):
        raw, path = _raw_and_path(key, value)
        with pytest.raises(ConfigError) as err:
            parse_config(raw, source="c.yaml")
        message = str(err.value)
        assert message.startswith(f"c.yaml: {path}: expected {key.bounds}, got "), message
        assert "\n" not in message


@pytest.mark.parametrize("key", NUMERIC, ids=[key.path for key in NUMERIC])
def test_the_default_of_every_numeric_key_is_in_range(key):
    default = key.default
    values = default if isinstance(default, list) else (default.values() if isinstance(default, dict)
                                                        else [default])
    assert all(v is None or v in key.bounds for v in values), key.path


@pytest.mark.parametrize("key", LEAVES, ids=[key.path for key in LEAVES])
def test_every_key_has_a_meaning_and_a_valid_example(key):
    assert key.help.strip(), f"{key.path}: no help text"
    assert key.example is not None, f"{key.path}: no example"
    assert not key.choices or key.example in key.choices, key.path
    raw, _ = _raw_and_path(key, key.example, wrap=False)
    if key.path.startswith("model.text_encoder.") or key.path == "model.text_encoder":
        raw["model"]["text_encoder"].setdefault("handle", "encoders/my_hub_model")
    if key.path in ("model.capacity_factor",):
        raw["model"]["routing"] = "token"
    if key.path == "model.piecewise_linear_edges":  # tree bins are piecewise_linear's
        raw["model"]["numerical_embedding"] = "piecewise_linear"
    if key.path == "features[].vocabulary_of":
        raw["features"].insert(0, {"name": "item_id", "kind": "item_id"})
    if key.path == "data.test_fraction":
        raw["data"]["valid_fraction"] = 0.0
    parse_config(raw)  # the documented example is itself valid


def test_every_field_is_declared_with_setting():
    from grec_tf.config import schema_sections

    for section, cls in schema_sections():
        for f in dataclasses.fields(cls):
            assert "help" in f.metadata, f"{section}.{f.name}: declare it with setting(help=..., example=...)"


def test_config_module_imports_no_tensorflow_pandas_or_numpy():
    code = ("import sys, grec_tf.config, pipelines.config_reference; "
            "print(sorted(m for m in ('tensorflow', 'pandas', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
