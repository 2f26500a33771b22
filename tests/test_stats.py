"""experiments.stats: t distribution, paired tests, Holm, verdicts; scipy as the reference."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from experiments import stats

DFS = range(1, 41)


def _scipy_stats():
  return pytest.importorskip("scipy.stats")


def _discordant(b: int, c: int, *, both: int = 7,
                neither: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """Paired correctness with exactly `b` (a right, b wrong) and `c` (a wrong, b right) pairs."""
  a = np.r_[np.ones(b, bool), np.zeros(c, bool), np.ones(both, bool), np.zeros(neither, bool)]
  other = np.r_[np.zeros(b, bool), np.ones(c, bool), np.ones(both, bool), np.zeros(neither, bool)]
  perm = np.random.default_rng(b + 7 * c).permutation(a.size)
  return a[perm], other[perm]


# ---------------------------------------------------------------------------- t distribution


def test_t_cdf_matches_scipy():
  st = _scipy_stats()
  ts = (-200.0, -30.0, -5.0, -2.5, -1.0, -0.3, 0.0, 0.3, 1.0, 2.5, 5.0, 30.0, 200.0)
  for df in DFS:
    for t in ts:
      assert stats.t_cdf(t, df) == pytest.approx(st.t.cdf(t, df), rel=1e-9, abs=0), (t, df)
      # The upper tail keeps its relative accuracy (no 1 - A cancellation).
      assert 1.0 - stats.t_cdf(-t, df) == pytest.approx(st.t.sf(-t, df), rel=1e-9), (t, df)
  assert stats.t_cdf(math.inf, 3) == 1.0 and stats.t_cdf(-math.inf, 3) == 0.0
  assert math.isnan(stats.t_cdf(math.nan, 3))


def test_t_quantile_matches_scipy_and_inverts_the_cdf():
  st = _scipy_stats()
  for df in DFS:
    for q in (0.001, 0.01, 0.025, 0.1, 0.3, 0.7, 0.9, 0.975, 0.999):
      t = stats.t_quantile(q, df)
      assert t == pytest.approx(st.t.ppf(q, df), rel=1e-9), (q, df)
      assert stats.t_cdf(t, df) == pytest.approx(q, rel=1e-12)
    assert stats.t_quantile(0.5, df) == 0.0
  assert stats.t_quantile(1e-10, 2) == pytest.approx(st.t.ppf(1e-10, 2), rel=1e-9)
  assert stats.t_quantile(0.975, 1000) == pytest.approx(st.t.ppf(0.975, 1000), rel=1e-9)


@pytest.mark.parametrize("q, df", [(0.5, 0), (0.5, -1), (0.5, 2.5), (0.5, True), (0.0, 3),
                                   (1.0, 3), (-0.1, 3), (1.5, 3), (math.nan, 3)])
def test_t_quantile_refuses_bad_arguments(q, df):
  with pytest.raises(ValueError):
    stats.t_quantile(q, df)


def test_t_cdf_refuses_bad_df():
  with pytest.raises(ValueError, match="degrees of freedom"):
    stats.t_cdf(1.0, 0)


# ---------------------------------------------------------------------------- paired t


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40])
def test_paired_t_matches_scipy_ttest_rel(n):
  st = _scipy_stats()
  rng = np.random.default_rng(n)
  a = 97.0 + rng.normal(size=n)
  b = a - 0.3 + 0.5 * rng.normal(size=n)
  ref = st.ttest_rel(a, b)
  ci = ref.confidence_interval(0.95)
  interval = stats.paired_t_interval(a - b)
  assert interval.mean == pytest.approx(np.mean(a - b), rel=1e-12)
  assert (interval.low, interval.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
  assert (interval.n, interval.confidence) == (n, 0.95)
  assert stats.paired_t_pvalue(a - b) == pytest.approx(ref.pvalue, rel=1e-9)
  ci90 = ref.confidence_interval(0.9)
  interval90 = stats.paired_t_interval(a - b, confidence=0.9)
  assert (interval90.low, interval90.high) == pytest.approx((ci90.low, ci90.high), rel=1e-9)


def test_paired_t_zero_variance_and_bad_input():
  interval = stats.paired_t_interval([0.1, 0.1, 0.1])
  assert (interval.mean, interval.low, interval.high) == (0.1, 0.1, 0.1)
  assert stats.paired_t_pvalue([0.0, 0.0, 0.0]) == 1.0
  assert stats.paired_t_pvalue([0.2, 0.2]) == 0.0
  for bad in ([1.0], [], [[1.0, 2.0]], [1.0, math.nan]):
    with pytest.raises(ValueError):
      stats.paired_t_interval(bad)
    with pytest.raises(ValueError):
      stats.paired_t_pvalue(bad)
  with pytest.raises(ValueError, match="confidence"):
    stats.paired_t_interval([1.0, 2.0], confidence=1.0)


# ---------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize("b, c", [(1, 0), (3, 0), (0, 4), (5, 9), (10, 30), (100, 140), (0, 200),
                                  (12, 12), (30000, 30500), (49000, 51000)])
def test_mcnemar_exact_matches_binomtest(b, c):
  st = _scipy_stats()
  a, other = _discordant(b, c)
  p = stats.mcnemar_exact(a, other)
  assert math.isfinite(p) and 0.0 <= p <= 1.0
  assert p == pytest.approx(st.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
  assert stats.mcnemar_exact(other, a) == p  # symmetric


def test_mcnemar_no_discordant_pairs_pooling_and_shapes():
  assert stats.mcnemar_exact([True, False], [True, False]) == 1.0
  assert stats.mcnemar_exact(np.zeros(0, bool), np.zeros(0, bool)) == 1.0
  a, other = _discordant(7, 1, both=9)  # 20 entries: pooled as 4 seeds x 5 examples
  assert stats.mcnemar_exact(a.reshape(4, 5), other.reshape(4, 5)) == stats.mcnemar_exact(a, other)
  assert stats.mcnemar_exact(a.astype(int), other.astype(int)) == stats.mcnemar_exact(a, other)
  assert stats.mcnemar_exact([1, 1, 1, 0], [0, 0, 0, 0]) == 0.25
  with pytest.raises(ValueError, match="shape"):
    stats.mcnemar_exact(np.ones((2, 5), bool), np.ones((5, 2), bool))


# ---------------------------------------------------------------------------- paired bootstrap


def test_bootstrap_identical_inputs():
  a = np.random.default_rng(0).random((3, 500)) < 0.9
  interval, p = stats.paired_bootstrap(a, a.copy(), n_boot=200)
  assert (interval.mean, interval.low, interval.high, p) == (0.0, 0.0, 0.0, 1.0)
  assert (interval.n, interval.confidence) == (1500, 0.95)


def test_bootstrap_big_effect_is_fast_and_at_the_p_floor():
  rng = np.random.default_rng(1)
  a, b = np.ones((5, 10_000), bool), rng.random((5, 10_000)) < 0.5
  start = time.perf_counter()
  interval, p = stats.paired_bootstrap(a, b, n_boot=2000, seed=3)
  assert time.perf_counter() - start < 10  # ~0.5 s; a loop over examples would take minutes
  assert interval.mean == pytest.approx(100 * (1 - b.mean()))
  assert 49 < interval.low < interval.mean < interval.high < 51
  assert p == 1 / 2001
  worse, p_worse = stats.paired_bootstrap(b, a, n_boot=2000, seed=3)
  assert worse.mean == -interval.mean and worse.high < 0 and p_worse == p


def test_bootstrap_is_reproducible_for_a_seed():
  rng = np.random.default_rng(2)
  a, b = rng.random((3, 800)) < 0.8, rng.random((3, 800)) < 0.79
  assert stats.paired_bootstrap(a, b, seed=5) == stats.paired_bootstrap(a, b, seed=5)
  assert stats.paired_bootstrap(a, b, seed=5) != stats.paired_bootstrap(a, b, seed=6)


def test_bootstrap_pairing_detects_a_small_consistent_effect():
  rng = np.random.default_rng(3)
  n_seeds, n, n_boot = 3, 2000, 1000
  a = np.broadcast_to(rng.random(n) < 0.6, (n_seeds, n)).copy()  # seeds agree per example
  b = a.copy()
  flips = rng.choice(n, 20, replace=False)
  a[:, flips], b[:, flips] = True, False  # a wins on the same 20 examples, in every seed
  interval, p = stats.paired_bootstrap(a, b, n_boot=n_boot, seed=0)
  assert interval.mean == pytest.approx(100 * 20 / n)
  assert interval.low > 0 and p <= 2 / (n_boot + 1)
  # The same resampling, unpaired (independent example draws for a and b), sees nothing.
  unpaired = [100 * (a[:, rng.integers(0, n, n)].mean() - b[:, rng.integers(0, n, n)].mean())
              for _ in range(n_boot)]
  low, high = np.quantile(unpaired, [0.025, 0.975])
  assert low < 0 < high


def test_bootstrap_matches_a_naive_resampling_loop():
  """Drawing counts for the discordant columns only is the same distribution as a full resample."""
  rng = np.random.default_rng(6)
  n_seeds, n, n_boot = 3, 200, 10_000
  a, b = rng.random((n_seeds, n)) < 0.8, rng.random((n_seeds, n)) < 0.75
  b[:, :80] = a[:, :80]
  naive = []
  for _ in range(n_boot):
    seeds, examples = rng.integers(0, n_seeds, n_seeds), rng.integers(0, n, n)
    naive.append(100 * (a[seeds][:, examples].mean() - b[seeds][:, examples].mean()))
  naive = np.asarray(naive)
  interval, p = stats.paired_bootstrap(a, b, n_boot=n_boot, seed=0)
  assert (interval.low, interval.high) == pytest.approx(np.quantile(naive, [0.025, 0.975]), abs=0.7)
  assert p == pytest.approx(2 * min(np.mean(naive <= 0), np.mean(naive >= 0)), abs=0.04)


def test_bootstrap_resamples_seeds_too():
  a = np.ones((3, 1000), bool)
  b = a.copy()
  b[0, :100] = False  # a is better in seed 0 only
  interval, p = stats.paired_bootstrap(a, b, n_boot=2000, seed=0)
  assert interval.low == 0.0 and p > 0.3  # (2/3)**3 of the replicates miss seed 0


def test_bootstrap_validates():
  with pytest.raises(ValueError, match="shape"):
    stats.paired_bootstrap(np.ones((2, 3), bool), np.ones((3, 2), bool))
  with pytest.raises(ValueError):
    stats.paired_bootstrap(np.ones((2, 3), bool), np.ones((2, 3), bool), n_boot=0)
  with pytest.raises(ValueError):
    stats.paired_bootstrap(np.ones((2, 0), bool), np.ones((2, 0), bool))
  one_seed, _ = stats.paired_bootstrap(np.ones(10, bool), np.zeros(10, bool), n_boot=50)
  assert (one_seed.mean, one_seed.n) == (100.0, 10)


# ---------------------------------------------------------------------------- Holm


def test_holm_hand_worked_example():
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # clipped
  assert stats.holm([0.02]) == [0.02]
  assert stats.holm([]) == []


def test_holm_properties():
  p = np.random.default_rng(4).random(12) ** 3
  adjusted = np.asarray(stats.holm(p))
  assert np.all(adjusted >= p) and np.all(adjusted <= 1)
  order = np.argsort(p)
  assert np.all(np.diff(adjusted[order]) >= 0)  # monotone in the raw p-values
  assert adjusted[order[0]] == pytest.approx(12 * p[order[0]])
  for bad in ([0.1, 1.5], [math.nan], [-0.1]):
    with pytest.raises(ValueError):
      stats.holm(bad)


# ---------------------------------------------------------------------------- verdict


def _interval(mean: float, low: float, high: float) -> stats.Interval:
  return stats.Interval(mean, low, high, 5, 0.95)


def test_verdict_outcomes():
  assert stats.verdict(_interval(0.02, -0.1, 0.14), 0.5) == "equivalent"
  assert stats.verdict(_interval(1.0, 0.5, 1.5), 0.001) == "better"
  assert stats.verdict(_interval(-1.0, -1.5, -0.5), 0.001) == "worse"
  assert stats.verdict(_interval(0.1, -2.0, 2.2), 0.5) == "inconclusive"  # no tie from no evidence
  assert stats.verdict(_interval(1.0, 0.5, 1.5), 0.05) == "inconclusive"  # p not below alpha
  assert stats.verdict(_interval(1.0, -0.2, 2.2), 0.001) == "inconclusive"  # CI covers 0


def test_verdict_margin_edges():
  assert stats.verdict(_interval(0.0, -0.1, 0.15), 0.5) == "inconclusive"  # touching the margin
  assert stats.verdict(_interval(0.0, -0.15, 0.1), 0.5) == "inconclusive"
  assert stats.verdict(_interval(0.0, -0.1, 0.15), 0.5, margin=0.2) == "equivalent"
  assert stats.verdict(_interval(0.05, 0.03, 0.07), 1e-9) == "equivalent"  # significant, tiny
  assert stats.verdict(_interval(0.1, 0.05, 0.16), 1e-9) == "better"
  for margin in (0.0, -0.1, math.nan):
    with pytest.raises(ValueError, match="margin"):
      stats.verdict(_interval(0.0, -0.1, 0.1), 0.5, margin=margin)
  with pytest.raises(ValueError, match="alpha"):
    stats.verdict(_interval(0.0, -0.1, 0.1), 0.5, alpha=0.0)


def test_sentence():
  comparison = stats.Comparison("cross_entropy", "sigmoid_difference",
                                _interval(87.18, 86.9, 87.5), 2e-5, 1e-4, "better", 0.15, "mcnemar")
  assert comparison.sentence() == ("cross_entropy vs sigmoid_difference: +87.18 accuracy points "
                                   "(95% CI +86.90 to +87.50), Holm p = 0.0001: better.")
  worse = stats.Comparison("mse", "ce", _interval(-0.3, -0.5, -0.1), 1e-7, 3e-7, "worse", 0.15,
                           "paired-t")
  assert worse.sentence(unit="points") == ("mse vs ce: -0.30 points (95% CI -0.50 to -0.10), "
                                           "Holm p < 0.0001: worse.")


# ---------------------------------------------------------------------------- compare_pairs


def _arms() -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
  """Per-example correctness (3 seeds x 2000 examples) of four made-up arms, and accuracy."""
  rng = np.random.default_rng(5)
  base = rng.random((3, 2000)) < 0.95

  def flip(correct: np.ndarray, up: list[int], down: list[int]) -> np.ndarray:
    out = correct.copy()
    for seed, (n_up, n_down) in enumerate(zip(up, down)):
      out[seed, np.flatnonzero(~correct[seed])[:n_up]] = True
      out[seed, np.flatnonzero(correct[seed])[:n_down]] = False
    return out

  correct = {"mse": base, "ce": flip(base, [38, 40, 43], [0, 0, 0])}
  correct["ce2"] = flip(correct["ce"], [0, 0, 0], [1, 1, 1])  # exactly 0.05 points below ce
  correct["noisy"] = flip(base, [30, 5, 20], [10, 25, 20])  # +1, -1, 0 points
  accuracy = {name: list(100 * c.mean(axis=1)) for name, c in correct.items()}
  return accuracy, correct


PAIRS = [("ce", "mse"), ("ce", "ce2"), ("mse", "ce"), ("noisy", "mse")]


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap", "paired-t"])
def test_compare_pairs_end_to_end(test):
  accuracy, correct = _arms()
  out = stats.compare_pairs(accuracy, PAIRS, correct=correct, test=test, n_boot=500, seed=1)
  assert [(c.a, c.b) for c in out] == PAIRS
  assert [c.verdict for c in out] == ["better", "equivalent", "worse", "inconclusive"]
  assert all(c.test == test and c.margin == 0.15 for c in out)
  for c in out:
    diffs = np.subtract(accuracy[c.a], accuracy[c.b])
    assert c.interval == stats.paired_t_interval(diffs)
    expected = {"mcnemar": lambda: stats.mcnemar_exact(correct[c.a], correct[c.b]),
                "bootstrap": lambda: stats.paired_bootstrap(correct[c.a], correct[c.b],
                                                            n_boot=500, seed=1)[1],
                "paired-t": lambda: stats.paired_t_pvalue(diffs)}[test]()
    assert c.p_value == expected
  assert [c.p_holm for c in out] == stats.holm([c.p_value for c in out])  # across all pairs
  assert out[0].interval.mean == pytest.approx((38 + 40 + 43) / 3 / 20)
  assert out[1].interval.high - out[1].interval.low < 1e-9  # equal differences, up to rounding
  sentence = out[0].sentence()
  assert "ce vs mse" in sentence and "+2.02 accuracy points" in sentence and "better" in sentence


def test_compare_pairs_without_correct_uses_paired_t():
  accuracy, _ = _arms()
  out = stats.compare_pairs(accuracy, PAIRS)
  assert {c.test for c in out} == {"paired-t"}
  raw = [stats.paired_t_pvalue(np.subtract(accuracy[a], accuracy[b])) for a, b in PAIRS]
  assert [c.p_value for c in out] == raw
  assert [c.p_holm for c in out] == stats.holm(raw)
  assert out[0].p_holm > out[0].p_value  # the adjustment bites
  assert stats.compare_pairs(accuracy, []) == []


def test_holm_family_adjusts_groups_together_at_their_own_margins():
  a = stats.compare_pairs({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]}, [("a", "b")])
  c = stats.compare_pairs({"c": [5.0, 5.1, 5.2], "d": [0.0, 0.0, 0.0]}, [("c", "d")],
                          margin=0.5)
  assert a[0].verdict == "inconclusive" and a[0].p_value < 0.1  # p 0.074 alone
  (a2,), (), (c2,) = stats.holm_family(a, [], c)
  assert [a2.p_holm, c2.p_holm] == stats.holm([a[0].p_value, c[0].p_value])
  assert (a2.p_holm, c2.p_holm) == (a[0].p_value, 2 * c[0].p_value)  # step-down: x2, then x1
  assert (a2.verdict, c2.verdict) == ("inconclusive", "better")
  assert c2.margin == 0.5 and a2.interval == a[0].interval
  # A verdict can change: "equivalent" needs no p-value, "better" does.
  eq = stats.compare_pairs({"e": [0.01, 0.02, 0.0], "f": [0.0, 0.0, 0.0]}, [("e", "f")])
  alone = stats.compare_pairs({"g": [1.0, 2.0, 3.0, 2.0], "h": [0.0] * 4}, [("g", "h")])
  assert alone[0].verdict == "better" and 0.01 < alone[0].p_value < 0.02
  out = stats.holm_family(eq, [alone[0]] * 3)
  assert out[0][0].verdict == "equivalent"
  assert {c.verdict for c in out[1]} == {"inconclusive"}  # p x 3 > 0.05
  assert stats.holm_family() == [] and stats.holm_family([]) == [[]]


def test_compare_pairs_validates():
  accuracy, correct = _arms()
  with pytest.raises(ValueError, match="unknown arm"):
    stats.compare_pairs(accuracy, [("ce", "focal")])
  with pytest.raises(ValueError, match="same number"):
    stats.compare_pairs({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}, [("a", "b")])
  with pytest.raises(ValueError, match=">= 2"):
    stats.compare_pairs({"a": [1.0], "b": [2.0]}, [("a", "b")])
  with pytest.raises(ValueError, match="unknown test"):
    stats.compare_pairs(accuracy, PAIRS, correct=correct, test="wilcoxon")
  with pytest.raises(ValueError, match="correct\\['noisy'\\]"):
    stats.compare_pairs(accuracy, PAIRS, correct={k: v for k, v in correct.items() if k != "noisy"})
  with pytest.raises(ValueError, match="3 rows"):
    stats.compare_pairs(accuracy, PAIRS, correct={**correct, "ce": correct["ce"][:2]})
  with pytest.raises(ValueError, match="margin"):
    stats.compare_pairs(accuracy, PAIRS, margin=0.0)
