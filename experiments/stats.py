"""Paired statistics behind every experiment verdict (numpy and `math` only).

Arms are compared in pairs on the same seeds and test examples: effects ``a - b`` in accuracy
points, p-values Holm-adjusted per call; `verdict` never calls a tie from absence of evidence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Comparison", "Interval", "compare_pairs", "holm", "mcnemar_exact", "paired_bootstrap",
           "paired_t_interval", "paired_t_pvalue", "t_cdf", "t_quantile", "verdict"]

TESTS = ("mcnemar", "bootstrap", "paired-t")


def _check_df(df: int) -> int:
  if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
    raise ValueError(f"degrees of freedom must be an integer >= 1, got {df!r}")
  return int(df)


def _upper_tail(t: float, df: int) -> float:
  """``P(T > t)`` for ``t >= 0`` and integer ``df``, in O(df), by A&S 26.7.3/26.7.4.

  ``a = P(|T| < t)`` is a finite series in ``x = cos^2(atan(t / sqrt(df)))``; a small tail
  ``(1 - a) / 2`` is summed as the rest of the infinite series instead (no cancellation).
  """
  if math.isinf(t):
    return 0.0
  r = math.hypot(t, math.sqrt(df))
  s, c = t / r, math.sqrt(df) / r
  x, odd = c * c, df % 2
  ratio = lambda k: x * (2 * k + 1 + odd) / (2 * k + 2 + odd)  # term k+1 / term k
  term, total, k0 = 1.0, 0.0, (df - 1) // 2 if odd else df // 2
  for k in range(k0):
    total, term = total + term, term * ratio(k)
  a = 2 / math.pi * (math.atan2(t, math.sqrt(df)) + s * c * total) if odd else s * total
  if (tail := 0.5 * (1.0 - a)) > 1e-3 or x > 0.999:  # no cancellation, or a slow rest
    return max(tail, 0.0)
  rest, k = 0.0, k0
  while term > max(1e-17 * rest, 1e-300):  # (a product of ratios can stall at 5e-324)
    rest, term, k = rest + term, term * ratio(k), k + 1
  return s * c * rest / math.pi if odd else 0.5 * s * rest


def t_cdf(t: float, df: int) -> float:
  """Student-t CDF ``P(T <= t)`` for integer ``df >= 1``, in closed form (see `_upper_tail`)."""
  df = _check_df(df)
  if math.isnan(t):
    return math.nan
  return 1.0 - _upper_tail(t, df) if t >= 0 else _upper_tail(-t, df)


def t_quantile(q: float, df: int) -> float:
  """Student-t quantile (``t_cdf(t, df) = q``): bisection on the smaller tail, to adjacent floats.

  >>> round(t_quantile(0.975, 4), 6), t_quantile(0.5, 7), round(t_quantile(0.25, 1), 12)
  (2.776445, 0.0, -1.0)
  """
  df = _check_df(df)
  if not 0.0 < q < 1.0:
    raise ValueError(f"q must lie strictly between 0 and 1, got {q!r}")
  if q == 0.5:
    return 0.0
  p, lo, hi = min(q, 1.0 - q), 0.0, 1.0  # 1 - q is exact for q >= 0.5
  while _upper_tail(hi, df) > p:
    lo, hi = hi, 2.0 * hi
  while lo < (mid := 0.5 * (lo + hi)) < hi:
    lo, hi = (mid, hi) if _upper_tail(mid, df) > p else (lo, mid)
  return hi if q > 0.5 else -hi


@dataclasses.dataclass(frozen=True)
class Interval:
  """Estimate and two-sided interval; `n` paired observations (seeds, or seed x example cells)."""
  mean: float
  low: float
  high: float
  n: int
  confidence: float


def _mean_se(diffs: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
  """Mean, standard error ``std(ddof=1) / sqrt(n)`` (exactly 0 if all equal) and ``n``."""
  d = np.asarray(diffs, dtype=np.float64)
  if d.ndim != 1 or d.size < 2 or not np.all(np.isfinite(d)):
    raise ValueError(f"need a 1-D sequence of at least 2 finite paired differences, got {d!r}")
  if np.all(d == d[0]):
    return float(d[0]), 0.0, d.size
  return float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size), d.size


def paired_t_interval(diffs: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> Interval:
  r"""Mean paired difference with its t interval :math:`\bar d \pm t_{(1+c)/2,\,n-1}\, s/\sqrt{n}`.

  >>> i = paired_t_interval([1.0, 2.0, 3.0])
  >>> i.mean, round(i.low, 4), round(i.high, 4), i.n
  (2.0, -0.4841, 4.4841, 3)
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
  mean, se, n = _mean_se(diffs)
  half = t_quantile(0.5 + confidence / 2, n - 1) * se if se > 0 else 0.0
  return Interval(mean, mean - half, mean + half, n, confidence)


