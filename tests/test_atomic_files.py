"""Atomic result files: whole or absent, and readable like any file the user writes."""
import os
import stat

import pytest

from grec_tf.atomic_files import current_umask, write_json_atomic, write_text_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path, mask):
    previous = os.umask(mask)
    try:
        assert current_umask() == mask
        write_text_atomic(str(tmp_path / "a.md"), "x\n")
        plain = tmp_path / "plain.md"
        plain.write_text("x\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(str(path), {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"a": object()})  # not JSON-serializable: fails before any write
    assert path.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(str(path), "\ud800")  # fails while writing the temporary file
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["r.json"]
