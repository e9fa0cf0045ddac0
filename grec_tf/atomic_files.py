"""Writing result files so that a reader never sees a half-written one."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def current_umask() -> int:
    """The process's file-creation mask (read from /proc where possible: ``os.umask`` is process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path``, fsyncs it, and renames it into place.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the umask), not
    the private 0600 of the temporary file, so results can be shared like any other file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def write_report(out_dir: str, name: str, results: Any, markdown: str) -> None:
    """A benchmark's ``{out_dir}/{name}.json`` and ``{out_dir}/{name}.md``, each written atomically."""
    write_json_atomic(os.path.join(out_dir, f"{name}.json"), results)
    write_text_atomic(os.path.join(out_dir, f"{name}.md"), markdown)


def save_figure_atomic(figure, path: str, dpi: int = 110) -> None:
    """Saves a matplotlib ``figure`` as the PNG ``path``, written whole and renamed into place (a reader never
    sees half a PNG); closes the figure."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial.png"
    figure.savefig(partial, dpi=dpi)
    plt.close(figure)
    os.replace(partial, path)
