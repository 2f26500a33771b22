"""experiments.calibration: temperature fit, ECE (equal-width and equal-mass bins), NLL.

Tiny NumPy inputs with values worked out by hand or from definitions; no training, no JAX
(tests/test_label_smoothing.py checks the ECE against jaxloss's on a real run).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import calibration as cal


def _two_class(p_correct, n_right, n_wrong):
  """Logits whose top probability is `p_correct`, right on `n_right` rows, wrong on `n_wrong`."""
  gap = math.log(p_correct / (1 - p_correct))
  logits = np.tile([gap, 0.0], (n_right + n_wrong, 1))
  labels = np.array([0] * n_right + [1] * n_wrong)
  return logits, labels


def test_nll_and_accuracy_by_hand():
  logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
  labels = np.array([0, 1])
  assert cal.nll(logits, labels) == pytest.approx((math.log(2) + math.log(4)) / 2)
  assert cal.nll(logits, labels, temperature=1e9) == pytest.approx(math.log(2))
  assert cal.accuracy(logits, labels) == 0.5
  np.testing.assert_allclose(cal.confidence(logits), [0.5, 0.75])
  np.testing.assert_allclose(np.exp(cal.log_softmax(logits * 1e4)).sum(1), 1.0)  # no overflow


def test_temperature_recovers_the_calibrating_one():
  # 80% right at confidence sigmoid(gap / T): the NLL is minimized where that is 0.8.
  logits, labels = _two_class(0.8, 80, 20)
  for scale in (0.25, 1.0, 3.0):
    t, at_bound = cal.fit_temperature(logits * scale, labels)
    assert t == pytest.approx(scale, rel=1e-6) and not at_bound
    assert cal.ece(logits * scale, labels, t) == pytest.approx(0.0, abs=1e-6)


def test_temperature_matches_a_fine_grid_on_random_logits():
  rng = np.random.default_rng(0)
  logits = 3 * rng.normal(size=(300, 5))
  labels = np.where(rng.random(300) < 0.6, logits.argmax(1), rng.integers(0, 5, 300))
  t, _ = cal.fit_temperature(logits, labels)
  grid = np.exp(np.linspace(math.log(t) - 0.01, math.log(t) + 0.01, 201))
  best = grid[np.argmin([cal.nll(logits, labels, g) for g in grid])]
  assert t == pytest.approx(best, rel=1e-4)
  assert cal.nll(logits, labels, t) <= min(cal.nll(logits, labels, g) for g in grid) + 1e-12
  coarse = np.exp(np.linspace(math.log(0.02), math.log(50), 101))  # and no other minimum
  assert cal.nll(logits, labels, t) <= min(cal.nll(logits, labels, g) for g in coarse)


def test_temperature_at_the_bounds_is_flagged():
  logits = np.array([[2.0, 0.0], [0.0, 2.0]])
  t, at_bound = cal.fit_temperature(logits, np.array([0, 1]))  # all right: sharper is better
  assert at_bound and t == pytest.approx(cal.T_BOUNDS[0], rel=1e-5)
  t, at_bound = cal.fit_temperature(logits, np.array([1, 0]))  # all wrong: flatter is better
  assert at_bound and t == pytest.approx(cal.T_BOUNDS[1], rel=1e-5)


def test_ece_by_hand_and_edges_go_to_the_lower_bin():
  logits, labels = _two_class(0.9, 6, 4)  # confidence 0.9, accuracy 0.6
  assert cal.ece(logits, labels) == pytest.approx(0.3)
  # Tied confidences share a bin: one bin here, whatever the order of the rows.
  assert cal.adaptive_ece(logits, labels, bins=5) == pytest.approx(0.3)
  assert cal.adaptive_ece(logits[::-1], labels[::-1], bins=5) == pytest.approx(0.3)
  counts, conf, acc = cal.reliability(np.array([[0.0, 0.0]]), np.array([0]), bins=2)
  assert counts.tolist() == [1, 0] and conf[0] == 0.5 and acc[0] == 1.0 and np.isnan(conf[1])


def test_adaptive_bins_hold_equal_counts_and_keep_ties_together():
  # Confidences 0.6 (right), 0.7 (wrong), 0.8 (right), 0.9 (right): two bins of two.
  p = np.array([0.6, 0.7, 0.8, 0.9])
  logits = np.stack([np.log(p / (1 - p)), np.zeros(4)], axis=1)
  labels = np.array([0, 1, 0, 0])
  want = (abs(1 - (0.6 + 0.7)) + abs(2 - (0.8 + 0.9))) / 4
  assert cal.adaptive_ece(logits, labels, bins=2) == pytest.approx(want)
  want_ew = (abs(1 - 1.3) + abs(2 - 1.7)) / 4  # 15 bins: 0.6 | 0.7 | 0.8 | 0.9 apart
  assert cal.ece(logits, labels) == pytest.approx((0.4 + 0.7 + 0.2 + 0.1) / 4)
  assert cal.ece(logits, labels, bins=2) == pytest.approx((abs(3 - 3.0)) / 4)
  assert want_ew != want
  # 0.6 0.9 | 0.9 0.9: the cut inside the ties moves to their start, bins (0.6)(0.9 x3).
  p = np.array([0.9, 0.6, 0.9, 0.9])
  logits = np.stack([np.log(p / (1 - p)), np.zeros(4)], axis=1)
  labels = np.array([0, 0, 1, 0])
  assert cal.adaptive_ece(logits, labels, bins=2) == pytest.approx((0.4 + abs(2 - 2.7)) / 4)


def test_calibrate_fits_on_validation_and_measures_on_test():
  val, val_labels = _two_class(0.8, 80, 20)
  test, test_labels = _two_class(0.8, 40, 10)
  out = cal.calibrate(3 * val, val_labels, 3 * test, test_labels)  # over-confident by T = 3
  assert out["temperature"] == pytest.approx(3.0, rel=1e-6) and not out["at_bound"]
  assert out["accuracy"] == 0.8 and out["confidence_after"] == pytest.approx(0.8)
  assert out["ece_after"] == pytest.approx(0.0, abs=1e-6)
  assert out["ece_before"] == pytest.approx(64 / 65 - 0.8)  # confidence 1 / (1 + 4 ** -3)
  assert out["nll_after"] == pytest.approx(cal.nll(test, test_labels))
  assert out["nll_after"] < out["nll_before"]
  assert out["adaptive_ece_after"] == pytest.approx(0.0, abs=1e-6)
  assert set(out) == {"temperature", "at_bound", "accuracy", *(
      f"{k}_{t}" for k in ("ece", "adaptive_ece", "nll", "confidence") for t in ("before",
                                                                                 "after"))}


@pytest.mark.parametrize("logits, labels", [
    (np.zeros((3,)), np.zeros(3, int)), (np.array([[np.nan, 0.0]]), np.array([0])),
    (np.zeros((2, 2)), np.array([0, 2])), (np.zeros((2, 2)), np.array([0.0, 1.0]))])
def test_bad_inputs_are_refused(logits, labels):
  with pytest.raises(ValueError):
    cal.nll(logits, labels)
