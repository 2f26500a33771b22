"""The harness's own logic, without training: `Outcome.on` and the final-splits checks."""

import numpy as np
import pytest

from experiments import harness, protocol, runs


def outcome(final_splits=("val",)):
  test = {"test_accuracy": np.array([0.5, 0.75]), "correct": np.zeros((2, 3), bool),
          "val/test_accuracy": np.array([0.25, 1.0]), "val/correct": np.ones((2, 4), bool)}
  result = runs.RunResult("r", "done", [], {}, 0.0, None, [{"seed": 0}, {"seed": 1}], test)
  variant = harness.Variant("v", loss_fn=lambda z, y: 0.0, final_splits=final_splits)
  return harness.Outcome(variant, protocol.Selected({"lr": 1e-3}, [], [], result, [result]))


def test_outcome_on_splits_the_final_evaluation_by_split():
  o = outcome()
  assert set(o.test) == {"test_accuracy", "correct"}  # the test split alone
  assert o.on("test") == o.test
  val = o.on("val")
  assert set(val) == {"test_accuracy", "correct"} and val["correct"].shape == (2, 4)
  np.testing.assert_array_equal(val["test_accuracy"], [0.25, 1.0])
  np.testing.assert_array_equal(o.accuracy(), [50.0, 75.0])
  with pytest.raises(KeyError, match="not evaluated on 'train'"):
    o.on("train")


def test_final_splits_are_checked_before_training():
  split = harness.Splits((0, 0), None, (0, 0))
  bad = harness.Variant("v", loss_fn=lambda z, y: 0.0, final_splits=("valid",))
  assert "must be among val, train" in harness._final_splits_problem(bad, split)
  need_val = harness.Variant("v", loss_fn=lambda z, y: 0.0, final_splits=("val",))
  assert "--val-size" in harness._final_splits_problem(need_val, split)
  ok = harness.Variant("v", loss_fn=lambda z, y: 0.0, final_splits=("train",))
  assert harness._final_splits_problem(ok, split) is None
