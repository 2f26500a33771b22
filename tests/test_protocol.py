"""experiments.protocol and the grid runs under it: selection, edge extension, sweeps, reuse."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("flax")

import jaxloss  # noqa: E402
from jaxloss import train as jt  # noqa: E402
from experiments import protocol, runs  # noqa: E402

pytestmark = pytest.mark.slow  # trains tiny models (seconds)

NUM_CLASSES = 4
LS = jaxloss.get("label_smoothing_cross_entropy")


def synthetic(n, seed):
  rng = np.random.default_rng(seed)
  protos = np.random.default_rng(0).integers(0, 256, (NUM_CLASSES, 6, 6))
  labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
  images = np.clip(protos[labels] + rng.normal(0.0, 60.0, (n, 6, 6)), 0, 255).astype(np.uint8)
  return images, labels


TRAIN, VAL, TEST = synthetic(256, 1), synthetic(64, 2), synthetic(64, 3)


def ls_loss(logits, labels, alpha=0.1):
  return jaxloss.get("label_smoothing_cross_entropy", alpha=alpha).loss_from_labels(logits, labels)


def make_spec_fn(calls, epochs=2, optimizer="sgd"):
  config = jt.TrainConfig(hidden=(8,), num_classes=NUM_CLASSES, optimizer=optimizer,
                          learning_rate=1e-3, schedule="constant", batch_size=32, epochs=epochs,
                          eval_batch_size=64)

  def make_spec(tag, learning_rates, loss_params):
    calls.append((tag, learning_rates, loss_params))
    return runs.RunSpec(f"v-{tag}", config, ls_loss, seeds=(0, 1), learning_rates=learning_rates,
                        loss_params=loss_params)

  return make_spec


def test_half_decades_and_steps():
  assert protocol.half_decades() == (1e-4, 3.16228e-4, 1e-3, 3.16228e-3, 1e-2)
  assert protocol.half_decades(1e-2, 1e-1) == (1e-2, 3.16228e-2, 1e-1)
  assert protocol._step(1e-2, 1) == 3.16228e-2 and protocol._step(1e-4, -1) == 3.16228e-5


def test_edge_winner_grows_the_grid_at_most_twice_and_reads_back(tmp_path):
  calls = []
  # SGD on this task: the larger rate always wins at 2 epochs, so the top edge wins.
  picked = protocol.select_and_test(make_spec_fn(calls), (1e-3, 1e-2), train=TRAIN, val=VAL,
                                    test=TEST, out_dir=str(tmp_path), say=lambda t: None)
  sel = picked[()]
  assert [c[0] for c in calls] == ["grid", "up1", "up2"]
  assert sel.extended == [3.16228e-2, 0.1]
  assert sel.edge == ("upper" if sel.lr == 0.1 else None)
  assert [row["lr"] for row in sel.table] == [1e-3, 1e-2, 3.16228e-2, 0.1]
  best = max(sel.table, key=lambda r: r["score"])
  assert sel.point == {"lr": best["lr"], "alpha": 0.1} or sel.point == {"lr": best["lr"]}
  assert sel.result.test["correct"].shape == (2, 64)
  assert sel.result.test["test_accuracy"].shape == (2,)
  scores = [r["score"] for r in sel.table]
  assert all(math.isfinite(x) for x in scores)
  assert sel.table[sel.table.index(best)]["score"] == pytest.approx(
      float(np.mean(sel.result.final("test_accuracy"))))
  calls.clear()
  again = protocol.select_and_test(make_spec_fn(calls), (1e-3, 1e-2), train=TRAIN, val=VAL,
                                   test=TEST, out_dir=str(tmp_path), say=lambda t: None)[()]
  assert all(r.resumed_from is None for r in again.results)  # read back, nothing retrained
  np.testing.assert_array_equal(again.result.test["correct"], sel.result.test["correct"])


@pytest.mark.parametrize("lr, rates, edge", [
    (0.1, (1e-3, 1e-2, 0.1), "upper"), (1e-3, (1e-3, 1e-2, 0.1), "lower"),
    (1e-2, (1e-3, 1e-2, 0.1), None), (1e-2, (1e-2,), None),
    (1e-2, (1e-3, 1e-3, 1e-2, 1e-2), "upper")])  # rows per loss hyperparameter value
def test_selected_says_when_the_winner_is_on_an_edge(lr, rates, edge):
  table = [{"lr": r, "score": 0.5} for r in rates]
  assert protocol.Selected({"lr": lr}, table, [], None, []).edge == edge


def test_sweep_reports_each_value_and_params_are_selected_jointly(tmp_path):
  calls = []
  picked = protocol.select_and_test(
      make_spec_fn(calls, optimizer="adam"), (1e-2, 3e-2), sweep={"alpha": (0.0, 0.2)},
      train=TRAIN, val=VAL, test=TEST, out_dir=str(tmp_path), extend=False,
      say=lambda t: None)
  assert set(picked) == {(0.0,), (0.2,)}
  assert calls[0][1] == (1e-2, 1e-2, 3e-2, 3e-2)  # one program: rates x alphas
  assert calls[0][2] == {"alpha": (0.0, 0.2, 0.0, 0.2)}
  for (alpha,), sel in picked.items():
    assert sel.point["alpha"] == alpha and len(sel.table) == 2
    assert {r["alpha"] for r in sel.table} == {alpha}
    rows = sel.result.rows
    assert rows and {r["alpha"] for r in rows} == {alpha} and {r["seed"] for r in rows} == {0, 1}
  # alpha = 0 is plain cross-entropy: the same numbers as a run of it alone.
  sel = picked[(0.0,)]
  alone = runs.run(runs.RunSpec("alone", dataclasses_replace_lr(sel.lr), ls_loss, seeds=(0, 1),
                                loss_params={"alpha": (0.0,)}),
                   jt.Mnist(*TRAIN, *VAL), str(tmp_path), test=TEST)
  np.testing.assert_allclose(alone.final("test_accuracy"), sel.result.final("test_accuracy"),
                             rtol=1e-5)


def dataclasses_replace_lr(lr):
  return jt.TrainConfig(hidden=(8,), num_classes=NUM_CLASSES, optimizer="adam",
                        learning_rate=lr, schedule="constant", batch_size=32, epochs=2,
                        eval_batch_size=64)


def test_a_single_rate_never_grows(tmp_path):
  calls = []
  picked = protocol.select_and_test(make_spec_fn(calls, epochs=1), (1e-3,), train=TRAIN, val=VAL,
                                    test=TEST, out_dir=str(tmp_path), say=lambda t: None)
  assert [c[0] for c in calls] == ["grid"] and picked[()].extended == []
  assert picked[()].point == {"lr": 1e-3}


def test_without_validation_only_a_single_point():
  with pytest.raises(ValueError, match="nothing is selected"):
    protocol.select_and_test(make_spec_fn([]), (1e-3, 1e-2), train=TRAIN, val=None, test=TEST,
                             out_dir="unused")
