"""Plots over the swept parameters (PNG, matplotlib Agg), a bounded number whatever the sweep.

- sweep_<metric>.png: the metric against the first swept axis, one line and shaded interval band
  per architecture; with more axes, one panel per value of the others (at most `MAX_PANELS`).
- heatmap_<metric>.png (two or more axes): the relative difference of each other architecture to
  the baseline over the first two axes, one panel per value of the rest. Colour: a diverging map
  centred on 0 on the log-ratio scale (so +100% and -50% are equally strong), blue where the
  other architecture is better; hatched: not significant after the study's adjustment; grey,
  crossed: not tested (overloaded); white: no result.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distsim.report.sweeps import (
    ALONE,
    NO_RESULT,
    NOT_SIGNIFICANT,
    NOT_TESTED,
    Grid,
    heat_grid,
    higher_is_better,
    sweep_axes,
    thin_product,
)
from distsim.report.terminal import metric_label
from distsim.runner.plan import Plan
from distsim.runner.store import atomic_write_bytes

SWEEP_METRICS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s")
MAX_PANELS = 12  # panels in one figure (small multiples), evenly spaced beyond that
MAX_HEATMAPS = 6  # heat-map files (one per metric)
MAX_TICKS = 16  # tick labels per axis, evenly thinned beyond that
ANNOTATE_CELLS = 120  # cells per panel up to which each cell carries its percentage

HATCHED = (ALONE, NOT_SIGNIFICANT)
DENSE_X, DENSE_Y = 30, 20  # beyond this many columns or rows, fade instead of hatching
FADE = (1.0, 1.0, 1.0, 0.65)  # white overlay on not significant cells of a dense map
DARK = 0.3  # distance from the colour scale's centre (0 to 0.5) beyond which a cell is dark
_TICK_PCTS = (-99, -95, -90, -80, -67, -50, -33, -20, -10, 0, 10, 25, 50, 100, 200, 400, 900,
              1900, 4900, 9900, 99900)  # fmt: skip


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def _grid_shape(n: int) -> tuple[int, int]:
    cols = min(n, 3 if n > 4 else 2 if n > 1 else 1)
    return math.ceil(n / cols), cols


def _ticks(n: int) -> list[int]:
    step = max(1, math.ceil(n / MAX_TICKS))
    return list(range(0, n, step))


def hatched_cells(grid: Grid) -> np.ndarray:
    """Where a heat map draws hatching: comparisons not significant after the adjustment."""
    return np.isin(grid.kind, HATCHED)


def coloured_cells(grid: Grid) -> np.ndarray:
    """Where a heat map draws colour: every tested comparison with a result."""
    return ~np.isin(grid.kind, (NOT_TESTED, NO_RESULT)) & np.isfinite(grid.rel)


def colour_limit(grid: Grid) -> float:
    """Half-range of the colour scale on the log-ratio scale: the largest |log(1 + rel)| drawn,
    at least log(1.25) so that differences of a few percent stay pale."""
    mask = coloured_cells(grid)
    vals = np.log1p(np.clip(grid.rel[mask], -0.999, None)) if mask.any() else np.array([])
    top = float(np.max(np.abs(vals))) if vals.size else 0.0
    return max(top, math.log(1.25))


def heatmap_plot(plan: Plan, detail: pd.DataFrame, metric: str, path: Path) -> Grid | None:
    """Draw `metric`'s heat map to `path`; return the grid drawn (None: fewer than two axes or no
    comparison of that metric)."""
    grid = heat_grid(plan, detail, metric, MAX_PANELS)
    if grid is None or not (grid.kind != NO_RESULT).any():
        return None
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    plt = _plt()
    n, ny, nx = grid.rel.shape
    rows, cols = _grid_shape(n)
    cell_in = 0.5 if nx * ny <= ANNOTATE_CELLS else 0.12
    w = min(5.0, max(3.0, 1.3 + nx * cell_in))
    h = min(4.2, max(2.2, 0.9 + ny * cell_in * 0.7))
    fig, axs = plt.subplots(rows, cols, figsize=(w * cols + 1.8, h * rows + 1.5), squeeze=False,
                            layout="constrained")  # fmt: skip
    limit = colour_limit(grid)
    norm = Normalize(-limit, limit)
    cmap = plt.get_cmap("RdBu" if higher_is_better(metric) else "RdBu_r")
    xs, ys = np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5
    colour = coloured_cells(grid)
    hatch = hatched_cells(grid)
    dense = is_dense(grid)
    untested = grid.kind == NOT_TESTED
    image = None
    for k in range(rows * cols):
        ax = axs[k // cols][k % cols]
        if k >= n:
            ax.set_visible(False)
            continue
        value = np.log1p(np.clip(grid.rel[k], -0.999, None))
        image = ax.pcolormesh(xs, ys, np.ma.masked_where(~colour[k], value), cmap=cmap, norm=norm)
        dark = np.abs(norm(np.nan_to_num(value)) - 0.5) > DARK
        layers = (
            [(untested[k], "0.82", "xx", "0.3"), (hatch[k] & ~dark, "none", "///", "0.3"),
             (hatch[k] & dark, "none", "///", "0.92")]  # light hatching on dark cells
            if not dense
            else [(untested[k], "0.55", None, "0.55"), (hatch[k], FADE, None, "none")]
        )  # fmt: skip
        for mask, face, pattern, ink in layers:
            if mask.any():
                ax.add_collection(_cells(mask, face, pattern, ink))
        if nx * ny <= ANNOTATE_CELLS:
            _annotate(ax, grid, k, value, norm)
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_xticks(_ticks(nx), [grid.x.tick(i) for i in _ticks(nx)], fontsize=8,
                      rotation=45 if nx > 8 else 0)  # fmt: skip
        ax.set_yticks(_ticks(ny), [grid.y.tick(i) for i in _ticks(ny)], fontsize=8)
        ax.set_xlabel(grid.x.label(), fontsize=9)
        ax.set_ylabel(grid.y.label(), fontsize=9)
        if grid.panels[k]:
            ax.set_title(grid.panels[k], fontsize=9)
    others = [a for a in plan.architectures if a != plan.baseline]
    who = others[0] if len(others) == 1 else "other"
    adj = _adjust(plan)
    title = f"{plan.study.name}: {metric_label(metric)}, {who} vs {plan.baseline}"
    if grid.panels_total > n:
        title += f" ({n} of {grid.panels_total} panels, evenly spaced)"
    fig.suptitle(title, fontsize=10)
    legend = [
        Patch(facecolor=cmap(0.15), label=f"{who} significantly lower ({adj})"),
        Patch(facecolor=cmap(0.85), label=f"{who} significantly higher ({adj})"),
        Patch(
            facecolor="white",
            edgecolor="0.3",
            hatch="///",
            label=f"hatched: not significant ({adj}); colour = estimate",
        ),  # fmt: skip
        Patch(facecolor="0.82", edgecolor="0.3", hatch="xx", label="not tested: overloaded"),
    ]
    if dense:  # cells too small to hatch: faded colour and plain grey instead
        legend[2:] = [
            Patch(
                facecolor=_faded(cmap(0.15)),
                label=f"faded: not significant ({adj}); colour = estimate",
            ),
            Patch(facecolor="0.55", label="grey: not tested, overloaded"),
        ]
    if (grid.kind == NO_RESULT).any():
        legend.append(Patch(facecolor="white", edgecolor="0.6", label="no result"))
    fig.legend(handles=legend, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    if image is not None:
        bar = fig.colorbar(image, ax=axs.ravel().tolist(), fraction=0.05, pad=0.02)
        ticks = colour_ticks(limit)
        bar.set_ticks(
            [math.log1p(t / 100) for t in ticks], labels=[f"{t:+d}%" if t else "0%" for t in ticks]
        )
        better = "lower" if not higher_is_better(metric) else "higher"
        bar.set_label(
            f"{who} / {plan.baseline} - 1 (%, log-ratio scale)\nblue: {who} {better} (better)",
            fontsize=8,
        )
        bar.ax.tick_params(labelsize=7)
    _save(fig, path)
    plt.close(fig)
    return grid


def is_dense(grid: Grid) -> bool:
    """Cells too small to hatch legibly: not significant cells are faded instead."""
    return grid.rel.shape[2] > DENSE_X or grid.rel.shape[1] > DENSE_Y


def _faded(rgba: Any) -> tuple[float, ...]:
    """A colour under the FADE overlay (what a faded cell of that colour looks like)."""
    a = FADE[3]
    return tuple((1 - a) * c + a * 1.0 for c in rgba[:3])


def colour_ticks(limit: float, most: int = 9) -> list[int]:
    """Percentages for the colour bar: from _TICK_PCTS within +-limit (log-ratio scale), at
    least limit / 4 apart on that scale so that their labels never overlap; 0 always."""
    ticks = [0]
    gap = 2 * limit / (most - 1)
    for side in (1, -1):
        last = 0.0
        for t in sorted((t for t in _TICK_PCTS if t * side > 0), key=abs):
            v = math.log1p(t / 100)
            if abs(v) > limit * 1.0001:
                break
            if abs(v - last) >= gap * 0.999:
                ticks.append(t)
                last = v
    return sorted(ticks)


def _cells(mask: np.ndarray, face: Any, pattern: str | None, ink: str) -> Any:
    """The cells where `mask` holds as one collection of squares (face colour and hatch)."""
    from matplotlib.collections import PolyCollection

    j, i = np.nonzero(mask)
    corners = np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)])
    verts = np.stack([i, j], axis=1)[:, None, :] + corners[None, :, :]
    return PolyCollection(list(verts), facecolors=face, edgecolors=ink, linewidths=0.0,
                          hatch=pattern)  # fmt: skip


def _annotate(ax: Any, grid: Grid, k: int, value: np.ndarray, norm: Any) -> None:
    """Each cell's percentage (or `overloaded`), dark or light for contrast with its colour."""
    import matplotlib.patheffects as pe

    ny, nx = value.shape
    for j in range(ny):
        for i in range(nx):
            kind, rel = grid.kind[k, j, i], grid.rel[k, j, i]
            if kind == NO_RESULT:
                continue
            if kind == NOT_TESTED:
                text = "over-\nloaded"
            else:
                v = rel * 100
                text = f"{v:+.0f}%" if abs(v) >= 10 else f"{v:+.1f}%"
            strong = kind != NOT_TESTED and abs(norm(value[j, i]) - 0.5) > DARK
            ink, halo = ("white", "black") if strong else ("black", "white")
            ax.text(i, j, text, ha="center", va="center", fontsize=7, color=ink,
                    path_effects=[pe.withStroke(linewidth=2.2, foreground=halo)])  # fmt: skip


