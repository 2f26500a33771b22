"""experiments.label_smoothing on the harness: data, loss, verdict, refusals, the CLI end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import datasets, harness, protocol, runs, stats
from experiments import label_smoothing as ls
from jaxloss.train import Mnist
from _experiments import refusal  # noqa: E402


def _indexed_mnist(n=1000, n_test=50):
  """Images that carry their own index (two bytes), so a permutation can be undone."""
  rng = np.random.default_rng(3)
  index = np.arange(n)
  images = np.stack([index // 256, index % 256], axis=1).astype(np.uint8)
  return Mnist(images, rng.integers(0, 10, n).astype(np.int32),
               np.zeros((n_test, 2), np.uint8), rng.integers(0, 10, n_test).astype(np.int32))


def test_splits_add_noise_before_the_validation_split_and_keep_test_clean():
  mnist = _indexed_mnist()
  s = ls.Settings(noise_rates=(0.0, 0.2), val_size=200, noise_seed=4)
  got = ls.splits(s, mnist)
  assert list(got) == ["noise0", "noise0.2"]
  noisy_N, flipped_N = datasets.symmetric_label_noise(mnist.train_labels, rate=0.2,
                                                      num_classes=10, seed=4)
  for key, want_N in (("noise0", mnist.train_labels), ("noise0.2", noisy_N)):
    sp = got[key]
    assert sp.train[1].shape == (800,) and sp.val[1].shape == (200, 2)
    # Test labels: (given, true), both clean.
    np.testing.assert_array_equal(sp.test[1], np.stack([mnist.test_labels] * 2, axis=1))
    index = lambda images: images[:, 0].astype(int) * 256 + images[:, 1]
    np.testing.assert_array_equal(sp.train[1], want_N[index(sp.train[0])])
    np.testing.assert_array_equal(sp.val[1][:, 0], want_N[index(sp.val[0])])  # as given
    np.testing.assert_array_equal(sp.val[1][:, 1], mnist.train_labels[index(sp.val[0])])
  val_index = got["noise0.2"].val[0][:, 0].astype(int) * 256 + got["noise0.2"].val[0][:, 1]
  assert 0.1 < flipped_N[val_index].mean() < 0.3  # the validation labels are noisy too
  assert flipped_N.sum() == 200


def test_smoothed_loss_traces_alpha_and_alpha_0_is_cross_entropy():
  rng = np.random.default_rng(0)
  logits_BxC = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
  labels_B = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
  per_alpha = jax.jit(jax.vmap(ls.smoothed_loss, in_axes=(None, None, 0)))(
      logits_BxC, labels_B, jnp.array([0.0, 0.1]))
  np.testing.assert_allclose(per_alpha[0], jnp.mean(
      jaxloss.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)), rtol=1e-5)
  np.testing.assert_allclose(per_alpha[1], jnp.mean(
      jaxloss.label_smoothing_cross_entropy(logits_BxC, labels_B, alpha=0.1)), rtol=1e-5)


def test_variants_one_program_per_noise_rate_sweeping_sorted_alphas():
  got = ls.variants(ls.Settings(alphas=(0.2, 0.0, 0.1), noise_rates=(0.0, 0.4), hidden=(32,)))
  assert [(v.name, v.data) for v in got] == [("noise0", "noise0"), ("noise0.4", "noise0.4")]
  assert all(dict(v.sweep) == {"alpha": (0.0, 0.1, 0.2)} and not v.params for v in got)
  assert dict(got[1].train) == {"hidden": (32,), "num_classes": 10, "schedule": "cosine"}
  assert got[1].describe == {"noise_rate": 0.4, "noise_seed": 0}
  assert got[1].final_splits == ("val", "train") and got[1].metric == "test_accuracy"
  assert got[1].eval_fn is ls.evaluate and got[1].test_fn is ls.per_example


def test_smoothed_target_and_lower_is_better_verdicts():
  assert ls.smoothed_target(0.2) == pytest.approx(0.82) and ls.smoothed_target(0) == 1
  lower, higher, flat, broken = ls.lower_is_better(
      [np.array([-1.0, -1.1, -0.9]), np.array([1.0, 1.1, 0.9]), np.zeros(3),
       np.array([0.0, np.nan, 1.0])], margin=0.5)
  assert lower["verdict"] == "better" and higher["verdict"] == "worse"
  assert flat["verdict"] == "equivalent" and broken["verdict"] == "n/a"
  assert lower["diff"] == pytest.approx(-1.0) and lower["low"] < -1 < lower["high"]
  p = stats.paired_t_pvalue([-1.0, -1.1, -0.9])
  assert lower["p_holm"] == pytest.approx(min(1, 3 * p))  # Holm over the 3 finite ones


N_TEST, K = 100, 10


def _model(acc, train_acc, gap, noisy):
  """One model's final evaluation: the same accuracy `acc` and confidence on validation
  (given labels noisy on every 5th example when `noisy`) and test. Every row's logits are
  ``[gap, 0, ...]`` (exactly tied confidences); the label is 0 where the row is right."""
  correct_N = np.arange(N_TEST) < round(acc * N_TEST)
  labels_N = np.where(correct_N, 0, 1 + np.arange(N_TEST) % (K - 1))
  given_N = np.where((np.arange(N_TEST) % 5 == 0) & noisy, (labels_N + 3) % K, labels_N)
  logits = np.zeros((N_TEST, K))
  logits[:, 0] = gap
  conf = np.exp(gap) / (np.exp(gap) + K - 1)
  return {"test_accuracy": acc, "test_confidence": conf, "correct": correct_N, "logits": logits,
          "labels": np.stack([labels_N] * 2, 1).astype(np.int8), "val/logits": logits,
          "val/labels": np.stack([given_N, labels_N], 1).astype(np.int8),
          "val/test_accuracy": acc, "train/test_accuracy": train_acc}


def _noise_outcomes(rate, spec, selected_lr, seeds=(0, 1, 2), epochs=3):
  """Outcomes of one variant: ``spec[(lr, alpha)] = (accs, train_accs, gap)`` per seed."""
  points = list(spec)
  models = [{"lr": lr, "alpha": a, "seed": s} for lr, a in points for s in seeds]
  per_model = [_model(spec[(m["lr"], m["alpha"])][0][i], spec[(m["lr"], m["alpha"])][1][i],
                      spec[(m["lr"], m["alpha"])][2], rate > 0)
               for m in models for i in [seeds.index(m["seed"])]]
  rows = [{"run": "r", **m, "epoch": e, "test_accuracy": d["test_accuracy"],
           "clean_accuracy": d["test_accuracy"] * e / epochs,
           "train_accuracy": d["train/test_accuracy"] * e / epochs}
          for m, d in zip(models, per_model) for e in range(1, epochs + 1)]
  test = {k: np.stack([np.asarray(d[k]) for d in per_model]) for k in per_model[0]}
  result = runs.RunResult("r", "done", rows, {}, 1.0, 0, models, test)
  variant = harness.Variant(ls.data_key(rate), loss_fn=None, final_splits=("val", "train"))
  out = {}
  for alpha in sorted({a for _, a in points}):
    i = points.index((selected_lr, alpha))
    out[ls.outcome_name(rate, alpha)] = harness.Outcome(variant, protocol.Selected(
        {"lr": selected_lr, "alpha": alpha}, [], [], result.point(i), [result]))
  return out


def _outcomes(seeds=(0, 1, 2), memorize=1.0):
  n = len(seeds)
  clean = _noise_outcomes(0.0, {
      (1e-3, 0.0): ([0.90, 0.91, 0.92][:n], [1.0] * n, 6.0),
      (1e-3, 0.2): ([0.95, 0.95, 0.97][:n], [1.0] * n, 2.0)}, 1e-3, seeds)
  noisy = _noise_outcomes(0.2, {
      (1e-3, 0.0): ([0.80, 0.81, 0.82][:n], [0.8] * n, 3.0),
      (1e-3, 0.2): ([0.80, 0.81, 0.82][:n], [0.8] * n, 1.0),
      (1e-2, 0.0): ([0.70, 0.71, 0.72][:n], [memorize] * n, 8.0),
      (1e-2, 0.2): ([0.75, 0.76, 0.77][:n], [1.0] * n, 4.0)}, 1e-3, seeds)
  return clean | noisy


def test_report_pairs_every_alpha_with_cross_entropy_and_the_memorizing_control():
  s = ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0, 0.2), seeds=(0, 1, 2))
  report = ls.report(s, _outcomes())
  rows = report.summary["rows"]
  assert [(r["noise_rate"], r["alpha"]) for r in rows] == [(0, 0), (0, 0.2), (0.2, 0), (0.2, 0.2)]
  assert "acc_diff" not in rows[0] and rows[1]["acc_verdict"] == "better"
  assert rows[1]["acc_diff"] == pytest.approx(14 / 3)
  assert rows[1]["acc_p_holm"] == pytest.approx(2 * 2 * 0.5 ** 14)  # McNemar, Holm over 2
  assert rows[3]["acc_diff"] == 0 and rows[3]["acc_verdict"] == "equivalent"
  assert rows[1]["train_acc"] == 100 and rows[2]["train_acc"] == pytest.approx(80)
  assert rows[1]["target"] == pytest.approx(0.82) and rows[1]["lr"] == 1e-3
  # T makes the confidence equal the accuracy (the same on validation and test): ECE 0 after.
  for r in rows:
    assert r["ece_after"] == pytest.approx(0, abs=1e-6) and r["ece_before"] > 0.05
    assert r["adaptive_ece_after"] == pytest.approx(0, abs=1e-6) and r["at_bound"] == 0
  acc = np.array([0.90, 0.91, 0.92])
  want_t = np.mean(6.0 / np.log((K - 1) * acc / (1 - acc)))
  assert rows[0]["temperature"] == pytest.approx(want_t, rel=1e-5)
  assert rows[1]["ece_after_verdict"] == "equivalent" and rows[1]["nll_after_verdict"] == "better"
  assert rows[3]["nll_after_diff"] == pytest.approx(0, abs=1e-9)  # same accuracy, same NLL
  # Calibrated (confidence = accuracy a), the NLL is -a log a - (1 - a) log((1 - a) / 9).
  nll = lambda a: np.mean(-a * np.log(a) - (1 - a) * np.log((1 - a) / (K - 1)))
  assert rows[1]["nll_after_diff"] == pytest.approx(
      nll(np.array([0.95, 0.95, 0.97])) - nll(acc), rel=1e-6)
  # Noisy validation labels: a T fit on them is softer (it calibrates to the noise).
  assert rows[2]["given_temperature"] > rows[2]["temperature"]
  assert rows[1]["conf_diff"] < 0

  control = report.summary["control"]["0.2"]
  assert [(r["alpha"], r["lr"]) for r in control] == [(0, 1e-2), (0.2, 1e-2)]
  assert control[1]["acc_diff"] == pytest.approx(5) and control[1]["acc_verdict"] == "better"
  assert report.summary["train_by_rate"]["0.2"] == {"0.001": {"0": pytest.approx(80), "0.2":
                                                    pytest.approx(80)}, "0.01": {"0": 100,
                                                                                 "0.2": 100}}
  assert report.verdict.startswith(
      "Clean labels (nets at the selected rates fit 100.0% of their training labels): "
      "cross-entropy 91.00% test accuracy; label smoothing's accuracy: 1 better, best "
      "alpha=0.2 +4.67 points (95% CI +3.23 to +6.10, Holm p = 0.00024, better)")
  assert ("at the memorizing rate 0.01 (every net fits >= 99% of the noisy training labels) "
          "cross-entropy reaches 71.00% and label smoothing: 1 better, best alpha=0.2 +5.00 "
          "points") in report.verdict
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", report.verdict)) == 2
  assert report.headline == (
      "Label smoothing vs cross-entropy, clean labels: best alpha=0.2 +4.67 points (better), "
      "scaled NLL at alpha=0.2 -0.227 (better); 20% noisy labels: best alpha=0.2 +0.00 points "
      "(equivalent), scaled NLL at alpha=0.2 +0.000 (equivalent); memorizing nets: best "
      "alpha=0.2 +5.00 points (better).")
  assert len(report.headline.split()) <= 40
  md = report.markdown
  assert "| 0 | 0 | 0.001 | 91.00 ± 1.00 | baseline | 100.0 |" in md
  assert "the control rate is the smallest at which every net reaches 99%: 0.01):" in md
  assert "| 0 | 80.0* | 100.0 |" in md and "| 0.2 | 100.0 | " in md
  assert set(report.figures) == {"alpha.png", "reliability.png", "curves.png"}


def test_report_without_memorization_or_pairs():
  s = ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0, 0.2), seeds=(0, 1, 2))
  report = ls.report(s, _outcomes(memorize=0.985))  # one alpha short of 99% at every rate
  assert report.summary["control"]["0.2"] == []
  assert "no rate of the grid had every net fit 99% of the noisy training labels" in \
      report.verdict
  assert "every net reaches 99%: none of them" in report.markdown

  one = ls.report(ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0,), seeds=(0,)),
                  _outcomes(seeds=(0,)))
  assert one.verdict == ("Clean labels (nets at the selected rates fit 100.0% of their "
                         "training labels): cross-entropy 90.00% test accuracy, alpha=0.2 "
                         "95.00% (no paired comparison).")
  assert one.headline == "" and "| n/a |" in one.markdown and "curves.png" not in one.figures


def test_memorizing_rate_is_the_smallest_where_every_net_fits():
  fit = lambda *accs: runs.RunResult("r", "done", [], {}, 0, 0, [], {
      "train/test_accuracy": np.array(accs)})
  points = {(1e-3, 0.0): fit(0.9, 1.0), (1e-3, 0.1): fit(1.0, 1.0),
            (3e-3, 0.0): fit(0.995, 1.0), (3e-3, 0.1): fit(1.0, 0.99),
            (1e-2, 0.0): fit(1.0, np.nan), (1e-2, 0.1): fit(1.0, 1.0)}
  assert ls.memorizing_rate(points, (0.0, 0.1), 0.99) == 3e-3
  assert ls.memorizing_rate(points, (0.0, 0.1), 0.999) is None  # NaN (diverged) never fits


def test_curves_figure_is_a_png(tmp_path):  # the end-to-end test draws all three
  s = ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.2,), seeds=(0, 1, 2))
  outcomes = {k: v for k, v in _outcomes().items() if k.startswith("noise0.2")}
  ls.plot_curves(s, outcomes, ls.summarize(s, outcomes), str(tmp_path / "curves.png"))
  assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, start", [
    (["--alphas", "0.1,0.2"], "error: --alphas: must include 0"),
    (["--alphas", "0,1.5"], "error: --alphas: must be distinct"),
    (["--alphas", "0,0"], "error: --alphas: must be distinct"),
    (["--noise-rates", "1"], "error: --noise-rates: must be distinct"),
    (["--noise-rates", "0,nan"], "error: --noise-rates: must be distinct"),
    (["--noise-seed=-1"], "error: --noise-seed: must be an integer >= 0"),
    (["--hidden", "a"], "error: --hidden: must be comma-separated integers"),
    (["--epochs", "0"], "error: --epochs: must be"),
    (["--val-size", "0", "--lrs", "0.001"], "error: --val-size: must be above 0"),
    (["--schedule", "step"], "error: --schedule: must be one of constant, cosine"),
    (["--memorized", "0"], "error: --memorized: must be a finite number in (0, 1]"),
    (["--nll-margin", "0"], "error: --nll-margin: must be a finite number > 0"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert refusal(ls.main, argv, tmp_path, capsys, monkeypatch).startswith(start)


def test_refusal_imports_no_jax(tmp_path):
  code = ("import sys\n"
          "from experiments import label_smoothing\n"
          "try:\n"
          "  label_smoothing.main(['--alphas', '0.1', '--out', sys.argv[1]])\n"
          "except SystemExit:\n"
          "  assert 'jax' not in sys.modules, 'jax was imported before the flags were checked'\n"
          "  raise\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=root,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2, done.stderr
  assert done.stderr.startswith("error: --alphas: must include 0") and done.stdout == ""


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_resume(tmp_path, capsys, monkeypatch):
  out = tmp_path / "run"
  # One noise rate (the noisy one, a superset of the clean path) keeps the test short; the
  # clean-label branches are checked on synthetic outcomes above.
  argv = ["--quick", "--noise-rates", "0.2", "--out", str(out), "--no-progress"]
  summary = ls.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json",
                                            "summary.csv", "summary.md", "alpha.png",
                                            "reliability.png", "curves.png"}
  for figure in ("alpha.png", "reliability.png", "curves.png"):
    assert f"]({figure})" in (out / "summary.md").read_text()
    assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((out / "summary.json").read_text())
  names = ["noise0.2-alpha=0", "noise0.2-alpha=0.2"]
  assert list(saved["variants"]) == names and [r["outcome"] for r in saved["rows"]] == names
  assert saved["settings"]["alphas"] == [0.0, 0.2] and saved["settings"]["hidden"] == [32]
  for name, row in zip(names, saved["rows"]):
    v = saved["variants"][name]
    assert v["selected"]["alpha"] == float(name.split("=")[1])
    assert len(v["test"]["test_accuracy"]) == 2 and min(v["test"]["test_accuracy"]) > 0.3
    assert 0 < min(v["test"]["test_confidence"]) <= max(v["test"]["test_confidence"]) <= 1
    # The NumPy float64 ECE and NLL of the stored logits are the jaxloss float32 ones (up to
    # an example whose confidence rounds across a bin edge: 1/512 of a gap).
    assert row["ece_before"] == pytest.approx(np.mean(v["test"]["test_ece"]), abs=5e-3)
    assert row["nll_before"] == pytest.approx(np.mean(v["test"]["test_nll"]), rel=1e-3)
    assert row["acc_mean"] == pytest.approx(100 * np.mean(v["test"]["test_accuracy"]))
    assert 0.01 <= row["temperature"] <= 100 and row["nll_after"] <= row["nll_before"] + 0.05
    assert 30 < row["train_acc"] <= 100 and 30 < row["heldout_acc"] <= 100
  for row in saved["rows"][1:]:
    for key in ("acc", "nll_after", "ece_after", "adaptive_ece_after"):
      assert row[f"{key}_verdict"] in ("better", "worse", "equivalent", "inconclusive")
    assert row["conf_low"] <= row["conf_diff"] <= row["conf_high"]
    assert row["conf_diff"] < 0  # smoothing lowers the mean confidence
  assert all(0.01 <= r["given_temperature"] <= 100 for r in saved["rows"])
  assert list(saved["train_by_rate"]) == ["0.2"] and list(saved["control"]) == ["0.2"]
  assert saved["headline"] and len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", saved["verdict"])) == 1
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert {r["variant"] for r in rows} == {"noise0.2"}
  assert {r["split"] for r in rows} == {"validation"} and {r["alpha"] for r in rows} == {0, 0.2}
  assert all(0 <= r["clean_accuracy"] <= 1 and 0 <= r["train_accuracy"] <= 1 for r in rows)

  for plot in ("plot_alpha", "plot_reliability", "plot_curves"):  # drawn above already
    monkeypatch.setattr(ls, plot, lambda *args: None)
  again = ls.main(argv)  # finished runs are read back, not retrained
  assert again["variants"] == summary["variants"] and again["rows"] == summary["rows"]
