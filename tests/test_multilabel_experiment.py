"""experiments.multilabel on the harness: its pieces, its refusals, the CLI end to end (tiny)."""

from __future__ import annotations

import functools
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import harness, multilabel as ml, protocol, runs
from jaxloss import train as jt
from _experiments import refusal  # noqa: E402

K = 10


def np_top2(logits_NxK):
  pred = np.zeros(logits_NxK.shape, np.float32)
  np.put_along_axis(pred, np.argsort(-logits_NxK, axis=-1)[:, :2], 1.0, axis=-1)
  return pred


def random_batch(n=64, seed=0):
  """Random logits and two-hot targets; about half the rows made easy (right top-2)."""
  rng = np.random.default_rng(seed)
  targets_NxK = np_top2(rng.random((n, K)))
  logits_NxK = rng.normal(0.0, 2.0, (n, K)).astype(np.float32)
  return logits_NxK + 6.0 * targets_NxK * (rng.random((n, 1)) < 0.5), targets_NxK


def test_losses_match_numpy_references():
  logits, targets = random_batch()
  z, t = logits.astype(np.float64), targets.astype(np.float64)
  p = 1.0 / (1.0 + np.exp(-z))
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  want = {"bce": np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))),
          "sigdiff": np.mean(np.abs(p - t)),
          "softmax": np.mean(-np.sum(t / t.sum(-1, keepdims=True) * log_softmax, axis=-1))}
  for kind, value in want.items():
    got = float(ml.multilabel_loss(jnp.asarray(logits), jnp.asarray(targets), kind=kind))
    assert got == pytest.approx(value, rel=1e-5), kind
  # The softmax loss on normalized targets bottoms out at log 2, not 0.
  perfect = ml.multilabel_loss(jnp.asarray(30.0 * targets), jnp.asarray(targets), kind="softmax")
  assert float(perfect) == pytest.approx(math.log(2), rel=1e-4)


def test_evaluate_and_correct_match_numpy_decodings():
  """Top-2 and z > 0 decoded in NumPy; the set scores are jaxloss's (tested on their own)."""
  logits, targets = random_batch(n=200, seed=1)
  top2, thr = np_top2(logits), (logits > 0).astype(np.float32)  # z > 0 <=> sigmoid > 0.5
  exact_N = np.all(top2 == targets, -1)
  want = {"test_accuracy": exact_N.mean(), "macro_f1_top2": jaxloss.macro_f1(top2, targets),
          "exact_threshold": np.all(thr == targets, -1).mean(),
          "macro_f1_threshold": jaxloss.macro_f1(thr, targets),
          "count_threshold": thr.sum(-1).mean(), "two_threshold": np.mean(thr.sum(-1) == 2)}
  got = jax.jit(functools.partial(ml.evaluate, threshold=True))(logits, targets)
  assert set(got) == set(want) and 0.2 < want["test_accuracy"] < 0.9  # a non-trivial check
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
  assert set(ml.evaluate(logits, targets, threshold=False)) == {"test_accuracy", "macro_f1_top2"}
  correct = ml.correct_top2(jnp.asarray(logits), jnp.asarray(targets))["correct"]
  assert correct.dtype == jnp.bool_ and correct.tolist() == exact_N.tolist()


def test_splits_keep_validation_images_out_of_training_pairs():
  """Every 28x28 image is filled with its index (train 0..199, test 200..249)."""
  images = np.broadcast_to(np.arange(250, dtype=np.uint8)[:, None, None], (250, 28, 28))
  labels = np.arange(250, dtype=np.int32) % K
  mnist = jt.Mnist(images[:200], labels[:200], images[200:], labels[200:])
  s = ml.Settings(val_size=50, train_pairs=500, test_pairs=60)
  split = ml.splits(s, mnist)["pairs"]
  ids = {name: set(np.unique(x[0][:, 0, [0, 28]]).tolist()) for name, x in (
      ("train", split.train), ("val", split.val), ("test", split.test))}
  assert [x[0].shape[0] for x in (split.train, split.val, split.test)] == [500, 50, 60]
  assert all(np.all(x[1].sum(-1) == 2) for x in (split.train, split.val, split.test))
  assert not ids["val"] & ids["train"] and ids["val"] | ids["train"] <= set(range(200))
  assert ids["test"] <= set(range(200, 250))
  np.testing.assert_array_equal(ml.splits(s, mnist)["pairs"].train[0], split.train[0])
  no_val = ml.splits(ml.Settings(val_size=0, train_pairs=500, test_pairs=60), mnist)["pairs"]
  assert no_val.val is None and no_val.train[0].shape == (500, 28, 56)
  np.testing.assert_array_equal(no_val.test[0], split.test[0])  # the same test pairs


def _fake_outcome(name, acc_S, thr_S=None, n=400):
  """Seeds' exact-set accuracies `acc_S` (fractions): the first round(acc * n) examples right."""
  correct_SxN = np.arange(n)[None, :] < np.round(np.asarray(acc_S) * n)[:, None]
  test = {"test_accuracy": correct_SxN.mean(1), "macro_f1_top2": correct_SxN.mean(1),
          "correct": correct_SxN}
  if thr_S is not None:
    test.update(exact_threshold=np.asarray(thr_S), macro_f1_threshold=np.asarray(thr_S),
                count_threshold=np.full(len(acc_S), 1.9), two_threshold=np.full(len(acc_S), 0.9))
  result = runs.RunResult("x", "done", [], {}, 1.0, 0, [{"seed": s} for s in range(len(acc_S))],
                          test)
  selected = protocol.Selected({"lr": 1e-3}, [], [], result, [result])
  return harness.Outcome(harness.Variant(name, loss_fn=None), selected)


