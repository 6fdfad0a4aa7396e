"""Report figures (matplotlib, Agg backend) returned as base64 PNG, so the HTML is one file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


@dataclass(frozen=True)
class Curve:
    """One model's pass@k curve with its bootstrap interval."""

    label: str
    ks: Sequence[int]
    mean: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]


def png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (and the figure closed: pyplot keeps every open one alive)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def passk_figure(title: str, curves: Sequence[Curve]) -> str:
    """pass@k against k (log₂ x axis) with shaded 95% intervals, one line per model."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for curve in curves:
        (line,) = ax.plot(curve.ks, curve.mean, marker="o", markersize=3, label=curve.label)
        ax.fill_between(curve.ks, curve.low, curve.high, color=line.get_color(), alpha=0.18,
                        linewidth=0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 2, 4, not 2⁰, 2¹
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png_base64(fig)


def training_figure(
    title: str, panels: Sequence[tuple[str, dict[str, tuple[list[float], list[float]]]]],
) -> str:
    """Small multiples, one panel per quantity; a panel maps series label → (steps, values)."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for label, (steps, values) in series.items():
            ax.plot(steps, values, label=label, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return png_base64(fig)
