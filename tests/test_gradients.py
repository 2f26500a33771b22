"""experiments.gradients: analytic curves, the per-epoch eval_fn, data prep, wording, CLI."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import gradients

K = 10
TRAINED = ("softmax_cross_entropy", "sigmoid_difference", "sigmoid_binary_cross_entropy")


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
  return np.logaddexp(0.0, x)


# --------------------------------------------------------------------------- part (a)


def test_analytic_curves_match_closed_forms():
  """CE, sigmoid-difference and BCE against their formulas, both conventions, float64."""
  m = np.array([-7.0, -5.0, -2.0, 0.5, 2.0, 5.0])  # not 0: see test_bce_grad_at_exact_zero
  b = -4.0
  curves = gradients.analytic_curves(TRAINED, m, others_level=b)
  for conv, base in (("A", 0.0), ("B", b)):
    ce = curves["softmax_cross_entropy"][conv]
    # softmax CE depends only on differences: the same in both conventions.
    np.testing.assert_allclose(ce["loss"], -m + np.log(np.exp(m) + K - 1), rtol=1e-12)
    np.testing.assert_allclose(ce["grad"], np.exp(m) / (np.exp(m) + K - 1) - 1, rtol=1e-10)
    zy = base + m
    sd = curves["sigmoid_difference"][conv]
    np.testing.assert_allclose(sd["loss"], (1 - _sigmoid(zy) + (K - 1) * _sigmoid(base)) / K,
                               rtol=1e-12)
    np.testing.assert_allclose(sd["grad"], -_sigmoid(zy) * (1 - _sigmoid(zy)) / K, rtol=1e-9)
    bce = curves["sigmoid_binary_cross_entropy"][conv]
    np.testing.assert_allclose(bce["loss"], (_softplus(-zy) + (K - 1) * _softplus(base)) / K,
                               rtol=1e-12)
    np.testing.assert_allclose(bce["grad"], (_sigmoid(zy) - 1) / K, rtol=1e-9)
    for name in TRAINED:
      c = curves[name][conv]
      assert c["loss"].dtype == np.float64
      assert not gradients.grad_disagrees(c["grad"], c["fd"]).any(), name
  assert gradients.shift_invariant(curves["softmax_cross_entropy"])
  assert not gradients.shift_invariant(curves["sigmoid_difference"])
  # The mechanism in one line: at margin -5 with the others at b, the true class
  # gets ~1e-5 from sigmoid-difference and ~1 from cross-entropy.
  assert abs(curves["sigmoid_difference"]["B"]["grad"][1]) < 1e-4
  assert abs(curves["softmax_cross_entropy"]["B"]["grad"][1]) > 0.99


def test_grad_disagrees_flags_kinks_only():
  assert not gradients.grad_disagrees([1.0, -0.5, 0.0], [1.0 + 1e-9, -0.5, 1e-8]).any()
  np.testing.assert_array_equal(gradients.grad_disagrees([-1.0, 0.3], [-0.5, 0.3]),
                                [True, False])


def test_analytic_tables_mark_invariant_and_kinks():
  margins = (-1.0, 1.0)
  same = {"loss": np.array([2.0, 0.5]), "grad": np.array([-0.9, -0.1]),
          "fd": np.array([-0.9, -0.1])}
  kinked = {"loss": np.array([1.0, 0.0]), "grad": np.array([-1.0, -1.0]),
            "fd": np.array([-1.0, -0.5])}
  text = gradients.analytic_tables(
      {"inv": {"A": same, "B": same}, "kink": {"A": same, "B": kinked}}, margins, -6.0)
  inv_row = [line for line in text.splitlines() if line.startswith("| inv |")][-1]
  assert inv_row.count("= A") == 2
  kink_row = [line for line in text.splitlines() if line.startswith("| kink |")][-1]
  assert "-1 † (fd -0.5)" in kink_row and "†" in text.split("| kink |")[-1]
  assert "b = -6" in text


# --------------------------------------------------------------------------- part (b)


def _reference(name, logits, labels, tiny):
  """Float64 NumPy reference of make_eval_fn's metrics (closed-form logit gradients)."""
  heldout = labels >= K
  y = np.where(heldout, labels - K, labels)
  onehot = np.eye(K)[y]
  if name == "softmax_cross_entropy":
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad = p - onehot
    loss = -np.log(p[np.arange(len(y)), y])
  elif name == "sigmoid_difference":
    s = _sigmoid(logits)
    grad = np.where(onehot == 1, -1.0, 1.0) * s * (1 - s) / K
    loss = np.where(onehot == 1, 1 - s, s).mean(-1)
  else:
    s = _sigmoid(logits)
    grad = (s - onehot) / K
    loss = (onehot * _softplus(-logits) + (1 - onehot) * _softplus(logits)).mean(-1)
  norm = np.linalg.norm(grad, axis=-1)
  correct = logits.argmax(-1) == y
  probe = ~heldout
  wrong = probe & ~correct
  return {
      "test_accuracy": correct[heldout].mean(),
      "probe_accuracy": correct[probe].mean(),
      "probe_loss": loss[probe].mean(),
      "probe_grad_norm_mean": norm[probe].mean(),
      "probe_wrong_grad_norm_mean": norm[wrong].mean(),
      "probe_wrong_grad_norm_median": np.median(norm[wrong]),
      "probe_wrong_tiny_share": (norm[wrong] < tiny).mean(),
      "probe_tiny_share": (norm[probe] < tiny).mean(),
      "probe_wrong_count": wrong.sum(),
  }


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", TRAINED)
def test_eval_fn_matches_numpy_reference(name, rng):
  n = 200
  logits = rng.normal(0.0, 3.0, (n, K))
  labels = rng.integers(0, 2 * K, n)
  # Confidently wrong rows (sigmoid-difference's gradient vanishes there) and
  # confidently right ones.
  logits[:20] = -30.0
  logits[:20, (labels[:20] % K + 1) % K] = -10.0
  logits[20:30] = -5.0
  logits[20:30, labels[20:30] % K] = 8.0
  eval_fn = jax.jit(gradients.make_eval_fn(jaxloss.get(name), tiny=1e-3))
  got = {k: float(v) for k, v in eval_fn(jnp.asarray(logits), jnp.asarray(labels)).items()}
  want = _reference(name, logits, labels, 1e-3)
  assert set(got) == set(want)
  for key, value in want.items():
    # Accuracies and shares are float32 means; losses and norms stay float64.
    rtol = 1e-6 if ("accuracy" in key or "share" in key) else 1e-9
    np.testing.assert_allclose(got[key], value, rtol=rtol, atol=1e-12, err_msg=key)
  if name == "sigmoid_difference":
    assert got["probe_wrong_tiny_share"] > 0
  if name == "softmax_cross_entropy":
    assert got["probe_wrong_tiny_share"] == 0


