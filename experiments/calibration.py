"""Post-hoc calibration in NumPy (float64): temperature scaling, ECE, NLL, reliability bins.

The experiments record per-example logits on the validation and test splits (a
``test_fn`` with ``final_splits=("val",)``, see `experiments.harness.Variant`); these
functions fit on the first and measure on the second, outside any jitted program, in
float64, so that a fit never depends on float32 rounding or on a device.

* `fit_temperature`: the one scalar ``T > 0`` that minimizes the mean NLL of
  ``softmax(logits / T)`` (Guo et al., "On Calibration of Modern Neural Networks",
  ICML 2017). A bounded 1-D search on ``log T``: a grid, then golden-section inside the
  bracket of the best grid point. The NLL is convex in ``1 / T`` (a log-sum-exp of
  linear functions minus a linear one), hence unimodal in ``log T``, so the bracket holds
  the minimum and the search needs no derivative and cannot diverge; a minimum beyond the
  bounds is returned as the bound and flagged.
* `nll`, `accuracy`, `confidence`: from logits, at a temperature. Dividing by ``T > 0``
  keeps the order of the logits, so the accuracy does not depend on ``T`` (`accuracy`
  has no temperature on purpose).
* `ece` (equal-width bins, the convention of `jaxloss.calibration_bins`: bin ``b``
  covers ``(b/n, (b+1)/n]``) and `adaptive_ece` (equal-mass bins: the examples sorted by
  confidence, cut into ``n`` groups of equal size, ties kept together; Nixon et al.,
  "Measuring Calibration in Deep Learning", CVPR workshops 2019). Both are top-label:
  confidence = largest probability, correct = argmax equals the label; in [0, 1].
* `reliability`: per-bin counts, mean confidence and accuracy (equal-width), for diagrams;
  `calibrate`: all of the above before and after a temperature fit on validation.

Shapes are in the names: ``logits_NxC`` (examples x classes), ``labels_N`` integer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["BINS", "T_BOUNDS", "accuracy", "adaptive_ece", "calibrate", "confidence", "ece",
           "fit_temperature", "log_softmax", "nll", "reliability"]

BINS = 15  # Guo et al. 2017; also jaxloss.expected_calibration_error's default
T_BOUNDS = (0.01, 100.0)  # the temperatures fit_temperature searches
_GRID = 61  # grid points on log T before the golden-section refinement
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def _inputs(logits_NxC, labels_N=None) -> tuple[np.ndarray, np.ndarray | None]:
  z = np.asarray(logits_NxC, np.float64)
  if z.ndim != 2 or z.shape[1] < 2 or not np.all(np.isfinite(z)):
    raise ValueError(f"logits must be finite, [examples, classes >= 2]; got shape {z.shape}")
  if labels_N is None:
    return z, None
  y = np.asarray(labels_N)
  if y.shape != z.shape[:1] or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integers [{z.shape[0]}], got {y.dtype} {y.shape}")
  if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
    raise ValueError(f"labels must lie in [0, {z.shape[1]}), got [{y.min()}, {y.max()}]")
  return z, y


def log_softmax(logits_NxC, temperature: float = 1.0) -> np.ndarray:
  """``log softmax(logits / T)`` in float64, from the row maximum (no overflow)."""
  z, _ = _inputs(logits_NxC)
  z = z / temperature
  z = z - z.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits_NxC, labels_N, temperature: float = 1.0) -> float:
  """Mean negative log-likelihood ``-log softmax(logits / T)[label]`` (nats)."""
  z, y = _inputs(logits_NxC, labels_N)
  return float(-log_softmax(z, temperature)[np.arange(y.size), y].mean())


def accuracy(logits_NxC, labels_N) -> float:
  """Share of examples whose argmax is the label (the same at every temperature)."""
  z, y = _inputs(logits_NxC, labels_N)
  return float(np.mean(z.argmax(axis=1) == y))


def _confidence_correct(logits_NxC, labels_N, temperature) -> tuple[np.ndarray, np.ndarray]:
  z, y = _inputs(logits_NxC, labels_N)
  conf_N = np.exp(log_softmax(z, temperature).max(axis=1))
  return conf_N, (z.argmax(axis=1) == y).astype(np.float64)


def confidence(logits_NxC, temperature: float = 1.0) -> np.ndarray:
  """Per-example confidence, the largest probability of ``softmax(logits / T)``: ``[N]``."""
  return np.exp(log_softmax(logits_NxC, temperature).max(axis=1))


def reliability(logits_NxC, labels_N, temperature: float = 1.0, *,
                bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Equal-width bins: ``(counts [bins], mean confidence [bins], accuracy [bins])``.

  Bin ``b`` covers ``(b/bins, (b+1)/bins]``, the first also holds 0 (as
  `jaxloss.calibration_bins`); an empty bin has confidence and accuracy NaN.
  """
  conf_N, correct_N = _confidence_correct(logits_NxC, labels_N, temperature)
  edges = np.arange(bins + 1, dtype=np.float64) / bins
  which = np.clip(np.searchsorted(edges, conf_N, side="left") - 1, 0, bins - 1)
  counts = np.bincount(which, minlength=bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_conf = np.bincount(which, conf_N, minlength=bins) / counts
    acc = np.bincount(which, correct_N, minlength=bins) / counts
  return counts, mean_conf, acc


def ece(logits_NxC, labels_N, temperature: float = 1.0, *, bins: int = BINS) -> float:
  """Expected calibration error with `bins` equal-width bins: ``sum_b n_b / N |acc_b -
  conf_b|`` (the value of `jaxloss.expected_calibration_error`, in float64)."""
  counts, conf, acc = reliability(logits_NxC, labels_N, temperature, bins=bins)
  full = counts > 0
  return float(np.sum(counts[full] * np.abs(acc[full] - conf[full])) / counts.sum())


def adaptive_ece(logits_NxC, labels_N, temperature: float = 1.0, *, bins: int = BINS) -> float:
  """ECE with equal-mass bins: the examples sorted by confidence and cut into `bins` groups of
  equal size (cut ``i`` after ``round(i N / bins)`` examples), except that equal confidences
  always share a bin (a cut inside a run of ties moves to its start), so the value does not
  depend on the order of the examples.

  Equal-width bins put nearly every example of a confident model in the top bin; equal
  counts spend the resolution where the examples are.
  """
  conf_N, correct_N = _confidence_correct(logits_NxC, labels_N, temperature)
  order = np.argsort(conf_N, kind="stable")
  conf_N, correct_N = conf_N[order], correct_N[order]
  n = conf_N.size
  cuts = [round(i * n / bins) for i in range(1, bins)]
  cuts = np.searchsorted(conf_N, conf_N[np.minimum(cuts, n - 1)], side="left")
  edges = np.unique(np.concatenate([[0], cuts, [n]]))
  gaps = [abs(correct_N[a:b].sum() - conf_N[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
  return float(np.sum(gaps) / n)


def fit_temperature(logits_NxC, labels_N, *, bounds: tuple[float, float] = T_BOUNDS,
                    tol: float = 1e-9) -> tuple[float, bool]:
  """The temperature ``T`` in `bounds` that minimizes ``nll(logits, labels, T)``.

  A grid of `_GRID` points equally spaced in ``log T``, then golden-section search on
  ``log T`` between the neighbours of the best grid point, to `tol` in ``log T``. The NLL
  is convex in ``1 / T``, hence unimodal in ``log T``: the bracket holds the minimum.

  Returns:
    ``(T, at_bound)``: `at_bound` is True when the minimum lies at (or beyond) a bound,
    e.g. a model whose validation predictions are all right (its NLL falls as ``T -> 0``).
  """
  z, y = _inputs(logits_NxC, labels_N)
  lo, hi = (math.log(b) for b in bounds)
  if not lo < hi:
    raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
  # The NLL at log T = u, from the logits' gaps to the true class (shift invariant).
  gap_NxC = z - z[np.arange(y.size), y][:, None]

  def loss(u: float) -> float:
    s = gap_NxC * math.exp(-u)
    top = s.max(axis=1)
    return float(np.mean(top + np.log(np.exp(s - top[:, None]).sum(axis=1))))

  grid = np.linspace(lo, hi, _GRID)
  values = [loss(u) for u in grid]
  best = int(np.argmin(values))
  a, b = grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)]
  c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
  fc, fd = loss(c), loss(d)
  while b - a > tol:
    if fc <= fd:
      b, d, fd = d, c, fc
      c = b - _INV_PHI * (b - a)
      fc = loss(c)
    else:
      a, c, fc = c, d, fd
      d = a + _INV_PHI * (b - a)
      fd = loss(d)
  u = (a + b) / 2
  candidates = [(loss(u), u), (values[best], grid[best])]
  u = min(candidates)[1]  # the refinement never returns worse than the grid
  at_bound = u - lo < 1e-6 or hi - u < 1e-6
  return float(math.exp(u)), bool(at_bound)


def calibrate(val_logits_NxC, val_labels_N, test_logits_MxC, test_labels_M, *,
              bins: int = BINS) -> dict[str, Any]:
  """Fits ``T`` on validation, applies it to the test logits; the test metrics before
  (``T = 1``) and after.

  Returns:
    ``temperature``, ``at_bound`` (see `fit_temperature`), ``accuracy`` (unchanged by
    ``T``), and ``ece``, ``adaptive_ece``, ``nll``, ``confidence`` (mean) each as
    ``NAME_before`` and ``NAME_after``.
  """
  t, at_bound = fit_temperature(val_logits_NxC, val_labels_N)
  out: dict[str, Any] = {"temperature": t, "at_bound": at_bound,
                         "accuracy": accuracy(test_logits_MxC, test_labels_M)}
  for tag, temp in (("before", 1.0), ("after", t)):
    out[f"ece_{tag}"] = ece(test_logits_MxC, test_labels_M, temp, bins=bins)
    out[f"adaptive_ece_{tag}"] = adaptive_ece(test_logits_MxC, test_labels_M, temp, bins=bins)
    out[f"nll_{tag}"] = nll(test_logits_MxC, test_labels_M, temp)
    out[f"confidence_{tag}"] = float(confidence(test_logits_MxC, temp).mean())
  return out
