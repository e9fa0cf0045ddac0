"""docs/data.md's worked example, run as written at a tiny size, so the guide cannot drift from the code.

The python blocks of the "Worked example" section run in order in a temporary folder (the size knob
``N_USERS`` turned down), the yaml block becomes the file the train command names, and the train
command of the bash block runs with one epoch. Blocks that need a served or exported model are
compiled, and the request rows they send are decoded by the server's own codec against the serving
signature of the example's config; the serve and evaluate commands must name the train command's
run folder and the config's model name.
"""
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "data.md"
SIZE_KNOB = re.compile(r"^N_USERS = \d+", re.MULTILINE)
TINY_USERS = 120
NEEDS_MODEL = "<!-- needs the"


class Block(NamedTuple):
    language: str
    code: str
    needs_model: bool  # preceded by a "needs the ... model" comment: not runnable without one


def worked_example_blocks() -> List[Block]:
    text = GUIDE.read_text()
    section = text[text.index("## Worked example"):]
    blocks = []
    for match in re.finditer(r"(<!--[^\n]*-->\n)?```(\w+)\n(.*?)\n```", section, re.DOTALL):
        marker, language, code = match.groups()
        blocks.append(Block(language, code, bool(marker and marker.startswith(NEEDS_MODEL))))
    return blocks


def commands(blocks: List[Block]) -> Dict[str, List[str]]:
    """``python -m pipelines.NAME ...`` lines of the bash blocks, by NAME, as argument lists."""
    found = {}
    for block in (b for b in blocks if b.language == "bash"):
        for line in block.code.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words[:2] == ["python", "-m"] and words[2].startswith("pipelines."):
                found[words[2].split(".")[1]] = words
    return found


def option(words: List[str], name: str) -> str:
    return words[words.index(name) + 1]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """Runs the guide's data steps and its train command; returns (folder, blocks, namespace, config)."""
    folder = tmp_path_factory.mktemp("guide")
    blocks = worked_example_blocks()
    runnable = [b.code for b in blocks if b.language == "python" and not b.needs_model]
    assert len(SIZE_KNOB.findall(runnable[0])) == 1, "the first python block sets N_USERS = <count>"
    runnable[0] = SIZE_KNOB.sub(f"N_USERS = {TINY_USERS}", runnable[0])
    namespace: Dict = {"__name__": "guide"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for code in runnable:
            exec(compile(code, str(GUIDE), "exec"), namespace)
    finally:
        os.chdir(cwd)
    (config_text,) = [b.code for b in blocks if b.language == "yaml"]
    train = commands(blocks)["train"]
    (folder / option(train, "--config")).write_text(config_text)
    argv = [sys.executable] + train[1:] + ["--set", "train.epochs=1", "--no-export", "--verbose", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, blocks, namespace, yaml.safe_load(config_text)


def test_the_example_trains_and_reports_both_use_cases(example):
    folder, blocks, _, config = example
    train = commands(blocks)["train"]
    metrics = json.loads((folder / option(train, "--out") / "metrics.json").read_text())["test"]
    assert config["data"]["use_cases"] == ["like", "love"]
    for use_case in ("like", "love"):
        entry = metrics[f"use_case/{use_case}"]
        assert math.isfinite(entry["auc"]) and math.isfinite(entry["ap"]) and entry["rows"] > 0
    assert {key.split("/")[0] for key in metrics} == set(config["data"]["flows"]) | {"use_case"}
    for split in ("train", "valid", "test"):
        assert (folder / config["data"]["path"] / f"{split}.parquet").is_file()


def test_the_example_shares_the_movie_vocabulary(example):
    folder, blocks, _, config = example
    statistics = json.loads((folder / option(commands(blocks)["train"], "--out") / "statistics.json").read_text())
    vocabularies = statistics["vocabularies"]
    (sequence,) = [f for f in config["features"] if f.get("vocabulary_of")]
    assert vocabularies[sequence["name"]] == vocabularies[sequence["vocabulary_of"]]


def test_the_serving_steps_match_the_run_and_the_signature(example):
    from grec_tf.config import parse_config
    from grec_tf.serving.request_codec import InputSpec, decode_predict_request
    from grec_tf.serving.signatures import input_specs

    folder, blocks, namespace, config = example
    found = commands(blocks)
    out, model_name = option(found["train"], "--out"), config["export"]["model_name"]
    assert option(found["evaluate"], "--run") == out
    assert option(found["serve"], "--model_base_path") == f"{out}/exports/{model_name}"
    assert option(found["serve"], "--model_name") == model_name
    needs_model = [b.code for b in blocks if b.needs_model]
    assert len(needs_model) == 2
    for code in needs_model:
        compile(code, str(GUIDE), "exec")
    assert f"/v1/models/{model_name}:predict" in needs_model[0]
    assert f"{out}/exports/{model_name}/1" in needs_model[1]

    experiment = parse_config(config)
    specs = {name: InputSpec(name, spec.dtype.name, tuple(spec.shape.as_list()))
             for name, spec in input_specs(experiment).items()}
    rows = namespace["rows"]
    arrays, _ = decode_predict_request({"instances": rows}, specs, "serving_default")
    assert set(arrays) == set(specs)
    assert arrays["recent_movies"].shape == (len(rows), 12)
    without_use_case = {k: v for k, v in specs.items() if k != "use_case"}
    decode_predict_request({"instances": [{k: v for k, v in r.items() if k != "use_case"} for r in rows]},
                           without_use_case, "score_all")