def _sentences(text):
  return len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", text))


def test_report_verdicts_summary_and_figure(tmp_path):
  outcomes = {"bce": _fake_outcome("bce", [0.90, 0.91, 0.92], [0.87, 0.88, 0.89]),
              "sigdiff": _fake_outcome("sigdiff", [0.06, 0.05, 0.07], [0.0, 0.0, 0.0]),
              "softmax": _fake_outcome("softmax", [0.90, 0.91, 0.92])}
  rep = ml.report(ml.Settings(seeds=(0, 1, 2)), outcomes)
  calls = {(c["kind"], c["a"], c["b"]): c for c in rep.summary["comparisons"]}
  assert set(calls) == {("loss", "bce", "sigdiff"), ("loss", "bce", "softmax"),
                        ("decoding", "bce@z>0", "bce@top-2"),
                        ("decoding", "sigdiff@z>0", "sigdiff@top-2")}
  assert [(c["verdict"], c["test"], c["interval"]["mean"]) for c in calls.values()] == [
      ("better", "mcnemar", pytest.approx(85.0)), ("equivalent", "mcnemar", 0.0),
      ("worse", "paired-t", pytest.approx(-3.0)), ("worse", "paired-t", pytest.approx(-6.0))]
  assert rep.summary["chance"] == pytest.approx(100 / 45)
  assert _sentences(rep.verdict) <= 3 and "bce 91.00 ± 1.00%" in rep.verdict
  assert len(rep.headline.split()) <= 40 and "bce vs softmax: equivalent" in rep.headline
  assert "| softmax | 0.001 | 91.00 ± 1.00 | 91.00 ± 1.00 | – |" in rep.markdown
  assert "| bce | 0.001 | 91.00 ± 1.00 | 91.00 ± 1.00 | 88.00 ± 1.00 |" in rep.markdown
  rep.figures["accuracy.png"](str(tmp_path / "accuracy.png"))
  assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  one = ml.report(ml.Settings(seeds=(0,)), {"bce": _fake_outcome("bce", [0.9], [0.8])})
  assert one.summary["comparisons"] == [] and _sentences(one.verdict) == 1


def _refused(argv, capsys, monkeypatch, tmp_path):
  return refusal(ml.main, argv, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, start", [
    (["--losses", "bce,mse"], "error: --losses: must be among bce, sigdiff, softmax, got mse"),
    (["--losses", "bce,bce"], "error: --losses: must be distinct"),
    (["--train-pairs", "0"], "error: --train-pairs: must be an integer >= 1"),
    (["--batch-size", "4096", "--train-pairs", "1000"], "error: --batch-size: must be <= --train"),
    (["--hidden", "a"], "error: --hidden: must be"),
    (["--quick", "--lrs", "1e-3,3e-3"], "error: --val-size 0 trains without selection"),
    (["--val-size", "60000"], "error: --val-size: must be below"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert _refused(argv, capsys, monkeypatch, tmp_path).startswith(start)


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_end_to_end_and_resume(tmp_path, monkeypatch):
  out = tmp_path / "run"
  argv = ["--quick", "--out", str(out), "--no-progress"]
  summary = ml.main(argv)
  assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json",
                                            "summary.csv", "summary.md", "accuracy.png"}
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 2 * 2 * 2 and {r["split"] for r in rows} == {"test"}  # no validation
  saved = json.loads((out / "summary.json").read_text())
  bce, softmax = saved["variants"]["bce"], saved["variants"]["softmax"]
  assert bce["selected"] == {"lr": 3e-3} and bce["threshold_decoding"] is True
  assert set(bce["test"]) == {"test_accuracy", "macro_f1_top2", "exact_threshold",
                              "macro_f1_threshold", "count_threshold", "two_threshold"}
  assert set(softmax["test"]) == {"test_accuracy", "macro_f1_top2"}
  assert min(softmax["test"]["test_accuracy"]) > 3 / 45  # learned something: 3x chance
  last = [r["test_accuracy"] for r in rows if r["variant"] == "bce" and r["epoch"] == 2]
  np.testing.assert_allclose(bce["test"]["test_accuracy"], last, rtol=1e-6)
  assert [(c["kind"], c["a"], c["b"], c["test"]) for c in saved["comparisons"]] == [
      ("loss", "bce", "softmax", "mcnemar"), ("decoding", "bce@z>0", "bce@top-2", "paired-t")]
  assert _sentences(saved["verdict"]) <= 3 and saved["headline"]
  assert json.loads((out / "config.json").read_text())["settings"]["hidden"] == [32]
  monkeypatch.setattr(jt, "iterate_training", None)  # finished runs are read back, not trained
  again = ml.main(argv)
  assert (again["variants"], again["comparisons"]) == (summary["variants"],
                                                       summary["comparisons"])


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_with_validation_selects_on_validation_pairs(tmp_path):
  out = tmp_path / "run"
  summary = ml.main(["--quick", "--val-size", "256", "--losses", "bce", "--lrs", "1e-3,3e-3",
                     "--out", str(out), "--no-progress"])
  bce = summary["variants"]["bce"]
  assert len(bce["selection"]) >= 2  # both rates, and more if a winner sat on an edge
  chosen = [row for row in bce["selection"] if row["lr"] == bce["selected"]["lr"]]
  assert chosen[0]["score"] == max(row["score"] for row in bce["selection"])
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in rows} == {"validation"}
  assert [c["kind"] for c in summary["comparisons"]] == ["decoding"]
