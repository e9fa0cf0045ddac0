"""The finishing of the benchmarks' line-plot panels: one x axis on a log-2 scale shared by every panel."""
from __future__ import annotations

from typing import Sequence

from grec_tf.atomic_files import save_figure_atomic


def save_log2_panels(figure, axes: Sequence, titles: Sequence[str], ticks: Sequence[int], xlabel: str,
                     path: str) -> None:
    """Gives each panel of ``figure`` (its lines drawn) a log-2 x axis ticked at ``ticks``, its title and a grid,
    a legend on the first, and saves it as the PNG ``path`` (atomically; the figure is closed)."""
    for axis, title in zip(axes, titles):
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(ticks), [str(t) for t in ticks])
        axis.set_xlabel(xlabel)
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    save_figure_atomic(figure, path)
