"""experiments.open_set on the harness: scores, masked metrics, data, verdicts, CLI end to end."""

from __future__ import annotations

import fractions
import json
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import harness, open_set, protocol, runs
from jaxloss.train import Mnist
from _experiments import refusal  # noqa: E402

K = 5


def np_log_odds(method, z):
  """logit(score) from the probability definitions, float64."""
  z = np.asarray(z, np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  s = {"softmax_ce": lambda: p.max(-1), "sigmoid_bce": lambda: 1 / (1 + np.exp(-z.max(-1))),
       "ce_na": lambda: 1.0 - p[:, K]}[method]()
  return np.log(s) - np.log1p(-s)


def np_separation(score, seen, recall):
  s_in, s_out = np.sort(score[seen]), score[~seen]
  kept = math.ceil(fractions.Fraction(recall, 100) * len(s_in))
  t = s_in[len(s_in) - kept]
  d = s_in[:, None] - s_out[None, :]
  return np.mean(s_out < t), np.mean((d > 0) + 0.5 * (d == 0))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("method", open_set.METHODS)
def test_log_odds_is_the_logit_of_the_probability_score(method):
  z = np.random.default_rng(1).normal(0, 3, (64, K + 1))
  got = open_set.log_odds(method, jnp.asarray(z), K)
  np.testing.assert_allclose(np.asarray(got), np_log_odds(method, z), rtol=1e-9, atol=1e-9)


def test_log_odds_has_no_ties_where_float32_probabilities_saturate():
  z = jnp.array([[40.0, 0, 0, 0, 0, -5.0], [30.0, 0, 0, 0, 0, -5.0]], jnp.float32)
  assert float(jax.nn.softmax(z)[0, 0]) == float(jax.nn.softmax(z)[1, 0]) == 1.0  # a tie
  for method in open_set.METHODS:
    lo = np.asarray(open_set.log_odds(method, z, K))
    assert np.all(np.isfinite(lo)) and lo[0] > lo[1] > 25.0


@pytest.mark.parametrize("recall", [95, 80, 100, 1])
def test_separation_on_masks_equals_jaxloss_on_the_parts(recall):
  rng = np.random.default_rng(recall)
  score = rng.integers(0, 12, 300).astype(np.float32)  # many ties
  seen = rng.random(300) < 0.6  # interleaved: the masks, not the order, define the parts
  out = jax.jit(lambda s, m: open_set.separation(s, m, recall))(score, seen)
  t = jaxloss.threshold_at_recall(score[seen], recall=recall / 100)
  np.testing.assert_allclose(out["rejection"], jaxloss.rejection_rate(score[~seen], t))
  np.testing.assert_allclose(out["auroc"], jaxloss.auroc(score[seen], score[~seen]), rtol=1e-6)
  np.testing.assert_allclose([out["rejection"], out["auroc"]],
                             np_separation(score, seen, recall), rtol=1e-6)


def test_separation_is_nan_without_unseen_digits_or_with_a_nan_score():
  score = jnp.arange(6.0)
  out = open_set.separation(score, jnp.ones(6, bool), 95)
  assert np.isnan(out["rejection"]) and np.isnan(out["auroc"])
  out = open_set.separation(score.at[2].set(jnp.nan), jnp.arange(6) < 3, 95)
  assert np.isnan(out["rejection"]) and np.isnan(out["auroc"])


def test_metrics_and_seen_correct_on_hand_made_logits():
  z = jnp.array([[5.0, 0, 0, 0, 0, -9],   # seen 0, right
                 [0, 5.0, 0, 0, 0, 9],    # seen 1: right over the digits, argmax NA
                 [5.0, 0, 0, 0, 0, -9],   # seen 2, wrong
                 [-1.0, -2, -3, -4, -5, 9],  # unseen 7: every logit < 0 but NA
                 [0, 0, 0, 3.0, 0, -9]])  # unseen 9
  y = jnp.array([0, 1, 2, -8, -10])
  np.testing.assert_array_equal(open_set.seen_correct(z, y, num_seen=K)["correct"],
                                [True, True, False, False, False])
  ce = open_set.metrics(z[:, :K], y, method="softmax_ce", num_seen=K, recall=95)
  assert set(ce) == {"test_accuracy", "rejection", "auroc"}
  np.testing.assert_allclose(ce["test_accuracy"], 2 / 3)
  bce = open_set.metrics(z[:, :K], y, method="sigmoid_bce", num_seen=K, recall=95)
  assert float(bce["rule_unseen_rejected"]) == 0.5 and float(bce["rule_seen_rejected"]) == 0.0
  na = open_set.metrics(z, y, method="ce_na", num_seen=K, recall=95)
  np.testing.assert_allclose(na["test_accuracy"], 2 / 3)
  np.testing.assert_allclose([na["rule_unseen_rejected"], na["rule_seen_rejected"]], [0.5, 1 / 3])
  r = np.asarray(open_set.log_odds("ce_na", z, K))
  np.testing.assert_allclose([na["rejection"], na["auroc"]],
                             np_separation(r, np.arange(5) < 3, 95), rtol=1e-6)


def _fake_mnist(n_train=400, n_test=100):
  rng = np.random.default_rng(0)
  return Mnist(rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8),
               np.arange(n_train, dtype=np.int32) % 10,
               rng.integers(0, 255, (n_test, 28, 28), dtype=np.uint8),
               np.arange(n_test, dtype=np.int32) % 10)