def test_eval_fn_without_mistakes_gives_nan_not_zero():
  logits = 5.0 * jnp.eye(K)[jnp.array([1, 2, 3])]
  labels = jnp.array([1, 2, 13])  # two probe images, one held-out, all right
  out = gradients.make_eval_fn(jaxloss.get("ce"))(logits, labels)
  assert float(out["probe_wrong_count"]) == 0
  assert math.isnan(float(out["probe_wrong_grad_norm_mean"]))
  assert math.isnan(float(out["probe_wrong_tiny_share"]))
  assert float(out["probe_accuracy"]) == 1.0 and float(out["test_accuracy"]) == 1.0
  assert all(v.dtype == jnp.float32 or v.dtype == jnp.float64 for v in out.values())


def test_probe_indices_and_eval_split():
  idx = gradients.probe_indices(100, 30, seed=0)
  np.testing.assert_array_equal(idx, gradients.probe_indices(100, 30, seed=0))
  assert len(set(idx.tolist())) == 30 and np.all(np.diff(idx) > 0) and idx.max() < 100
  assert not np.array_equal(idx, gradients.probe_indices(100, 30, seed=1))
  assert len(gradients.probe_indices(10, 30, seed=0)) == 10

  from jaxloss.train.data import Mnist
  images = np.arange(100 * 4, dtype=np.uint8).reshape(100, 2, 2)
  labels = (np.arange(100) % K).astype(np.int32)
  data = Mnist(images, labels, images[:7] + 1, labels[:7])
  split = gradients.eval_split(data, data.test_images, data.test_labels, idx)
  np.testing.assert_array_equal(split.train_images, images)
  np.testing.assert_array_equal(split.test_images[:30], images[idx])
  np.testing.assert_array_equal(split.test_images[30:], data.test_images)
  np.testing.assert_array_equal(split.test_labels[:30], labels[idx])
  np.testing.assert_array_equal(split.test_labels[30:], data.test_labels + K)
  assert split.test_labels.dtype == np.int32


