"""notebooks/quickstart.ipynb runs top to bottom (nbclient) on a tiny configuration."""
import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import grec_tf

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("GREC_QUICKSTART_ROWS", "3000")
    monkeypatch.setenv("GREC_QUICKSTART_EPOCHS", "1")
    monkeypatch.setenv("GREC_QUICKSTART_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "| AAL/CTR |" in texts and "oracle auc" in texts  # the evaluation table
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the utilization plot
    line = [l for l in texts.splitlines() if l.startswith("experts per task sentence:")][0]
    per_sentence = eval(line.split(":", 1)[1])  # noqa: S307 - a list literal the notebook printed
    assert len(per_sentence) == 12 and all(abs(v - 4.0) < 1e-3 for v in per_sentence)
    assert os.path.isfile(tmp_path / "data" / "card.json")
    assert os.path.isfile(tmp_path / "exports" / "grec" / "1" / "saved_model.pb")


def test_quickstart_uses_only_the_public_api():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "import grec_tf" in code and "from grec_tf" not in code
    used = set(re.findall(r"grec_tf\.(\w+)", code))
    assert used and used <= set(grec_tf.__all__), used - set(grec_tf.__all__)
