"""Reward-landscape and goal/non-goal histogram figures (matplotlib, imported lazily).

Figures are built with matplotlib's object API (no pyplot: no GUI backend, no global state)
and rendered to PNG bytes by its Agg renderer; the caller writes them with the other outputs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, ncols, squeeze=False)[0])
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scaled(r: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]: alphas give rewards on different scales; the shape is what counts."""
    span = r.max() - r.min()
    return np.zeros_like(r) if span == 0 else (r - r.min()) / span


def landscape(values: np.ndarray, curves: Sequence[tuple[str, np.ndarray]],
              goal_spans: Sequence[tuple[float, float]], variable: str, title: str) -> bytes:
    """Reward vs the goal variable, one line per formula (each min-max scaled), the goal
    region shaded: the shape of the paper's Figure 2."""
    fig, (ax,) = _figure(6.4, 3.6)
    for lo, hi in goal_spans:
        ax.axvspan(lo, hi, color="tab:green", alpha=0.15, lw=0)
    for name, rewards in curves:
        ax.plot(values, _scaled(rewards), label=name, lw=1.6)
    ax.plot([], [], color="tab:green", alpha=0.3, lw=8, label="goal region")
    ax.set(xlabel=variable, ylabel="reward (min-max scaled)", title=title,
           xlim=(values.min(), values.max()))
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def histograms(panels: Sequence[tuple[str, np.ndarray]], goal: np.ndarray, title: str
               ) -> bytes:
    """Goal vs non-goal reward histograms, one panel per formula (raw rewards)."""
    fig, axes = _figure(3.2, 2.8, ncols=len(panels))
    for ax, (name, rewards) in zip(axes, panels, strict=True):
        bins = np.histogram_bin_edges(rewards, bins=20)
        ax.hist(rewards[~goal], bins=bins, alpha=0.6, label="non-goal", color="tab:gray")
        ax.hist(rewards[goal], bins=bins, alpha=0.7, label="goal", color="tab:green")
        ax.set(title=name, xlabel="reward")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("frames")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)