def test_splits_train_on_seen_digits_and_test_on_seen_then_unseen(capsys):
  s = open_set.Settings(seen=(2, 7, 0), val_size=30, batch_size=16)
  out = open_set.splits(s, _fake_mnist())
  digits, na = out["digits"], out["na"]
  assert len(digits.train[1]) == 3 * 40 - 30 and len(digits.val[1]) == 30  # 40 per digit
  assert set(digits.train[1]) == set(digits.val[1]) == {0, 1, 2}
  # NA: the mean count per seen digit (90 / 3), with the next label
  assert np.bincount(na.train[1]).tolist() == np.bincount(digits.train[1]).tolist() + [30]
  assert na.val is digits.val and na.test is digits.test
  labels = digits.test[1]
  assert labels.dtype == np.int32 and len(labels) == 100
  assert np.all(labels[:30] >= 0) and np.all(labels[30:] < 0)  # seen first, then unseen
  assert set(labels[30:]) == {-1 - d for d in (1, 3, 4, 5, 6, 8, 9)}
  assert open_set.splits(open_set.Settings(val_size=0, na_images=7), _fake_mnist())[
      "na"].train[1].tolist().count(5) == 7
  with pytest.raises(SystemExit) as exit_info:
    open_set.splits(open_set.Settings(val_size=190, batch_size=16), _fake_mnist())
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.startswith("error: need --val-size + --batch-size <= 200")


def _fake_outcome(**test):
  test = {k: np.asarray(v, np.float64) for k, v in test.items()}
  acc = test["test_accuracy"]
  test["correct"] = np.arange(200)[None, :] < np.round(200 * acc)[:, None]  # [S, N]
  result = runs.RunResult("x", "done", [], {}, 1.0, 0, [{"seed": s} for s in range(len(acc))],
                          test)
  return harness.Outcome(harness.Variant("x", loss_fn=None),
                         protocol.Selected({"lr": 1e-3}, [], [], result, [result]))


def _outcomes():
  return {
      "softmax_ce": _fake_outcome(test_accuracy=[0.9, 0.91, 0.9], rejection=[0.70, 0.72, 0.71],
                                  auroc=[0.930, 0.931, 0.932]),
      "sigmoid_bce": _fake_outcome(test_accuracy=[0.9, 0.91, 0.9], rejection=[0.80, 0.83, 0.81],
                                   auroc=[0.931, 0.932, 0.933], rule_unseen_rejected=[0.1] * 3,
                                   rule_seen_rejected=[0.0] * 3),
      "ce_na": _fake_outcome(test_accuracy=[0.5, 0.52, 0.51], rejection=[0.60, 0.62, 0.61],
                             auroc=[0.90, 0.91, 0.905], rule_unseen_rejected=[0.08] * 3,
                             rule_seen_rejected=[0.001] * 3)}