# --------------------------------------------------------------------------- wording, CLI


def test_gap_wording():
  assert gradients.gap_wording((98.5, 0.1), (11.35, 0.0), "CE", "SD") == \
      "CE beats SD by 87.15 ± 0.10 points"
  assert gradients.gap_wording((11.0, 0.1), (98.0, 0.2), "CE", "SD").startswith("SD beats CE")
  assert gradients.gap_wording((98.0, 0.3), (97.6, 0.3), "A", "B").startswith(
      "no clear difference")
  assert "not comparable" in gradients.gap_wording((math.nan, 0.0), (1.0, 0.0), "A", "B")


def _summary(acc, share, quick=False):
  analytic = {"others_level": -6.0, "at_margin": {
      name: {conv: {f"{m:g}": {"loss": 1.0, "grad": g} for m in gradients.ANALYTIC_MARGINS}
             for conv, g in (("A", ga), ("B", gb))}
      for name, ga, gb in (("softmax_cross_entropy", -0.999, -0.999),
                           ("sigmoid_difference", -6.6e-4, -1.7e-6),
                           ("sigmoid_binary_cross_entropy", -0.099, -0.1))}}

  def entry(a, s):
    ms = lambda mean, std=0.01: {"mean": mean, "std": std}  # noqa: E731
    return {"test_accuracy": ms(a, 0.001), "probe_wrong_tiny_share": ms(s),
            "probe_wrong_tiny_share_peak": ms(s),
            "probe_wrong_count": ms(50.0), "probe_wrong_grad_norm_mean": ms(0.5),
            "probe_wrong_grad_norm_median": ms(0.4),
            "diverged": {}}

  final = {n: entry(a, s) for n, a, s in zip(TRAINED, acc, share)}
  return {"tiny": 1e-3, "analytic": analytic, "final": final, "epochs": 10,
          "seeds": [0, 1, 2], "quick": quick}


def test_verdict_is_generated_from_the_numbers():
  text = gradients.verdict(_summary((0.985, 0.1135, 0.98), (0.0, 1.0, 0.0)))
  assert "0.999 for cross-entropy, 1514 times larger than sigmoid-difference's 0.00066" in text
  assert "drops to 1.7e-06" in text
  assert "Cross-entropy beats sigmoid-difference by 87.15" in text
  assert "agree with the vanishing-gradient explanation" in text
  assert "quick" not in text.lower()

  same = gradients.verdict(_summary((0.98, 0.98, 0.98), (0.01, 0.01, 0.01), quick=True))
  assert "No clear difference between cross-entropy and sigmoid-difference" in same
  assert "Neither accuracy nor the share" in same and "Quick mode" in same

  acc_only = gradients.verdict(_summary((0.98, 0.5, 0.97), (0.0, 0.0, 0.0)))
  assert "does not explain the gap" in acc_only

  # Cross-entropy fits the probe: no misclassified image left at the last epoch.
  fitted = _summary((0.985, 0.1135, 0.98), (math.nan, 1.0, 0.0))
  fitted["final"]["softmax_cross_entropy"]["probe_wrong_count"]["mean"] = 0.0
  fitted["final"]["softmax_cross_entropy"]["probe_wrong_tiny_share_peak"]["mean"] = 0.0
  text = gradients.verdict(fitted)
  assert "cross-entropy has none left" in text and "sigmoid-difference 100.0 ± 1.0% of 50" in text
  assert f"median 0.4, {0.4 / (0.25 / math.sqrt(10)):.3g} of the largest norm" in text
  assert "agree with the vanishing-gradient explanation" in text


