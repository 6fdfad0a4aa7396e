"""Report figures (matplotlib, Agg backend), as base64 PNG for the one-file HTML or as files.

Every figure that compares models takes a ``colors`` map (label → colour, from ``colors_for``),
so a method keeps its colour from the pass@k panels to the training panels. Labels and titles
(folder names, task names: anything a user named) are drawn as plain text (``plain``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from agpo.io import replace_bytes

BASE_LABEL = "base"
Series = tuple[list[float], list[float]]
"""(x values, y values) of one line."""


@dataclass(frozen=True)
class Curve:
    """One model's pass@k curve with its bootstrap interval."""

    label: str
    ks: Sequence[int]
    mean: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]


def plain(text: str) -> str:
    """``text`` drawn as written: matplotlib reads ``$...$`` as mathtext, so a folder named
    ``run_$x`` would fail the figure (or change how it reads); ``\\$`` is a literal ``$``."""
    return text.replace("$", r"\$")


def colors_for(labels: Sequence[str]) -> dict[str, str]:
    """label → colour: the base model black, the others the tab20 cycle in order of first
    appearance (tab20 rather than tab10: the evidence compares up to 17 methods)."""
    cycle = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 == 0]
    cycle += [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 == 1]
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            rank = len([x for x in out if x != BASE_LABEL])
            out[label] = "black" if label == BASE_LABEL else matplotlib.colors.to_hex(
                cycle[rank % len(cycle)])
    return out


def png_bytes(fig: Figure) -> bytes:
    """The figure as a PNG file's bytes (and the figure closed: pyplot keeps every open one
    alive)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG, for an <img> of a one-file HTML page (and closed)."""
    return base64.b64encode(png_bytes(fig)).decode("ascii")


def save_png(fig: Figure, path: Path) -> Path:
    """The figure written to ``path`` atomically (a report rewritten while a long run goes on
    is never half a file), and closed."""
    replace_bytes(path, png_bytes(fig))
    return path


def draw_passk(ax: Axes, title: str, curves: Sequence[Curve],
               colors: Mapping[str, str] | None = None) -> None:
    """pass@k against k (log₂ x axis) with shaded 95% intervals, one line per model."""
    for curve in curves:
        color = (colors or {}).get(curve.label)
        base = curve.label == BASE_LABEL
        (line,) = ax.plot(curve.ks, curve.mean, marker="o", markersize=3, label=plain(curve.label),
                          color=color, linewidth=2.2 if base else 1.3, zorder=3 if base else 2)
        ax.fill_between(curve.ks, curve.low, curve.high, color=line.get_color(), alpha=0.15,
                        linewidth=0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 2, 4, not 2⁰, 2¹
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(plain(title), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def passk_panels(
    panels: Sequence[tuple[str, Sequence[Curve]]], colors: Mapping[str, str] | None = None,
    title: str = "", cols: int = 2,
) -> Figure:
    """Side-by-side pass@k panels on the same y axis, one legend for all of them."""
    cols = min(cols, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.9 * rows), squeeze=False)
    for ax, (name, curves) in zip(axes.flat, panels):
        draw_passk(ax, name, curves, colors)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _legend(fig, axes.flat[0])
    if title:
        fig.suptitle(plain(title))
    fig.tight_layout()
    return fig


def passk_figure(title: str, curves: Sequence[Curve],
                 colors: Mapping[str, str] | None = None) -> str:
    """One pass@k panel as a base64 PNG."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    draw_passk(ax, title, curves, colors)
    ax.legend(fontsize=8, loc="best")
    return png_base64(fig)


def training_panels(
    panels: Sequence[tuple[str, Mapping[str, Series]]], colors: Mapping[str, str] | None = None,
    xlabel: str = "step", title: str = "",
) -> Figure:
    """Small multiples on shared x: one panel per quantity, one line per run (label → series)."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.9 * rows), squeeze=False,
                             sharex=True)
    for ax, (name, series) in zip(axes.flat, panels):
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, label=plain(label), linewidth=1.2, color=(colors or {}).get(label))
        ax.set_title(plain(name), fontsize=10)
        ax.tick_params(labelsize=8, labelbottom=True)
        ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(plain(xlabel), fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    widest = max(axes.flat[: len(panels)], key=lambda a: len(a.get_lines()))
    _legend(fig, widest)
    if title:
        fig.suptitle(plain(title), y=1.0)
    fig.tight_layout()
    return fig


def _legend(fig: Figure, ax: Axes) -> None:
    """One legend above the panels (the panels stay uncluttered)."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) > 1:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=min(len(labels), 6), fontsize=8, frameon=False)