def test_report_verdicts_summary_and_figure(tmp_path):
  s = open_set.Settings()
  rep = open_set.report(s, _outcomes())
  called = {(c["metric"], c["a"]): c for c in rep.summary["comparisons"]}
  assert called["rejection", "sigmoid_bce"]["verdict"] == "better"
  np.testing.assert_allclose(called["rejection", "sigmoid_bce"]["interval"]["mean"], 10.333333)
  assert called["rejection", "ce_na"]["verdict"] == "worse"
  assert called["auroc", "sigmoid_bce"]["verdict"] == "equivalent"  # +0.1 points, margin 1
  assert called["auroc", "ce_na"]["verdict"] == "worse"
  assert called["accuracy", "sigmoid_bce"]["verdict"] == "equivalent"  # harness.compare
  assert (called["accuracy", "ce_na"]["verdict"], called["accuracy", "ce_na"]["test"]) == (
      "worse", "mcnemar")
  p = [c["p_value"] for m, c in called.items() if m[0] != "accuracy"]
  holm = [c["p_holm"] for m, c in called.items() if m[0] != "accuracy"]
  np.testing.assert_allclose(holm, open_set.stats.holm(p))
  np.testing.assert_allclose(rep.summary["levels"]["ce_na"]["rule_unseen_rejected"], 8.0)
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", rep.verdict)) <= 3
  assert "sigmoid_bce rejection +10.33 (95% CI" in rep.verdict
  assert len(rep.headline.split()) <= 40 and "sigmoid BCE is better" in rep.headline
  assert "| sigmoid_bce | max sigmoid | 90.33 ± 0.58 | 81.33 ± 1.53 |" in rep.markdown
  rep.figures["separation.png"](str(tmp_path / "separation.png"))
  assert (tmp_path / "separation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _refused(argv, capsys, monkeypatch, tmp_path):
  return refusal(open_set.main, argv, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, start", [
    (["--seen", "3"], "error: --seen: must be 2 to 9"),
    (["--seen", "1,1,2"], "error: --seen: must be 2 to 9"),
    (["--seen", "0,10"], "error: --seen: must be 2 to 9"),
    (["--recall", "101"], "error: --recall: must be a percentage <= 100"),
    (["--recall", "0.95"], "error: --recall: must be an integer >= 1"),
    (["--seeds", "1"], "error: --seeds: the paired verdicts need at least 2 seeds"),
    (["--score-margin", "0"], "error: --score-margin: must be a finite number > 0"),
    (["--val-size", "100", "--train-subset", "100"], "error: --val-size: must be below"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert _refused(argv, capsys, monkeypatch, tmp_path).startswith(start)


def test_refusal_exits_without_importing_jax(tmp_path):
  code = ("import sys\nfrom experiments import open_set\ntry:\n"
          "  open_set.main(['--recall', '101', '--out', sys.argv[1]])\nexcept SystemExit:\n"
          "  assert 'jax' not in sys.modules, 'jax was imported before the flags were checked'\n"
          "  raise\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=root,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
      "error: --recall: must be a percentage <= 100, got 101"]


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_resume(tmp_path):
  out = tmp_path / "run"
  argv = ["--quick", "--out", str(out), "--no-progress"]
  summary = open_set.main(argv)
  assert (out / "separation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((out / "summary.json").read_text())
  assert list(saved["variants"]) == list(open_set.METHODS)
  for name, v in saved["variants"].items():
    assert v["selected"] == {"lr": 3e-3} and v["loss"] == open_set.LOSS_OF[name]
    test = v["test"]
    assert set(test) == {"test_accuracy", *open_set.SEPARATION} | (
        {"rule_unseen_rejected", "rule_seen_rejected"} if name in open_set.RULE_OF else set())
    for values in test.values():
      assert len(values) == 2 and all(0.0 <= x <= 1.0 for x in values)
    assert min(test["auroc"]) > 0.5 and min(test["test_accuracy"]) > 0.5
    np.testing.assert_allclose(saved["levels"][name]["auroc"], 100 * np.mean(test["auroc"]))
  assert [(c["metric"], c["a"]) for c in saved["comparisons"]] == [
      (m, a) for m in (*open_set.SEPARATION, "accuracy") for a in ("sigmoid_bce", "ce_na")]
  assert all(c["verdict"] in ("better", "worse", "equivalent", "inconclusive")
             for c in saved["comparisons"])
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 3 * 2 * 2 and {r["split"] for r in rows} == {"test"}  # no selection
  last = [r["rejection"] for r in rows if r["variant"] == "ce_na" and r["epoch"] == 2]
  np.testing.assert_allclose(saved["variants"]["ce_na"]["test"]["rejection"], last, rtol=1e-6)
  stamps = {p: os.path.getmtime(p) for p in out.glob("runs/*/result.json")}
  assert len(stamps) == 3

  again = open_set.main(argv)  # finished runs are read back, not retrained
  assert {p: os.path.getmtime(p) for p in out.glob("runs/*/result.json")} == stamps
  assert again["variants"] == summary["variants"]
  assert again["comparisons"] == summary["comparisons"]
