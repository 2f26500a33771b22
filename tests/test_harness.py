"""The harness's own logic: `Outcome.on`, the final-splits and dependency checks, and a
variant that continues from an earlier one's models (a small synthetic run)."""

import json

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


def _tiny_experiment(variants):
  return harness.Experiment("tiny", "Tiny?", harness.Settings, lambda s: variants,
                            lambda s, outcomes: harness.Report("Fine."))


def test_start_from_and_rate_from_are_checked_before_training():
  def v(name, **kw):
    return harness.Variant(name, loss_fn=lambda z, y: 0.0, **kw)
  s = harness.Settings()
  assert harness._dependency_problems([v("a", keep_final=True), v("b", start_from="a",
                                                                   rate_from="a")], s) == []
  problems = harness._dependency_problems([
      v("b", start_from="a"), v("a", sweep={"alpha": (0.1, 0.2)}), v("c", rate_from="a"),
      v("d", start_from="b"), v("e", keep_final=True, seeds=(0, 1)),
      v("f", start_from="e", train={"hidden": (3,)})], s)
  assert problems == [
      "b: start_from 'a' is not an earlier variant", "c: rate_from 'a' sweeps alpha",
      "d: start_from 'b' keeps no final parameters (keep_final)",
      "f: start_from 'e' has other seeds", "f: start_from 'e' has another network or data"]


def test_a_variant_continues_from_an_earlier_ones_selected_models(tmp_path, capsys):
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import jaxloss  # pylint: disable=import-outside-toplevel
  from _synthetic import prototype_images  # pylint: disable=import-outside-toplevel

  ce = jaxloss.get("ce").loss_from_labels
  frozen = lambda z, y: 0.0 * jnp.sum(z)  # zero gradients: Adam's updates are exactly 0
  net = {"hidden": (8,)}
  variants = [harness.Variant("src", ce, train=net, keep_final=True),
              harness.Variant("still", frozen, train=net, start_from="src", rate_from="src"),
              harness.Variant("fresh", frozen, train=net, rate_from="src")]
  argv = ["--seeds", "2", "--lrs", "0.1,0.3,1", "--epochs", "2", "--val-size", "64",
          "--out", str(tmp_path / "out"), "--no-progress"]
  mnist = prototype_images(320, 64, side=4)
  summary = harness.main(_tiny_experiment(variants), argv, mnist=mnist)
  got = summary["variants"]
  lr = got["src"]["selected"]["lr"]
  assert got["still"]["selected"]["lr"] == got["fresh"]["selected"]["lr"] == lr
  assert [row["lr"] for row in got["still"]["selection"]] == [lr]  # one rate, nothing selected
  assert got["still"]["starts_from"] == "src" and got["fresh"]["rate_from"] == "src"
  # Started from src's selected models and never moved: src's final test accuracies, seed for
  # seed; from a fresh start the untrained nets score otherwise.
  src, still = got["src"]["test"]["test_accuracy"], got["still"]["test"]["test_accuracy"]
  assert still == src and got["fresh"]["test"]["test_accuracy"] != src
  run = tmp_path / "out" / "runs"
  assert (run / "src-grid" / "final_params.npz").exists()
  assert json.loads((run / "still-grid" / "run.json").read_text())["init_params"] == "given"
  assert summary["train_seconds"] > 0
  assert f"| still | lr {lr:g} (src's rate, not selected) |" in capsys.readouterr().out
  again = harness.main(_tiny_experiment(variants), argv, mnist=mnist)  # read back
  assert again["variants"] == summary["variants"]
  assert "training it again" not in capsys.readouterr().out