def test_resolve_quick_and_explicit_flags():
  parser = gradients.build_parser()
  args = parser.parse_args(["--quick"])
  s = gradients.resolve(args, parser)
  assert s["epochs"] == 2 and s["hidden"] == (32,) and s["seeds"] == (0, 1)
  assert s["lrs"] == gradients.QUICK["lrs"] and args.train_subset == 2048
  args = parser.parse_args(["--quick", "--epochs", "3", "--seeds", "5", "--lrs", "0.01"])
  s = gradients.resolve(args, parser)
  assert s["epochs"] == 3 and s["seeds"] == (0, 1, 2, 3, 4) and s["lrs"] == (0.01,)
  s = gradients.resolve(parser.parse_args([]), parser)
  assert s["epochs"] == 10 and s["hidden"] == (512, 512) and s["probe_size"] == 10000
  assert s["seeds"] == (0, 1, 2) and len(s["lrs"]) == 3
  with pytest.raises(SystemExit, match="--epochs must be >= 1"):
    gradients.resolve(parser.parse_args(["--epochs", "0"]), parser)


def test_bad_loss_names(tmp_path):
  with pytest.raises(SystemExit, match="Valid names"):
    gradients.main(["--losses", "nope", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="not a single-label multi-class"):
    gradients.main(["--losses", "multilabel_bce", "--out", str(tmp_path)])


def _strict_json(text):
  def no_nan(token):
    raise ValueError(f"non-standard JSON constant {token}")
  return json.loads(text, parse_constant=no_nan)


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_resume(tmp_path, mnist_dir, capsys):
  argv = ["--quick", "--mnist-dir", mnist_dir, "--out", str(tmp_path), "--no-progress"]
  result = gradients.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  names = {p.name for p in tmp_path.iterdir()}
  assert names >= {"config.json", "metrics.jsonl", "summary.md", "summary.json",
                   "analytic.json", "analytic.png", "training.png", "runs"}
  for path in result["figures"]:
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  rows = [_strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  select = [r for r in rows if r["stage"] == "select"]
  final = [r for r in rows if r["stage"] == "final"]
  assert len(select) == 3 * 2 * 1 * 1  # losses x lrs x 1 seed x 1 epoch
  assert len(final) == 3 * 2 * 2  # losses x seeds x epochs
  assert {r["loss"] for r in rows} == set(TRAINED)
  for r in rows:
    assert {"run", "seed", "epoch", "lr", "train_loss", "probe_grad_norm_mean",
            "probe_wrong_tiny_share"} <= set(r)
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
    assert r["probe_grad_norm_mean"] > 0

  summary = _strict_json((tmp_path / "summary.json").read_text())
  assert summary["quick"] and summary["epochs_trained_now"] == 3 * (2 * 1 + 2)
  assert set(summary["chosen_lr"]) == set(TRAINED)
  assert all(lr in gradients.QUICK["lrs"] for lr in summary["chosen_lr"].values())
  for name in TRAINED:
    assert len(summary["curves"][name]["probe_wrong_tiny_share"]) == 2
    assert 0.0 <= summary["final"][name]["test_accuracy"]["mean"] <= 1.0
  config = _strict_json((tmp_path / "config.json").read_text())
  assert config["resolved"]["chosen_lr"] == summary["chosen_lr"]
  md = (tmp_path / "summary.md").read_text()
  assert md.startswith("## ") and "**Verdict.**" in md and "(quick mode" in md
  assert "](analytic.png)" in md and "](training.png)" in md
  assert result["summary_md"] == md and result["wall_seconds"] > 0

  # A second call with the same --out retrains nothing and gives the same numbers.
  again = gradients.main(argv)
  assert again["summary"]["epochs_trained_now"] == 0
  assert json.dumps(gradients._clean(again["summary"]["final"])) == \
      json.dumps(gradients._clean(result["summary"]["final"]))
  assert again["summary"]["chosen_lr"] == result["summary"]["chosen_lr"]
  rows_again = [_strict_json(line)
                for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows_again == rows
