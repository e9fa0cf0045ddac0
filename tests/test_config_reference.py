"""docs/configuration.md is generated from the schema and must match it."""
from pipelines.config_reference import PAGE, check_page, main, render_reference

from grec_tf.config import schema_leaves


def test_committed_page_matches_the_schema():
    problem = check_page(PAGE)
    assert problem is None, problem


def test_page_documents_every_key_with_its_range():
    page = render_reference()
    for key in schema_leaves():
        section, name = key.path.rsplit(".", 1) if "." in key.path else ("", key.path)
        table = page.split(f"## `{section}`\n" if section else "## Top level\n", 1)[1].split("\n## ", 1)[0]
        row = next((line for line in table.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, key.path
        if key.bounds is not None:
            assert f"| {key.bounds} |" in row, row


def test_check_fails_with_a_hint_on_a_stale_page(tmp_path, capsys):
    page = tmp_path / "configuration.md"
    assert main(["--output", str(page)]) == 0
    assert main(["--check", "--output", str(page)]) == 0
    page.write_text(page.read_text().replace("| `top_k` | int | `4` |", "| `top_k` | int | `2` |"))
    assert main(["--check", "--output", str(page)]) == 1
    err = capsys.readouterr().err
    assert "differs from the configuration schema" in err and "python -m pipelines.config_reference" in err
    assert "-| `top_k` | int | `2` |" in err
