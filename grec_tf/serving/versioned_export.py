"""Versioned, atomic SavedModel export in the layout TF Serving loads: ``{export_dir}/{model_name}/{version}/``.

TF Serving's file-system storage path source polls ``{model_base_path}`` (here
``{export_dir}/{model_name}``) and treats every child whose name parses as an integer as a model
version (``strings::safe_strto64``: optional spaces, an optional ``-``, digits). A half-written
version folder must therefore never carry such a name. :func:`export_saved_model` writes into a
hidden temporary folder named ``.tmp-...`` (a leading ``.`` never parses as a number, so neither
TF Serving nor :mod:`grec_tf.serving.model_registry` ever looks at it) inside the same parent, then
renames it to ``{version}`` in one ``os.rename`` - atomic on POSIX file systems - so a version
appears complete or not at all.
"""
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from typing import Callable, List, Optional, Tuple

from grec_tf.atomic_files import current_umask
from grec_tf.errors import GRecError

logger = logging.getLogger(__name__)

VERSION_DIR_RE = re.compile(r"[0-9]+")
TMP_PREFIX = ".tmp-"
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class ExportError(GRecError):
    """An export could not be completed; nothing was left visible under the model folder."""


def list_versions(model_base_path: str) -> List[int]:
    """All-digit version folders under ``model_base_path`` (e.g. ``exports/grec``), ascending."""
    try:
        names = os.listdir(model_base_path)
    except FileNotFoundError:
        return []
    versions = []
    for name in names:
        if VERSION_DIR_RE.fullmatch(name) and os.path.isdir(os.path.join(model_base_path, name)):
            versions.append(int(name))
    return sorted(versions)


def next_version(base: str, model_name: str) -> int:
    """The version the next export of ``model_name`` under ``base`` gets: highest existing + 1, or 1."""
    versions = list_versions(os.path.join(base, model_name))
    return versions[-1] + 1 if versions else 1


def _fsync_path(path: str) -> None:
    """fsync one file or folder, ignoring file systems that refuse (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    """Flush the files of a finished SavedModel to disk before it becomes visible (best effort)."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            _fsync_path(os.path.join(root, name))


def _remove_stale_temp_dirs(model_dir: str) -> None:
    """Remove temp folders left by exports on this host whose process no longer exists (killed runs)."""
    host = socket.gethostname()
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        return
    for name in names:
        m = re.fullmatch(re.escape(TMP_PREFIX) + r"(\d+)-(.+)-(\d+)-[^-]+", name)
        if not m or m.group(2) != host:
            continue
        pid = int(m.group(3))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running: an export in progress
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # exists, owned by someone else
        logger.warning("removing temporary folder of an interrupted export: %s", os.path.join(model_dir, name))
        shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)


def export_saved_model(save_fn: Callable[[str], None], export_dir: str, model_name: str,
                       version: Optional[int] = None) -> str:
    """Write a SavedModel to ``{export_dir}/{model_name}/{version}/`` atomically and return that path.

    Args:
      save_fn: called once with the path of an existing, empty temporary folder; it must write the
        SavedModel there (e.g. ``lambda p: tf.saved_model.save(module, p, signatures=...)``).
      export_dir: root of all exports (``exports``); created if missing.
      model_name: sub-folder of ``export_dir``; TF Serving's ``--model_base_path`` is
        ``{export_dir}/{model_name}``.
      version: integer version; ``None`` means :func:`next_version`.

    Raises:
      ExportError: the version already exists (never overwritten), the version is not a
        non-negative integer, or ``save_fn`` wrote no ``saved_model.pb``. If ``save_fn`` raises,
        its exception propagates. In every failure case the temporary folder is removed and no
        version folder is created.
    """
    _check_export_arguments(model_name, version)
    auto_version = version is None
    model_dir = os.path.join(export_dir, model_name)
    os.makedirs(model_dir, exist_ok=True)
    _remove_stale_temp_dirs(model_dir)

    if version is None:
        version = next_version(export_dir, model_name)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise ExportError(
            f"{final} already exists: refusing to overwrite version {version} of model '{model_name}' "
            f"(existing versions: {list_versions(model_dir)}); pass another version or None for the next one")

    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-{socket.gethostname()}-{os.getpid()}-",
                           dir=model_dir)
    try:
        _write_saved_model(save_fn, tmp)
        version, final = _rename_into_place(tmp, export_dir, model_name, version, auto_version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(model_dir)
    logger.info("exported version %d of model '%s' to %s", version, model_name, final)
    return final


def _check_export_arguments(model_name: str, version: Optional[int]) -> None:
    """A plain folder name (nothing hidden, no path) and a TF Serving version number, or None."""
    if not model_name or os.sep in model_name or model_name in (".", "..") or model_name.startswith("."):
        raise ExportError(f"model_name {model_name!r}: expected a plain folder name such as 'grec'")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ExportError(f"version {version!r}: expected a non-negative integer (TF Serving version numbers)")


def _write_saved_model(save_fn: Callable[[str], None], tmp: str) -> None:
    """Run ``save_fn`` into the temporary folder, check it wrote a SavedModel and flush it to disk."""
    # mkdtemp makes the folder 0700; a served version must be readable like any folder the user
    # creates (e.g. by TF Serving running as another user in a container).
    os.chmod(tmp, 0o777 & ~current_umask())
    save_fn(tmp)
    if not any(os.path.isfile(os.path.join(tmp, f)) for f in _SAVED_MODEL_FILES):
        raise ExportError(f"save_fn wrote no saved_model.pb into the temporary folder {tmp}; "
                          "expected a SavedModel (tf.saved_model.save or model.save)")
    _fsync_tree(tmp)


def _rename_into_place(tmp: str, export_dir: str, model_name: str, version: int,
                       auto_version: bool) -> Tuple[int, str]:
    """Rename the finished temporary folder to its version folder in one step; returns (version, path).

    A version folder that appeared meanwhile is never replaced: an explicit version fails, an automatic
    one moves on to the next free number.
    """
    model_dir = os.path.join(export_dir, model_name)
    final = os.path.join(model_dir, str(version))
    for _attempt in range(100):
        try:
            # os.rename onto an existing non-empty folder fails (ENOTEMPTY/EEXIST): a version that
            # appeared concurrently is never replaced.
            os.rename(tmp, final)
            return version, final
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not auto_version:
                raise ExportError(f"{final} appeared while exporting: refusing to overwrite version "
                                  f"{version} of model '{model_name}'") from None
            version = next_version(export_dir, model_name)
            final = os.path.join(model_dir, str(version))
    raise ExportError(f"could not find a free version folder under {model_dir}")