def _adjust(plan: Plan) -> str:
    method = str(getattr(plan.study, "multiple_comparisons", "holm"))
    return {"holm": "Holm", "bonferroni": "Bonferroni", "bh": "BH", "none": "not"}.get(
        method, method
    )


def heatmaps(plan: Plan, detail: pd.DataFrame, metrics: list[str], out_dir: Path) -> list[str]:
    """One heat map per metric (at most MAX_HEATMAPS) when two or more axes are swept."""
    files = []
    for metric in metrics[:MAX_HEATMAPS]:
        name = f"heatmap_{metric}.png"
        if heatmap_plot(plan, detail, metric, out_dir / name) is not None:
            files.append(name)
    return files


def _y_scale(rows: pd.DataFrame) -> tuple[str, float, float]:
    """One y range for every panel (so panels compare): linear from 0, or a log scale when the
    intervals span more than a factor of 20 (an overloaded point would flatten the rest)."""
    lo = rows["ci_low"].to_numpy(dtype=float)
    hi = rows["ci_high"].to_numpy(dtype=float)
    est = rows["estimate"].to_numpy(dtype=float)
    top = float(np.nanmax(np.concatenate([hi, est])))
    low = np.concatenate([lo, est])
    low = low[np.isfinite(low) & (low > 0)]
    bottom = float(low.min()) if low.size else 0.0
    if bottom > 0 and top / bottom > 20:
        return "log", bottom / 1.3, top * 1.3
    return "linear", 0.0, top * 1.05


