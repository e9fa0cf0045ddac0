"""The shape of the package: import floors without cycles, short functions, a small lazy public API."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grec_tf"

#: floor of each top-level part of the package: a module may import only from its own floor or below
FLOORS = {
    "layers": 0, "text": 0, "config": 0, "errors": 0, "atomic_files": 0, "metrics": 0, "profiling": 0,
    "native_log_filter": 0,
    "data": 1, "models": 1, "serving": 1, "training": 1, "preprocessing": 1,
    "experiment": 2, "benchmarks": 2,
}
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, module: str, top_level_only: bool) -> Set[str]:
    """grec_tf modules imported by a file (module-level statements only, or every import anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("grec_tf."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grec_tf"):
            for alias in node.names:  # "from grec_tf.data import telecom" imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in _modules() else node.module)
    return {name for name in found if name != "grec_tf" and name != module}


def _part(module: str) -> str:
    return module.split(".")[1]


def test_every_part_of_the_package_has_a_floor():
    parts = {_part(m) for m in _modules() if m.count(".") >= 1}
    assert parts <= set(FLOORS), parts - set(FLOORS)


def test_no_module_imports_from_a_higher_floor():
    upward = []
    for module, path in _modules().items():
        if module == "grec_tf":
            continue
        for imported in _imports(path, module, top_level_only=False):
            if FLOORS[_part(imported)] > FLOORS[_part(module)]:
                upward.append(f"{module} -> {imported}")
    assert not upward, upward


def test_module_level_imports_have_no_cycle():
    modules = _modules()
    graph = {m: {i for i in _imports(p, m, top_level_only=True) if i in modules} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is how packages are built, not a cycle
    graph = {m: {i for i in deps if not m.startswith(i + ".") and not (i.startswith(m + ".") and
                                                                       modules[m].name == "__init__.py")}
             for m, deps in graph.items()}
    visiting, done, cycles = set(), set(), []

    def visit(node, trail):
        if node in done:
            return
        if node in visiting:
            cycles.append(" -> ".join(trail[trail.index(node):] + [node]))
            return
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        visiting.discard(node)
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, cycles


def test_library_functions_are_short():
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert not long, long


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_import_grec_tf_and_its_config_load_no_tensorflow():
    result = _run("import sys, grec_tf, grec_tf.config, pipelines.train, pipelines.evaluate, pipelines.export; "
                  "print('tensorflow' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("argv", [["--help"], ["--set", "train.epochs=0", "--out", "/nonexistent/run"]])
def test_train_help_and_config_errors_answer_without_tensorflow(argv):
    result = _run("import sys\nfrom pipelines import train\ntry:\n    code = train.main(%r)\n"
                  "except SystemExit as exit:\n    code = exit.code\n"
                  "print('tensorflow' in sys.modules, code)" % (argv,))
    assert result.stdout.split()[-2:] == ["False", "0" if argv == ["--help"] else "2"], result.stderr
    if argv != ["--help"]:
        assert "train.epochs: expected >= 1, got 0" in result.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "generate", "benchmark", "serve",
                                     "config_reference", "preprocess"])
def test_every_command_answers_help_without_tensorflow(command):
    result = _run("import runpy, sys\nsys.argv = ['%s', '--help']\n"
                  "try:\n    runpy.run_module('pipelines.%s', run_name='__main__')\n"
                  "except SystemExit as exit:\n    print('exit', exit.code)\n"
                  "print('tensorflow' in sys.modules)" % (command, command))
    assert result.stdout.split()[-3:] == ["exit", "0", "False"], result.stdout[-500:] + result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_public_api_names_resolve_lazily():
    result = _run("import sys, grec_tf\nnames = list(grec_tf.__all__)\n"
                  "assert all(getattr(grec_tf, n) is not None for n in names)\n"
                  "print(sorted(names))")
    assert result.returncode == 0, result.stderr
    for name in ("Experiment", "load_experiment", "load_run", "build_ranker", "metrics_table"):
        assert name in result.stdout
    missing = _run("import grec_tf; grec_tf.no_such_name")
    assert "has no attribute 'no_such_name'" in missing.stderr


def test_tensorflow_start_up_noise_is_filtered_and_real_errors_are_kept():
    result = _run("import os, grec_tf, tensorflow as tf\n"
                  "from grec_tf.native_log_filter import filtered_stderr\n"
                  "tf.constant(1) + 1\n"
                  "with filtered_stderr():\n"
                  "    os.write(2, b'I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n')\n"
                  "    os.write(2, b'a real problem\\n')\n")
    assert result.returncode == 0, result.stderr
    assert "a real problem" in result.stderr
    for noise in ("cuda drivers", "oneDNN custom operations", "absl::InitializeLog", "cuInit"):
        assert noise not in result.stderr, result.stderr