def paired_t_pvalue(diffs: Sequence[float] | np.ndarray) -> float:
  r"""Two-sided paired t test, :math:`2 P(T_{n-1} > |\bar d| \sqrt{n} / s)`; 1 or 0 if s = 0."""
  mean, se, n = _mean_se(diffs)
  if se == 0:
    return 1.0 if mean == 0 else 0.0
  return min(1.0, 2.0 * _upper_tail(abs(mean) / se, n - 1))


def _paired_bools(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
  if a.shape != b.shape:
    raise ValueError(f"correct_a and correct_b differ in shape: {a.shape} and {b.shape}")
  return a, b


def mcnemar_exact(correct_a: np.ndarray | Sequence[bool],
                  correct_b: np.ndarray | Sequence[bool]) -> float:
  """Exact two-sided McNemar test on paired correctness (any shape; pairs pooled).

  With b (c) the pairs only a (b) gets right: p = min(1, 2 P(Binom(b + c, 1/2) <= min(b, c))).

  >>> mcnemar_exact([True, True, True, False], [False, False, False, False])
  0.25
  """
  a, b = _paired_bools(correct_a, correct_b)
  n_b, n_c = int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))
  m, k = n_b + n_c, min(n_b, n_c)
  if 2 * k >= m:  # b == c, including b + c == 0
    return 1.0
  j = np.arange(k)
  series = 1.0 + float(np.cumprod((k - j) / (m - k + 1.0 + j)).sum())
  return min(1.0, 2.0 * (math.comb(m, k) / 2**m) * series)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> tuple[Interval, float]:
  r"""Seeds x examples (1-D: one seed) paired bootstrap of the difference ``a - b``, in points.

  Both arms share each replicate's seed and example draws. Returns the observed difference
  with its percentile interval, and p = 2 min(P*(<= 0), P*(>= 0)) in ``[1/(n_boot+1), 1]``.
  """
  a, b = _paired_bools(correct_a, correct_b)
  a, b = (a[None], b[None]) if a.ndim == 1 else (a, b)
  if a.ndim != 2 or a.size == 0 or n_boot < 1 or not 0.0 < confidence < 1.0:
    raise ValueError(f"need non-empty seeds x examples arrays, n_boot >= 1, 0 < confidence < 1; "
                     f"got shape {a.shape}, n_boot={n_boot}, confidence={confidence}")
  (n_seeds, n_examples), scale = a.shape, 100.0 / a.size
  d = a.astype(np.float64) - b
  observed = float(d.sum()) * scale
  cols = d[:, np.any(d != 0, axis=0)]
  if (n_cols := cols.shape[1]) == 0:
    return Interval(observed, observed, observed, a.size, confidence), 1.0
  rng, values = np.random.default_rng(seed), np.empty(n_boot)
  chunk = max(1, 2**21 // n_examples)
  for start in range(0, n_boot, chunk):
    size = min(chunk, n_boot - start)
    w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size)
    per_col = (w @ cols).ravel()  # (size, K): each column's difference summed over drawn seeds
    rows = np.repeat(np.arange(size), rng.binomial(n_examples, n_cols / n_examples, size=size))
    picks = rows * n_cols + rng.integers(0, n_cols, size=rows.size)
    values[start:start + size] = np.bincount(rows, weights=per_col[picks], minlength=size) * scale
  low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
  p = 2.0 * min(np.mean(values <= 0), np.mean(values >= 0)) if values.any() else 1.0
  return (Interval(observed, float(low), float(high), a.size, confidence),
          float(min(1.0, max(1.0 / (n_boot + 1), p))))


def holm(pvalues: Sequence[float]) -> list[float]:
  """Holm step-down adjusted p-values, in input order.

  >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
  [0.03, 0.06, 0.06, 0.02]
  """
  p = np.asarray(pvalues, dtype=np.float64)
  if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
    raise ValueError(f"p-values must be a flat sequence of numbers in [0, 1], got {pvalues!r}")
  order = np.argsort(p, kind="stable")
  out = np.empty(p.size)
  out[order] = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
  return out.tolist()