def sweep_plots(summary: pd.DataFrame, plan: Plan, out_dir: Path) -> list[str]:
    """One PNG per metric against the first swept axis: each architecture a line with its
    interval as a labelled band; one panel per value of the other axes (small multiples)."""
    axes, index = sweep_axes(plan)
    if not axes or summary.empty:
        return []
    x, rest = axes[0], axes[1:]
    sizes = [len(ax.values) for ax in rest]
    total = math.prod(sizes)
    facets = list(itertools.product(*thin_product(sizes, MAX_PANELS)))
    pos = summary["scenario_id"].map(index)
    known = pos.notna()
    s = summary[known].assign(_x=[p[0] for p in pos[known]], _f=[p[1:] for p in pos[known]])
    xv = np.array([v[0] for v in x.values], dtype=float) if x.numeric else np.arange(len(x.values))
    plt = _plt()
    pct = f"{plan.confidence * 100:g}%"
    files = []
    for metric in SWEEP_METRICS:
        rows = s[s["metric"] == metric]
        if rows.empty:
            continue
        r, c = _grid_shape(len(facets))
        fig, axs = plt.subplots(r, c, figsize=(5.2 * c + 0.6, 3.6 * r + 0.8), squeeze=False,
                                sharex=True, sharey=True)  # fmt: skip
        by_facet = {f: g for f, g in rows.groupby("_f", sort=False)}
        for k in range(r * c):
            ax = axs[k // c][k % c]
            if k >= len(facets):
                ax.set_visible(False)
                continue
            g = by_facet.get(facets[k], rows.iloc[:0])
            for arch in plan.architectures:
                a = g[g["architecture"] == arch].sort_values("_x")
                if a.empty:
                    continue
                at = xv[a["_x"].to_numpy(dtype=int)]
                (line,) = ax.plot(
                    at, a["estimate"], marker="o" if len(at) <= 40 else None, ms=3, label=arch
                )
                ax.fill_between(at, a["ci_low"], a["ci_high"], alpha=0.2, color=line.get_color(),
                                label=f"{arch}, {pct} interval")  # fmt: skip
                over = a["flags"].fillna("").str.contains("unstable").to_numpy()
                if over.any():
                    ax.plot(at[over], a["estimate"].to_numpy()[over], "x", color="black", ms=7,
                            label="overloaded: not tested")  # fmt: skip
            if rest:
                said = [ax_.said(i) for ax_, i in zip(rest, facets[k], strict=True)]
                ax.set_title(", ".join(said), fontsize=9)
            if not x.numeric:
                ax.set_xticks(xv[_ticks(len(xv))], [x.tick(i) for i in _ticks(len(xv))])
            ax.set_xlabel(x.label())
            ax.xaxis.set_tick_params(labelbottom=True)
        scale = _y_scale(rows)
        for a in axs.ravel():
            a.set_ylabel(f"{metric_label(metric)} (s{', log scale' if scale[0] == 'log' else ''})")
            a.set_yscale(scale[0])
            a.set_ylim(*scale[1:])
            if scale[0] == "log":  # ticks at 1, 2, 5 x 10^k, written plainly (0.5, 2, 10)
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                a.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                a.yaxis.set_minor_formatter(NullFormatter())
        seen: dict[str, Any] = {}  # label -> handle, over every panel
        for a in axs.ravel():
            for h, lb in zip(*a.get_legend_handles_labels(), strict=True):
                seen.setdefault(lb, h)
        title = f"{plan.study.name}: {metric_label(metric)} against {x.label()}"
        if total > len(facets):
            title += f" ({len(facets)} of {total} panels, evenly spaced)"
        fig.suptitle(title, fontsize=10)
        if len(facets) == 1:
            axs[0][0].legend(list(seen.values()), list(seen), fontsize=8)
            fig.tight_layout()
        else:
            fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=3, fontsize=8,
                       frameon=False)  # fmt: skip
            fig.tight_layout(rect=(0, 0.07, 1, 0.96))
        name = f"sweep_{metric}.png"
        _save(fig, out_dir / name)
        plt.close(fig)
        files.append(name)
    return files
