"""experiments.open_set on the harness: scores, thresholds, data, verdicts, CLI end to end.

Everything but the end-to-end test is NumPy on tiny inputs (no training, no JAX program)."""

from __future__ import annotations

import fractions
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from experiments import datasets, harness, open_set, protocol, runs
from jaxloss.train import Mnist
from _experiments import refusal  # noqa: E402

K = 5


def np_probability_score(name, z):
  """The scores as probabilities (or raw values), float64, from their definitions."""
  z = np.asarray(z, np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return {"max_softmax": lambda: p.max(-1), "max_sigmoid": lambda: 1 / (1 + np.exp(-z.max(-1))),
          "not_na": lambda: 1.0 - p[:, K], "max_logit": lambda: z.max(-1),
          "energy": lambda: np.log(np.exp(z).sum(-1))}[name]()


@pytest.mark.parametrize("name", ["max_softmax", "max_sigmoid", "not_na", "max_logit", "energy"])
def test_score_is_the_log_odds_of_the_probability_or_the_raw_value(name):
  z = np.random.default_rng(1).normal(0, 3, (64, K + 1))
  got = open_set.score(name, z.astype(np.float32), K)
  want = np_probability_score(name, z.astype(np.float32))
  if name in ("max_softmax", "max_sigmoid", "not_na"):
    want = np.log(want) - np.log1p(-want)
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_scores_have_no_ties_where_float32_probabilities_saturate():
  z = np.array([[40.0, 0, 0, 0, 0, -5.0], [30.0, 0, 0, 0, 0, -5.0]], np.float32)
  p = np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(
      -1, keepdims=True)
  assert np.float32(p[0, 0]) == np.float32(p[1, 0]) == 1.0  # a tie in float32
  for name in ("max_softmax", "max_sigmoid", "not_na", "max_logit", "energy"):
    s = open_set.score(name, z, K)
    assert np.all(np.isfinite(s)) and s[0] > s[1] > 25.0, name


def test_score_of_a_row_with_masked_classes_and_an_unknown_name():
  z = np.array([[2.0, -np.inf, -np.inf, -np.inf, -np.inf]])
  assert open_set.score("max_softmax", z, K)[0] == np.inf  # p = 1 exactly: log-odds +inf
  assert open_set.score("energy", z, K)[0] == 2.0
  with pytest.raises(ValueError, match="unknown score"):
    open_set.score("msp", z, K)


def brute_threshold(s, recall):
  """The largest score t with #{s >= t} >= recall% of n (exact fractions)."""
  ok = [t for t in s if fractions.Fraction(int(np.sum(s >= t)), len(s)) >= fractions.Fraction(
      recall, 100)]
  return max(ok)


@pytest.mark.parametrize("recall", [95, 80, 100, 1, 50])
def test_threshold_at_recall_and_auroc_against_brute_force(recall):
  rng = np.random.default_rng(recall)
  s = rng.integers(0, 12, 60).astype(np.float64)  # many ties
  u = rng.integers(0, 12, 37).astype(np.float64)
  assert open_set.threshold_at_recall(s, recall) == brute_threshold(s, recall)
  d = s[:, None] - u[None, :]
  assert open_set.auroc(s, u) == pytest.approx(np.mean((d > 0) + 0.5 * (d == 0)), abs=1e-12)
  assert math.isnan(open_set.threshold_at_recall(np.array([3.0, np.nan]), recall))
  assert math.isnan(open_set.auroc(s, np.append(u, np.nan)))


def test_threshold_keeps_exactly_the_decimal_share():
  s = np.arange(20.0)
  assert open_set.threshold_at_recall(s, 95) == 1.0  # keeps 19 of 20, not 20


def test_separation_threshold_from_validation_applied_to_the_test_digits():
  val = np.arange(1.0, 21.0)  # 95% of 20 kept: threshold 2
  test = np.array([5.0, 1.5, 9.0, 2.0, 0.0, 3.0, 1.0, 7.0])
  labels = np.array([0, 1, 2, 3, -8, -8, -10, -10])  # seen, then unseen 7, 7, 9, 9
  out = open_set.separation(val, test, labels, 95)
  assert out["threshold"] == 2.0
  assert out["seen_kept"] == 0.75  # 1.5 < 2 is lost
  assert out["rejection"] == 0.5 and out["by_digit"] == {7: 0.5, 9: 0.5}
  assert list(out["by_digit"]) == [7, 9]
  # AUROC: seen 5, 1.5, 9, 2 vs unseen 0, 3, 1, 7
  d = test[:4, None] - test[None, 4:]
  assert out["auroc"] == pytest.approx(np.mean((d > 0) + 0.5 * (d == 0)))
  bad = open_set.separation(np.append(val, np.nan), test, labels, 95)  # no threshold
  assert all(math.isnan(bad[k]) for k in ("seen_kept", "rejection", "threshold"))
  assert all(math.isnan(v) for v in bad["by_digit"].values())
  assert bad["auroc"] == out["auroc"]  # needs none
  bad = open_set.separation(val, np.append(test, np.nan), np.append(labels, -8), 95)
  assert all(math.isnan(bad[k]) for k in ("seen_kept", "rejection", "auroc"))


def test_natural_rules():
  z = np.array([[-1.0, -2, -3, -4, -5, 9], [0.5, -2, -3, -4, -5, -9], [0, 5.0, 0, 0, 0, 9]])
  np.testing.assert_array_equal(open_set.natural_rule("sigmoid_bce", z[:, :K], K),
                                [True, False, False])
  np.testing.assert_array_equal(open_set.natural_rule("ce_na", z, K), [True, False, True])


def test_split_specs_parse_and_refuse():
  assert open_set.split_specs("01234:56, 56789:01,") == ("01234:56", "56789:01")
  assert open_set.split_digits("24679:38") == ((2, 4, 6, 7, 9), (3, 8), (0, 1, 5))
  assert open_set.split_key("01234:56") == "s01234n56"
  assert open_set.split_label("01234:56") == "01234 / 56 / 789"
  for bad in ("0:12", "01234", "01234:4", "0123456789:", "012345678:9", "01:23,01:23", "ab:c",
              ""):
    with pytest.raises(ValueError, match="SEEN:NA"):
      open_set.split_specs(bad)


def _fake_mnist(n_train=600, n_test=200):
  """Every image is filled with its digit, so images show where they came from."""
  train_labels = np.arange(n_train, dtype=np.int32) % 10
  test_labels = np.arange(n_test, dtype=np.int32) % 10
  fill = lambda labels: np.broadcast_to(labels[:, None, None], (len(labels), 28, 28)).astype(
      np.uint8)
  return Mnist(fill(train_labels), train_labels, fill(test_labels), test_labels)


def test_data_splits_per_split_and_method():
  s = open_set.Settings(splits=("270:56", "01234:9"), val_size=30, batch_size=16)
  out = open_set.data_splits(s, _fake_mnist())
  assert list(out) == ["s270n56.digits", "s270n56.na", "s270n56.oe", "s01234n9.digits",
                       "s01234n9.na", "s01234n9.oe"]
  digits, na, oe = (out[f"s270n56.{k}"] for k in ("digits", "na", "oe"))
  assert len(digits.train[1]) == 3 * 60 - 30 and len(digits.val[1]) == 30  # 60 per digit
  assert set(digits.train[1]) == set(digits.val[1]) == {0, 1, 2}
  # seen digits 2, 7, 0 -> labels 0, 1, 2: the images say which digit they are
  np.testing.assert_array_equal(digits.train[0][:, 0, 0], np.array([2, 7, 0])[digits.train[1]])
  images, labels = digits.test
  assert labels.dtype == np.int32 and np.all(labels[:60] >= 0) and np.all(labels[60:] < 0)
  # never-seen test digits: every digit but the seen and the NA ones (5, 6 left out)
  assert set(labels[60:]) == {-1 - d for d in (1, 3, 4, 8, 9)}
  np.testing.assert_array_equal(images[60:, 0, 0], -1 - labels[60:])
  for data in (na, oe):  # both NA classes: label 3, the mean count per seen digit (150 / 3)
    assert np.bincount(data.train[1]).tolist() == np.bincount(digits.train[1]).tolist() + [50]
    assert data.val is digits.val and data.test is digits.test
  assert set(oe.train[0][oe.train[1] == 3, 0, 0]) == {5, 6}  # real training images of 5, 6
  assert not set(na.train[0][na.train[1] == 3].ravel()) <= set(range(10))  # synthetic
  s1 = open_set.Settings(splits=("01234:9",), val_size=30, batch_size=16, na_images=7)
  assert np.sum(open_set.data_splits(s1, _fake_mnist())["s01234n9.oe"].train[1] == 5) == 7
  for bad, match in ((dict(val_size=290), "need --val-size"),
                     (dict(val_size=30, na_images=61), "NA digits 9 have 60 training images")):
    with pytest.raises(ValueError, match=match):
      open_set.data_splits(open_set.Settings(splits=("01234:9",), batch_size=16, **bad),
                           _fake_mnist())


def test_with_na_class_draws_real_images_without_replacement():
  base = _fake_mnist(20, 10)
  real = np.arange(6, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8) + 100
  out = datasets.with_na_class(base, n_train=4, n_test=2, seed=3, images=real)
  drawn = np.concatenate([out.train_images[out.train_labels == 10, 0, 0],
                          out.test_images[10:, 0, 0]])
  assert sorted(drawn.tolist()) == list(range(100, 106))  # all six, each once
  np.testing.assert_array_equal(out.test_labels, np.r_[base.test_labels, 10, 10])
  again = datasets.with_na_class(base, n_train=4, n_test=2, seed=3, images=real)
  np.testing.assert_array_equal(again.train_images, out.train_images)
  with pytest.raises(ValueError, match="only 6 images given"):
    datasets.with_na_class(base, n_train=5, n_test=2, seed=3, images=real)


def _levels(**rejection):
  """Levels of one split: rejection per arm as given, AUROC equal for every arm."""
  return {"s": {arm: {"rejection": np.asarray(rejection.get(arm, [50.0, 51.0, 52.0])),
                      "auroc": np.array([90.0, 90.1, 90.2])} for arm in open_set.ARMS}}


def test_score_verdicts_paired_per_split_with_holm_over_all():
  levels = _levels(energy=[60.0, 61.5, 62.0], na_digits=[90.0, 91.0, 92.0],
                   na_synthetic=[50.0, 51.1, 51.9])
  levels["t"] = _levels(max_sigmoid=[40.0, 40.5, 41.0])["s"]
  found = open_set.score_verdicts(levels, 1.0)
  assert len(found) == 2 * 2 * len(open_set.PAIRS)
  called = {(k, m, c.a, c.b): c for k, m, c in found}
  assert called["s", "rejection", "energy", "max_softmax"].verdict == "better"
  assert called["s", "rejection", "energy", "max_softmax"].interval.mean == pytest.approx(
      61.1667 - 51.0, abs=1e-4)
  assert called["s", "rejection", "na_digits", "na_synthetic"].verdict == "better"
  assert called["t", "rejection", "max_sigmoid", "max_softmax"].verdict == "worse"
  assert called["s", "auroc", "max_logit", "max_softmax"].verdict == "equivalent"
  np.testing.assert_allclose([c.p_holm for *_, c in found],
                             open_set.stats.holm([c.p_value for *_, c in found]))
  nan = open_set.score_verdicts(_levels(energy=[np.nan, 1.0, 2.0]), 1.0)
  assert [c.verdict for k, m, c in nan if c.a == "energy" and m == "rejection"] == [
      "inconclusive"]


def test_tally():
  assert open_set.tally(["better"]) == "better in 1/1 split"
  assert open_set.tally(["inconclusive", "better", "better"]) == (
      "better in 2/3 splits, inconclusive in 1")


def _fake_logits(rng, labels, method, sep):
  """Logits [N, C]: seen rows favour their digit by a margin ~ sep, unseen rows a random
  digit by less (the scores overlap); NA models put their NA logit far above on unseen rows."""
  n = len(labels)
  z = rng.normal(0.0, 0.3, (n, K + (method in open_set.NA_OF)))
  seen = labels >= 0
  z[np.flatnonzero(seen), labels[seen]] += sep + rng.normal(0, 0.5, seen.sum())
  z[np.flatnonzero(~seen), rng.integers(0, K, (~seen).sum())] += sep * rng.uniform(
      0.3, 1.2, (~seen).sum())
  if method in open_set.NA_OF:
    z[~seen, K] += 3 * sep
  return z.astype(np.float32)


def _fake_outcome(rng, method, seeds=4, sep=3.0):
  val_labels = np.tile(np.arange(K, dtype=np.int32), 20)
  test_labels = np.r_[np.tile(np.arange(K), 10), np.repeat([-8, -9, -10], 20)].astype(np.int32)
  test = {}
  for prefix, labels in (("", test_labels), ("val/", val_labels)):
    logits = np.stack([_fake_logits(rng, labels, method, sep) for _ in range(seeds)])
    correct = (labels >= 0) & (np.argmax(logits[..., :K], -1) == labels)
    test.update({f"{prefix}logits": logits, f"{prefix}labels": np.tile(labels, (seeds, 1)),
                 f"{prefix}correct": correct,
                 f"{prefix}test_accuracy": correct.sum(1) / (labels >= 0).sum()})
  result = runs.RunResult("x", "done", [], {}, 1.0, 0, [{"seed": s} for s in range(seeds)], test)
  return harness.Outcome(harness.Variant("x", loss_fn=None, final_splits=("val",)),
                         protocol.Selected({"lr": 1e-3}, [], [], result, [result]))


def test_report_numbers_verdicts_tables_and_summary():
  rng = np.random.default_rng(0)
  s = open_set.Settings(splits=("01234:56",), seeds=(0, 1, 2, 3))
  outcomes = {f"s01234n56.{m}": _fake_outcome(rng, m) for m in open_set.METHODS}
  rep = open_set.report(s, outcomes)
  levels = rep.summary["levels"]["s01234n56"]
  # the NA models put every unseen digit on their NA class: all rejected, AUROC 100
  for arm in ("na_synthetic", "na_digits"):
    np.testing.assert_allclose(levels[arm]["rejection"], 100.0)
    np.testing.assert_allclose(levels[arm]["auroc"], 100.0)
  # one arm by hand: threshold on validation, applied to the test digits
  o = outcomes["s01234n56.softmax_ce"]
  val = open_set.score("max_softmax", o.on("val")["logits"][1], K)
  test = open_set.score("max_softmax", o.test["logits"][1], K)
  t = np.sort(val)[100 - 95]  # 95% of 100: keep 95
  assert levels["max_softmax"]["rejection"][1] == pytest.approx(100 * np.mean(test[50:] < t))
  assert levels["max_softmax"]["seen_kept"][1] == pytest.approx(100 * np.mean(test[:50] >= t))
  assert set(levels["max_softmax"]["by_digit"]) == {"7", "8", "9"}
  called = {(c["metric"], c["a"], c["b"]): c for c in rep.summary["comparisons"]}
  assert len(called) == 2 * len(open_set.PAIRS) + 3
  assert called["rejection", "na_digits", "max_softmax"]["verdict"] == "better"
  assert called["accuracy", "s01234n56.ce_oe", "s01234n56.softmax_ce"]["test"] == "mcnemar"
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", rep.verdict)) <= 3, rep.verdict
  assert "1 - p(NA) real digits 100.0%" in rep.verdict and "Holm over all 12" in rep.verdict
  assert len(rep.headline.split()) <= 40, rep.headline
  assert "| 01234:56 | 0,1,2,3,4 | 5,6 | 7,8,9 |" in rep.markdown
  assert "| score | 7 (01234) | 8 (01234) | 9 (01234) |" in rep.markdown
  assert re.search(r"\| 01234 / 56 / 789 \| 1 - p\(NA\) real digits vs max softmax \| "
                   r"rejection \| \+\d+\.\d\d \|", rep.markdown)
  assert "mean of the splits" not in rep.markdown  # one split
  json.dumps(harness.outputs.json_ready(rep.summary))
  assert set(rep.figures) == {"separation.png", "histograms.png"}


def _refused(argv, capsys, monkeypatch, tmp_path):
  return refusal(open_set.main, argv, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, start", [
    (["--splits", "0:12"], "error: --splits: must be distinct comma-separated SEEN:NA"),
    (["--splits", "01:23,01:23"], "error: --splits: must be distinct"),
    (["--recall", "101"], "error: --recall: must be a percentage <= 100"),
    (["--recall", "0.95"], "error: --recall: must be an integer >= 1"),
    (["--seeds", "1"], "error: --seeds: the paired verdicts need at least 2 seeds"),
    (["--score-margin", "0"], "error: --score-margin: must be a finite number > 0"),
    (["--val-size", "0", "--lrs", "1e-3"], "error: --val-size: the thresholds are set on"),
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
  for figure in ("separation.png", "histograms.png"):
    assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((out / "summary.json").read_text())
  names = [f"s01234n56.{m}" for m in open_set.METHODS]
  assert list(saved["variants"]) == names
  for name, v in saved["variants"].items():
    assert v["selected"] == {"lr": 3e-3} and v["loss"] == open_set.LOSS_OF[v["method"]]
    assert set(v["test"]) == {"test_accuracy"} and min(v["test"]["test_accuracy"]) > 0.3
  levels = saved["levels"]["s01234n56"]
  assert set(levels) == set(open_set.ARMS)
  for arm, v in levels.items():
    for metric in ("rejection", "seen_kept", "auroc", "accuracy"):
      assert len(v[metric]) == 2 and all(0.0 <= x <= 100.0 for x in v[metric]), (arm, metric)
    assert set(v["by_digit"]) == {"7", "8", "9"}  # the NA digits 5, 6 are not evaluated
  assert [(c["metric"], c["a"], c["b"]) for c in saved["comparisons"]] == [
      (m, a, b) for m in open_set.SEPARATION for a, b in open_set.PAIRS] + [
          ("accuracy", f"s01234n56.{m}", "s01234n56.softmax_ce") for m in open_set.METHODS[1:]]
  assert all(c["verdict"] in ("better", "worse", "equivalent", "inconclusive")
             for c in saved["comparisons"])
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 4 * 2 * 2 and {r["split"] for r in rows} == {"validation"}
  # the stored outputs give the report's numbers: threshold on validation, then the test
  with np.load(next(out.glob("runs/s01234n56.ce_oe-*/test.npz"))) as stored:
    labels, logits = stored["labels"][1], stored["logits"][1]
    assert logits.shape == (len(labels), K + 1) and stored["val/logits"].shape[1:] == (256, K + 1)
    assert set(labels[labels < 0]) == {-8, -9, -10}
    t = open_set.threshold_at_recall(open_set.score("not_na", stored["val/logits"][1], K), 95)
  test_N = open_set.score("not_na", logits, K)
  assert levels["na_digits"]["rejection"][1] == pytest.approx(
      100 * np.mean(test_N[labels < 0] < t))
  stamps = {p: os.path.getmtime(p) for p in out.glob("runs/*/result.json")}
  assert len(stamps) == 4

  again = open_set.main(argv)  # finished runs are read back, not retrained
  assert {p: os.path.getmtime(p) for p in out.glob("runs/*/result.json")} == stamps
  assert again["variants"] == summary["variants"]
  assert again["comparisons"] == summary["comparisons"]
