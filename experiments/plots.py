"""Figures of the experiments: matplotlib without a display, and the shared plot pieces."""

from __future__ import annotations

import os
import warnings

import numpy as np

from experiments import outputs

__all__ = ["colors", "plain_log_ticks", "plot_band", "pyplot", "save"]


def pyplot():
  """`matplotlib.pyplot` on the Agg backend (files only, no display needed)."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  return plt


def save(fig, path: str) -> None:
  """Saves `fig` to `path` (folders made as needed) at 120 dpi and closes it (only closes it
  on a process that does not write, see `experiments.outputs.is_writer`)."""
  if outputs.is_writer():
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
  pyplot().close(fig)


def plot_band(ax, x, curves_ExS, label: str, **kwargs):
  """Mean over seeds (columns) as a line, min-max over seeds as a shaded band."""
  y = np.asarray(curves_ExS, np.float64)
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs (diverged seeds)
    mean, lo, hi = np.nanmean(y, axis=1), np.nanmin(y, axis=1), np.nanmax(y, axis=1)
  (line,) = ax.plot(x, mean, marker=".", label=label, **kwargs)
  ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
  return line


def colors(n: int) -> list:
  """`n` distinct colours: tab20's dark shades first (ten hues), then its light ones."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  if n <= 20:
    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i) for i in (list(range(0, 20, 2)) + list(range(1, 20, 2)))[:n]]
  cmap = matplotlib.colormaps["turbo"]
  return [cmap(x) for x in np.linspace(0.0, 1.0, n)]


def plain_log_ticks(axis) -> None:
  """Log-scale tick labels as plain numbers (``0.5``, ``2``, ``20``), not powers of ten."""
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel

  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axis.set_minor_formatter(ticker.FuncFormatter(
      lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))