def verdict(interval: Interval, p_adjusted: float, *, margin: float = 0.15,
            alpha: float = 0.05) -> str:
  """The call on an effect ``a - b`` in accuracy points (positive: the first arm better).

  "equivalent" if ``-margin < low`` and ``high < margin``; else "better" or "worse" if
  ``p_adjusted < alpha`` and the interval excludes 0 on the mean's side; else "inconclusive".
  """
  if not margin > 0 or not 0 < alpha < 1:
    raise ValueError(f"need margin > 0 and 0 < alpha < 1, got margin={margin!r}, alpha={alpha!r}")
  if -margin < interval.low and interval.high < margin:
    return "equivalent"
  if p_adjusted < alpha and interval.low > 0 and interval.mean > 0:
    return "better"
  if p_adjusted < alpha and interval.high < 0 and interval.mean < 0:
    return "worse"
  return "inconclusive"


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One verdict on arm `a` against arm `b`; the effect is ``a - b`` (positive: `a` better)."""
  a: str
  b: str
  interval: Interval
  p_value: float
  p_holm: float
  verdict: str
  margin: float
  test: str

  def sentence(self, unit: str = "accuracy points") -> str:
    """E.g. ``"a vs b: +0.42 accuracy points (95% CI +0.21 to +0.63), Holm p = 0.0031: better."``"""
    i = self.interval
    p = "Holm p < 0.0001" if self.p_holm < 1e-4 else f"Holm p = {self.p_holm:.4f}"
    return (f"{self.a} vs {self.b}: {i.mean:+.2f} {unit} ({100 * i.confidence:g}% CI "
            f"{i.low:+.2f} to {i.high:+.2f}), {p}: {self.verdict}.")


def holm_family(*groups: Sequence[Comparison]) -> list[list[Comparison]]:
  """The comparisons of all `groups` Holm-adjusted together, as one family (an experiment's
  comparisons are often made in several calls), with each verdict redone at its own margin.

  Returns the groups in their order and shapes: ``a, b = holm_family(first, second)``.
  """
  flat = [c for group in groups for c in group]
  adjusted = iter(holm([c.p_value for c in flat]))
  return [[dataclasses.replace(c, p_holm=(p := next(adjusted)),
                               verdict=verdict(c.interval, p, margin=c.margin))
           for c in group] for group in groups]


def compare_pairs(accuracy: Mapping[str, Sequence[float]], pairs: Sequence[tuple[str, str]], *,
                  correct: Mapping[str, np.ndarray] | None = None, test: str = "mcnemar",
                  margin: float = 0.15, alpha: float = 0.05, confidence: float = 0.95,
                  n_boot: int = 2000, seed: int = 0) -> list[Comparison]:
  """Compares each ``(a, b)`` pair on paired seeds; Holm across the pairs of this call.

  `accuracy[name]`: per-seed accuracy in percent, one seed order (paired t intervals, and p
  without `correct`); `correct[name]`: seeds x examples correctness for the `test` p-value.
  """
  if test not in TESTS:
    raise ValueError(f"unknown test {test!r}; expected one of {TESTS}")
  names = list(dict.fromkeys(name for pair in pairs for name in pair))
  if unknown := [name for name in names if name not in accuracy]:
    raise ValueError(f"unknown arm(s) {unknown}; accuracy has {sorted(accuracy)}")
  acc = {name: np.asarray(accuracy[name], dtype=np.float64) for name in names}
  shapes = {name: values.shape for name, values in acc.items()}
  if len(set(shapes.values())) > 1 or any(len(s) != 1 or s[0] < 2 for s in shapes.values()):
    raise ValueError(f"every arm needs the same number (>= 2) of seed accuracies, got {shapes}")
  kind = "paired-t" if correct is None else test
  for name in names if kind != "paired-t" else ():
    shape = np.shape(correct.get(name))
    if len(shape) != 2 or shape[0] != shapes[name][0]:
      raise ValueError(f"correct[{name!r}] must be seeds x examples with {shapes[name][0]} rows, "
                       f"got {'nothing' if name not in correct else shape}")
  intervals, pvalues = [], []
  for a, b in pairs:
    diffs = acc[a] - acc[b]
    intervals.append(paired_t_interval(diffs, confidence=confidence))
    if kind == "mcnemar":
      pvalues.append(mcnemar_exact(correct[a], correct[b]))
    elif kind == "bootstrap":
      pvalues.append(paired_bootstrap(correct[a], correct[b], n_boot=n_boot, seed=seed,
                                      confidence=confidence)[1])
    else:
      pvalues.append(paired_t_pvalue(diffs))
  return [Comparison(a, b, i, p, ph, verdict(i, ph, margin=margin, alpha=alpha), margin, kind)
          for (a, b), i, p, ph in zip(pairs, intervals, pvalues, holm(pvalues))]
