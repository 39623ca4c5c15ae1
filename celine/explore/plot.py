"""Plots of the cost data set (PNG, matplotlib): what area buys, engine by engine.

For each engine, two figures:
- `<engine>-pareto.png`: throughput (useful GMAC/s at the achieved Fmax) against LUT4,
  every measured point faint and each board's Pareto front (least LUT4, most throughput)
  as a step line; each device's LUT4 capacity is a vertical dashed line, so a front that
  crosses it shows what does not fit.
- `<engine>-fmax.png`: Fmax against LUT4: how timing degrades with size.

Figures are drawn on matplotlib's object API (Figure + Agg canvas), not pyplot, so that
plotting changes no global state and needs no display.
"""

import os
from pathlib import Path

from .db import CostDB, pareto_front

__all__ = ["plot"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _capacities(board):
    """[(lut4, label)] of the devices of celine.boards (one line per distinct capacity,
    labelled with its boards), or only `board`'s."""
    from ..boards.platforms import BOARDS
    lines = {}
    for name, b in BOARDS.items():
        if board not in (None, name):
            continue
        lines.setdefault(b.resources["lut4"], []).append(name)
    return [(lut4, f"{', '.join(names)}: {lut4:,} LUT4") for lut4, names in sorted(lines.items())]


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _draw_capacities(ax, capacities):
    for i, (lut4, label) in enumerate(capacities):
        ax.axvline(lut4, color="0.35", linestyle=(0, (4, 2 + 2 * i)), linewidth=1,
                   label=label)


def plot(db, out_dir, engine=None, board=None):
    """Write the PNGs of each engine in `db` (a CostDB or a path), or of `engine` only,
    using the records of `board` only if given, into `out_dir` (created); returns the
    written paths, sorted. ValueError when no successful record matches."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out must be a path, not {out_dir!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out must be a directory, not {str(out_dir)!r} (an existing file)")
    if isinstance(db, CostDB):
        return _plot(db, out_dir, engine, board)
    with CostDB(db, create=False) as opened:
        return _plot(opened, out_dir, engine, board)


def _plot(db, out_dir, engine, board):
    records = db.query(engine=engine, board=board, status="ok")
    records = [r for r in records if r["lut4"] is not None]
    if not records:
        raise ValueError(f"db must hold successful records with LUT4 to plot "
                         f"(engine {engine!r}, board {board!r}), not none")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"out must be a directory that can be created, "
                         f"not {str(out_dir)!r} ({error.strerror})") from None
    capacities = _capacities(board)
    written = []
    for name in sorted({r["engine"] for r in records}):
        mine = [r for r in records if r["engine"] == name]
        boards = sorted({r["board"] for r in mine})
        written.append(_pareto_png(out_dir / f"{name}-pareto.png", name, mine, boards,
                                   capacities))
        written.append(_fmax_png(out_dir / f"{name}-fmax.png", name, mine, boards,
                                 capacities))
    return sorted(written)


def _pareto_png(path, engine, records, boards, capacities):
    fig, ax = _figure()
    for color, board in zip(_COLORS * 4, boards):
        mine = [r for r in records if r["board"] == board and r["throughput"] is not None]
        if not mine:
            continue
        ax.scatter([r["lut4"] for r in mine], [r["throughput"] / 1e9 for r in mine],
                   s=14, color=color, alpha=0.3)
        front = pareto_front(mine, "lut4", "throughput")
        ax.step([r["lut4"] for r in front], [r["throughput"] / 1e9 for r in front],
                where="post", color=color, marker="o", markersize=4,
                label=f"{board}: Pareto front ({len(front)} of {len(mine)})")
    _draw_capacities(ax, capacities)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LUT4 (after place and route)")
    ax.set_ylabel("throughput (useful GMAC/s at the achieved Fmax)")
    ax.set_title(f"{engine}: throughput against LUT4")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _fmax_png(path, engine, records, boards, capacities):
    fig, ax = _figure()
    for color, board in zip(_COLORS * 4, boards):
        mine = sorted((r for r in records if r["board"] == board and r["fmax_mhz"] is not None),
                      key=lambda r: r["lut4"])
        if mine:
            ax.scatter([r["lut4"] for r in mine], [r["fmax_mhz"] for r in mine], s=16,
                       color=color, label=f"{board} ({len(mine)} points)")
    _draw_capacities(ax, capacities)
    ax.set_xscale("log")
    ax.set_xlabel("LUT4 (after place and route)")
    ax.set_ylabel("Fmax (MHz, nextpnr)")
    ax.set_title(f"{engine}: Fmax against LUT4")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
