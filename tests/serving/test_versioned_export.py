"""Atomic, versioned SavedModel export in TF Serving's layout."""
import os
import re
import stat

import pytest

from grec_tf.serving.versioned_export import (ExportError, TMP_PREFIX, export_saved_model, list_versions,
                                              next_version)


def _fake_save(path: str) -> None:
    """Stands in for tf.saved_model.save: the helper only needs a saved_model.pb to appear."""
    assert os.path.isdir(path) and not os.listdir(path), "save_fn must get an existing, empty folder"
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"\x00")
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
        f.write(b"\x00")


def _tf_serving_parses_as_version(name: str) -> bool:
    # TF Serving's ParseVersionNumber is strings::safe_strto64: optional spaces, optional '-', digits, spaces.
    return re.fullmatch(r"\s*-?\d+\s*", name) is not None


def test_versions_increment_and_layout(tmp_path):
    export_dir = str(tmp_path / "exports")
    assert next_version(export_dir, "grec") == 1
    p1 = export_saved_model(_fake_save, export_dir, "grec")
    p2 = export_saved_model(_fake_save, export_dir, "grec")
    assert p1 == os.path.join(export_dir, "grec", "1") and p2 == os.path.join(export_dir, "grec", "2")
    assert next_version(export_dir, "grec") == 3
    p7 = export_saved_model(_fake_save, export_dir, "grec", version=7)
    assert p7.endswith(os.path.join("grec", "7"))
    assert next_version(export_dir, "grec") == 8
    assert list_versions(os.path.join(export_dir, "grec")) == [1, 2, 7]
    assert sorted(os.listdir(os.path.join(export_dir, "grec"))) == ["1", "2", "7"]  # no temp folder left
    assert os.path.isfile(os.path.join(p1, "saved_model.pb"))
    assert os.path.isfile(os.path.join(p1, "variables", "variables.index"))
    # Readable like any folder the user creates (mkdtemp's 0700 would lock out a TF Serving container user).
    mode = stat.S_IMODE(os.stat(p1).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask


def test_temp_folder_is_invisible_to_tf_serving(tmp_path):
    seen = {}

    def save(path):
        seen["path"] = path
        seen["siblings"] = os.listdir(os.path.dirname(path))
        seen["versions_during_save"] = list_versions(os.path.dirname(path))
        _fake_save(path)

    final = export_saved_model(save, str(tmp_path), "grec")
    name = os.path.basename(seen["path"])
    assert os.path.dirname(seen["path"]) == os.path.dirname(final)  # same folder: the rename is atomic
    assert name.startswith(TMP_PREFIX)
    assert not _tf_serving_parses_as_version(name)
    assert seen["versions_during_save"] == []  # the half-written model is not a version
    assert not os.path.exists(seen["path"])


def test_failing_save_fn_leaves_nothing(tmp_path):
    export_dir = str(tmp_path)
    export_saved_model(_fake_save, export_dir, "grec")

    def broken(path):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(broken, export_dir, "grec")
    assert os.listdir(os.path.join(export_dir, "grec")) == ["1"]
    assert next_version(export_dir, "grec") == 2

    with pytest.raises(KeyboardInterrupt):  # even an interrupt cleans up
        export_saved_model(lambda p: (_ for _ in ()).throw(KeyboardInterrupt()), export_dir, "grec")
    assert os.listdir(os.path.join(export_dir, "grec")) == ["1"]


def test_save_fn_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(ExportError, match="saved_model.pb"):
        export_saved_model(lambda p: None, str(tmp_path), "grec")
    assert os.listdir(os.path.join(str(tmp_path), "grec")) == []


def test_refuses_to_overwrite_a_version(tmp_path):
    p = export_saved_model(_fake_save, str(tmp_path), "grec", version=3)
    before = sorted(os.listdir(p))
    with pytest.raises(ExportError, match=r"already exists.*refusing to overwrite version 3"):
        export_saved_model(_fake_save, str(tmp_path), "grec", version=3)
    assert sorted(os.listdir(p)) == before
    assert os.listdir(os.path.join(str(tmp_path), "grec")) == ["3"]


def _save_while_another_export_publishes(version_taken: str):
    """A save_fn during which a concurrent export publishes version folder ``version_taken`` first."""
    def save(path):
        _fake_save(path)
        rival = os.path.join(os.path.dirname(path), version_taken)
        os.makedirs(rival)
        with open(os.path.join(rival, "saved_model.pb"), "wb") as f:
            f.write(b"rival")
    return save


def test_version_taken_during_the_export_moves_an_automatic_version_on(tmp_path):
    final = export_saved_model(_save_while_another_export_publishes("1"), str(tmp_path), "grec")
    model_dir = os.path.join(str(tmp_path), "grec")
    assert final == os.path.join(model_dir, "2")
    assert sorted(os.listdir(model_dir)) == ["1", "2"]  # no temp folder left
    with open(os.path.join(model_dir, "1", "saved_model.pb"), "rb") as f:
        assert f.read() == b"rival"  # the concurrent export's version is not replaced


def test_version_taken_during_the_export_fails_an_explicit_version_and_leaves_no_trace(tmp_path):
    with pytest.raises(ExportError, match=r"5 appeared while exporting: refusing to overwrite version 5"):
        export_saved_model(_save_while_another_export_publishes("5"), str(tmp_path), "grec", version=5)
    model_dir = os.path.join(str(tmp_path), "grec")
    assert os.listdir(model_dir) == ["5"]
    with open(os.path.join(model_dir, "5", "saved_model.pb"), "rb") as f:
        assert f.read() == b"rival"


@pytest.mark.parametrize("version", [-1, 1.5, "2", True])
def test_bad_version_rejected(tmp_path, version):
    with pytest.raises(ExportError, match="non-negative integer"):
        export_saved_model(_fake_save, str(tmp_path), "grec", version=version)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", ".."])
def test_bad_model_name_rejected(tmp_path, name):
    with pytest.raises(ExportError, match="model_name"):
        export_saved_model(_fake_save, str(tmp_path), name)


def test_non_version_folders_are_ignored(tmp_path):
    base = tmp_path / "grec"
    for name in ["1", "10", "2", ".tmp-11-host-1-abc", "tmp-12", "latest", "-3", "4a"]:
        (base / name).mkdir(parents=True)
    (base / "99").write_text("a file, not a folder")
    assert list_versions(str(base)) == [1, 2, 10]
    assert next_version(str(tmp_path), "grec") == 11


def test_stale_temp_folder_of_dead_process_is_removed(tmp_path):
    import socket
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    base = tmp_path / "grec"
    stale = base / f"{TMP_PREFIX}5-{socket.gethostname()}-{pid}-abc123"
    alive = base / f"{TMP_PREFIX}6-{socket.gethostname()}-{os.getppid()}-def456"
    stale.mkdir(parents=True)
    alive.mkdir()
    export_saved_model(_fake_save, str(tmp_path), "grec")
    assert not stale.exists()
    assert alive.exists()
