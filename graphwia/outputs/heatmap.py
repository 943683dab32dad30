"""Worker heatmaps (SPEC §5.9, the paper's Fig. 14).

One cell per worker, PP rank down, DP rank across, coloured from 1.0 to 1.5
and annotated with its value. Two pictures use it: the worker *score*
min(S_dp_rank, S_stage) that M_W ranks by (the published heatmap), and the
exact per-worker slowdown S_w.

:func:`worker_grid` gives the numbers behind a picture (tests check those,
not pixels); :func:`heatmap_figure` draws them; :func:`write_heatmap` saves
a PNG atomically. Wide jobs are wrapped into panels of at most
:data:`MAX_COLUMNS` DP ranks stacked vertically, so every annotation stays
legible for 64 DP ranks as for 2.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from graphwia.utils.io import atomic_path

__all__ = [
    "BAR_WIDTH",
    "COLOUR_MAP",
    "COLOUR_RANGE",
    "DPI",
    "FONT",
    "HIGHLIGHT",
    "MAX_ANNOTATED",
    "MAX_COLUMNS",
    "MIN_WIDTH",
    "figure_png",
    "heatmap_figure",
    "heatmap_png",
    "highlighted",
    "worker_grid",
    "write_heatmap",
    "write_png",
]

#: Colour scale of the published heatmaps: no slowdown to 1.5×.
COLOUR_RANGE = (1.0, 1.5)
COLOUR_MAP = "Reds"
#: A worker at or above this value counts as highlighted.
HIGHLIGHT = 1.1
#: DP ranks drawn side by side before the grid wraps into another panel.
MAX_COLUMNS = 32
#: Beyond this many cells the values are not written into the cells.
MAX_ANNOTATED = 4096

CELL_W, CELL_H = 0.42, 0.32  # inches: fits "1.23" at FONT points
FONT = 7.5
LEFT, RIGHT, PANEL_FOOT, HEAD = 0.75, 0.35, 0.55, 1.0  # margins, inches
MIN_WIDTH = 3.4
BAR_WIDTH = (2.4, 5.0)  # colour bar: shortest, longest
DPI = 110


def worker_grid(workers: pd.DataFrame, *, column: str = "score") -> pd.DataFrame:
    """``workers[column]`` as a table: index = PP rank (stage), columns = DP rank.

    ``workers`` is :attr:`graphwia.Analysis.workers` (one row per worker with
    ``dp_rank``, ``stage`` and the value column); missing workers are NaN.
    """
    grid = workers.pivot(index="stage", columns="dp_rank", values=column)
    return grid.sort_index().sort_index(axis=1).astype(float)


def highlighted(grid: pd.DataFrame, *, threshold: float = HIGHLIGHT) -> list[tuple[int, int]]:
    """(dp_rank, stage) of every cell at or above ``threshold``, row by row."""
    stages, dps = np.nonzero(grid.to_numpy() >= threshold)
    return [(int(grid.columns[d]), int(grid.index[s])) for s, d in zip(stages, dps)]


def heatmap_figure(grid: pd.DataFrame, *, title: str = "", label: str = "") -> Figure:
    """Draw ``grid`` (see :func:`worker_grid`) as an annotated heatmap.

    ``title`` goes above the colour bar, ``label`` names the colour bar; both are
    drawn as plain text (a ``$`` in a trial name is a dollar sign, not math).
    """
    n_stages, n_dp = grid.shape
    n_panels = max(1, math.ceil(n_dp / MAX_COLUMNS))
    cols = min(n_dp, MAX_COLUMNS) or 1
    grid_w = cols * CELL_W
    width = max(MIN_WIDTH, LEFT + grid_w + RIGHT)
    panel_h = n_stages * CELL_H + PANEL_FOOT
    height = HEAD + n_panels * panel_h
    fig = Figure(figsize=(width, height), dpi=DPI)
    left = (width - grid_w) / 2 if LEFT + grid_w + RIGHT < MIN_WIDTH else LEFT
    norm = Normalize(*COLOUR_RANGE)
    annotate = grid.size <= MAX_ANNOTATED
    mesh: QuadMesh | None = None
    for panel in range(n_panels):
        part = grid.iloc[:, panel * MAX_COLUMNS : (panel + 1) * MAX_COLUMNS]
        bottom = height - HEAD - (panel + 1) * panel_h + PANEL_FOOT
        ax = fig.add_axes((left / width, bottom / height, part.shape[1] * CELL_W / width, n_stages * CELL_H / height))
        mesh = _draw_panel(ax, part, norm, annotate)
    assert mesh is not None  # n_panels >= 1
    bar_w = min(max(grid_w, BAR_WIDTH[0]), BAR_WIDTH[1])  # centred over the grid
    bar_left = max(0.3, left + (grid_w - bar_w) / 2)
    cax = fig.add_axes((bar_left / width, (height - 0.62) / height, bar_w / width, 0.14 / height))
    bar = fig.colorbar(mesh, cax=cax, orientation="horizontal", extend="both")
    bar.ax.xaxis.set_ticks_position("top")
    bar.ax.tick_params(labelsize=FONT)
    if label:
        bar.ax.set_xlabel(label, fontsize=FONT, parse_math=False)
    if title:
        fig.text(
            0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=FONT + 1.5, weight="bold", parse_math=False
        )
    return fig


def _draw_panel(ax: Axes, part: pd.DataFrame, norm: Normalize, annotate: bool) -> QuadMesh:
    """One block of DP ranks: coloured cells with their values, PP rank 0 on top."""
    values = np.ma.masked_invalid(part.to_numpy())
    mesh = ax.pcolormesh(values, cmap=COLOUR_MAP, norm=norm, edgecolors="white", linewidth=1.0)
    ax.set_facecolor("#dddddd")  # missing workers
    ax.invert_yaxis()
    ax.set_xticks(np.arange(part.shape[1]) + 0.5, [str(c) for c in part.columns], fontsize=FONT)
    ax.set_yticks(np.arange(part.shape[0]) + 0.5, [str(i) for i in part.index], fontsize=FONT)
    ax.tick_params(length=0)
    ax.set_xlabel("DP rank", fontsize=FONT + 0.5, labelpad=2)
    ax.set_ylabel("PP rank", fontsize=FONT + 0.5)
    for side in ax.spines.values():
        side.set_visible(False)
    if annotate:
        filled = values.filled(np.nan)
        dark = norm(filled) > 0.6  # white text on dark red
        for (row, col), value in np.ndenumerate(filled):
            if np.isfinite(value):
                ax.text(
                    col + 0.5,
                    row + 0.5,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=FONT,
                    color="white" if dark[row, col] else "black",
                )
    return mesh


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure rendered as PNG bytes (Agg, no display needed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def heatmap_png(grid: pd.DataFrame, *, title: str = "", label: str = "") -> bytes:
    """:func:`heatmap_figure` as PNG bytes."""
    return figure_png(heatmap_figure(grid, title=title, label=label))


def write_png(path: str | Path, png: bytes) -> Path:
    """Write PNG bytes to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return Path(path)


def write_heatmap(path: str | Path, grid: pd.DataFrame, *, title: str = "", label: str = "") -> Path:
    """Draw ``grid`` and save it as a PNG at ``path``, atomically."""
    return write_png(path, heatmap_png(grid, title=title, label=label))
