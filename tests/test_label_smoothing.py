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
from experiments import datasets, harness, protocol, runs
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
    assert sp.train[1].shape == (800,) and sp.val[1].shape == (200,)
    np.testing.assert_array_equal(sp.test[1], mnist.test_labels)  # clean test labels
    for images, labels in (sp.train, sp.val):
      index = images[:, 0].astype(int) * 256 + images[:, 1]
      np.testing.assert_array_equal(labels, want_N[index])
  val_index = got["noise0.2"].val[0][:, 0].astype(int) * 256 + got["noise0.2"].val[0][:, 1]
  assert 0.1 < flipped_N[val_index].mean() < 0.3  # the validation labels are noisy too
  assert flipped_N.sum() == 200
  assert ls.splits(ls.Settings(noise_rates=(0.2,), val_size=0), mnist)["noise0.2"].val is None


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
  assert dict(got[1].train) == {"hidden": (32,), "num_classes": 10}
  assert got[1].describe == {"noise_rate": 0.4, "noise_seed": 0}


def _outcome(acc_S, conf_S, n=100):
  correct_SxN = np.arange(n)[None, :] < np.round(np.asarray(acc_S) * n)[:, None]
  test = {"test_accuracy": np.asarray(acc_S), "test_confidence": np.asarray(conf_S),
          "test_ece": np.full(len(acc_S), 0.02), "test_nll": np.full(len(acc_S), 0.3),
          "correct": correct_SxN}
  result = runs.RunResult("x", "done", [], {}, 1.0, 0, [], test)
  selected = protocol.Selected({"lr": 1e-3}, [], [], result, [result])
  return harness.Outcome(harness.Variant("x", loss_fn=None), selected)


def test_report_pairs_every_alpha_with_cross_entropy_holm_across_noise_rates():
  s = ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0, 0.2), seeds=(0, 1, 2))
  outcomes = {"noise0-alpha=0": _outcome([0.90, 0.91, 0.92], [0.99, 0.99, 0.99]),
              "noise0-alpha=0.2": _outcome([0.95, 0.95, 0.97], [0.80, 0.81, 0.79]),
              "noise0.2-alpha=0": _outcome([0.80, 0.81, 0.82], [0.70, 0.70, 0.70]),
              "noise0.2-alpha=0.2": _outcome([0.80, 0.81, 0.82], [0.60, 0.60, 0.60])}
  report = ls.report(s, outcomes)
  rows = report.summary["rows"]
  assert [(r["noise_rate"], r["alpha"]) for r in rows] == [(0, 0), (0, 0.2), (0.2, 0), (0.2, 0.2)]
  assert "acc_diff" not in rows[0] and rows[1]["acc_verdict"] == "better"
  assert rows[1]["acc_diff"] == pytest.approx(14 / 3)
  assert rows[1]["acc_p_holm"] == pytest.approx(2 * 2 * 0.5 ** 14)  # McNemar, Holm over 2
  assert rows[3]["acc_diff"] == 0 and rows[3]["acc_verdict"] == "equivalent"
  assert rows[1]["conf_diff"] == pytest.approx(-0.19)
  assert rows[3]["conf_diff"] == pytest.approx(-0.1)
  assert rows[1]["conf_low"] == pytest.approx(-0.19 - 4.302653 * 0.01 / np.sqrt(3), abs=1e-5)
  assert rows[3]["conf_p_holm"] == 0.0  # no spread: the t test is exact
  assert report.verdict.startswith(
      "Clean labels: plain cross-entropy 91.00% test accuracy, label smoothing alpha=0.2 +4.67 "
      "points (95% CI +3.23 to +6.10, better); mean confidence -0.190 at alpha=0.2 (95% CI "
      "-0.215 to -0.165). 20% noisy labels:")
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", report.verdict)) == 2
  assert report.headline.endswith("mean confidence falls by up to 0.190.")
  assert len(report.headline.split()) <= 40 and "(better)" in report.headline
  assert "| 0 | 0 | 0.001 | 91.00 ± 1.00 | baseline |" in report.markdown
  assert set(report.figures) == {"alpha.png"}

  one = ls.report(ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0,), seeds=(0,)), {
      "noise0-alpha=0": _outcome([0.9], [0.9]), "noise0-alpha=0.2": _outcome([0.92], [0.8])})
  assert one.verdict == ("Clean labels: plain cross-entropy 90.00% test accuracy, alpha=0.2 "
                         "92.00% (no paired comparison).")
  assert one.headline == "" and "| n/a |" in one.markdown


def test_alpha_figure_is_a_png(tmp_path):
  s = ls.Settings(alphas=(0.0, 0.2), noise_rates=(0.0,), seeds=(0, 1))
  outcomes = {"noise0-alpha=0": _outcome([0.9, 0.91], [0.95, 0.96]),
              "noise0-alpha=0.2": _outcome([0.92, 0.93], [0.8, 0.81])}
  ls.plot_alpha(s, outcomes, str(tmp_path / "alpha.png"))
  assert (tmp_path / "alpha.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, start", [
    (["--alphas", "0.1,0.2"], "error: --alphas: must include 0"),
    (["--alphas", "0,1.5"], "error: --alphas: must be distinct"),
    (["--alphas", "0,0"], "error: --alphas: must be distinct"),
    (["--noise-rates", "1"], "error: --noise-rates: must be distinct"),
    (["--noise-rates", "0,nan"], "error: --noise-rates: must be distinct"),
    (["--noise-seed=-1"], "error: --noise-seed: must be an integer >= 0"),
    (["--hidden", "a"], "error: --hidden: must be comma-separated integers"),
    (["--epochs", "0"], "error: --epochs: must be"),
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
def test_cli_end_to_end_quick_and_resume(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["--quick", "--out", str(out), "--no-progress"]
  summary = ls.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json",
                                            "summary.csv", "summary.md", "alpha.png"}
  saved = json.loads((out / "summary.json").read_text())
  names = ["noise0-alpha=0", "noise0-alpha=0.2", "noise0.2-alpha=0", "noise0.2-alpha=0.2"]
  assert list(saved["variants"]) == names and [r["outcome"] for r in saved["rows"]] == names
  assert saved["settings"]["alphas"] == [0.0, 0.2] and saved["settings"]["hidden"] == [32]
  for name in names:
    v = saved["variants"][name]
    assert v["selected"]["alpha"] == float(name.split("=")[1])
    assert len(v["test"]["test_accuracy"]) == 2 and min(v["test"]["test_accuracy"]) > 0.3
    assert 0 < min(v["test"]["test_confidence"]) <= max(v["test"]["test_confidence"]) <= 1
  for row in saved["rows"][1::2]:
    assert row["acc_verdict"] in ("better", "worse", "equivalent", "inconclusive")
    assert row["conf_low"] <= row["conf_diff"] <= row["conf_high"]
    assert row["conf_diff"] < 0  # smoothing lowers the mean confidence
  assert saved["headline"] and len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", saved["verdict"])) == 2
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert {r["variant"] for r in rows} == {"noise0", "noise0.2"}
  assert {r["split"] for r in rows} == {"validation"} and {r["alpha"] for r in rows} == {0, 0.2}

  again = ls.main(argv)  # finished runs are read back, not retrained
  assert again["variants"] == summary["variants"] and again["rows"] == summary["rows"]
