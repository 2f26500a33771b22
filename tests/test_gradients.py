"""experiments.gradients on the harness: analytic curves, eval/test fns, splits, report, CLI."""

from __future__ import annotations

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import gradients, harness, protocol, runs, stats
from jaxloss.train.data import Mnist
from _experiments import refusal  # noqa: E402

K = 10
TRAINED = gradients.LOSSES


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
  return np.logaddexp(0.0, x)


def test_analytic_curves_match_closed_forms():
  """CE, sigmoid-difference and BCE against their formulas, both conventions, float64."""
  m = np.array([-7.0, -5.0, -2.0, 0.5, 2.0, 5.0])
  b = -4.0
  curves = gradients.analytic_curves(TRAINED, tuple(m.tolist()), b)
  for i, base in enumerate((0.0, b)):
    ce = {k: v[i] for k, v in curves["softmax_cross_entropy"].items()}
    # softmax CE depends only on logit differences: the same in both conventions.
    np.testing.assert_allclose(ce["loss"], -m + np.log(np.exp(m) + K - 1), rtol=1e-12)
    np.testing.assert_allclose(ce["grad"], np.exp(m) / (np.exp(m) + K - 1) - 1, rtol=1e-10)
    zy = base + m
    sd = {k: v[i] for k, v in curves["sigmoid_difference"].items()}
    np.testing.assert_allclose(sd["loss"], (1 - _sigmoid(zy) + (K - 1) * _sigmoid(base)) / K,
                               rtol=1e-12)
    np.testing.assert_allclose(sd["grad"], -_sigmoid(zy) * (1 - _sigmoid(zy)) / K, rtol=1e-9)
    bce = {k: v[i] for k, v in curves["sigmoid_binary_cross_entropy"].items()}
    np.testing.assert_allclose(bce["loss"], (_softplus(-zy) + (K - 1) * _softplus(base)) / K,
                               rtol=1e-12)
    np.testing.assert_allclose(bce["grad"], (_sigmoid(zy) - 1) / K, rtol=1e-9)
  assert curves["softmax_cross_entropy"]["loss"].dtype == np.float64
  # The mechanism in one line: at margin -5 with the others at b, the true class gets
  # ~1e-5 from sigmoid-difference and ~1 from cross-entropy.
  assert abs(curves["sigmoid_difference"]["grad"][1, 1]) < 1e-4
  assert abs(curves["softmax_cross_entropy"]["grad"][1, 1]) > 0.99


def _reference(name, logits, labels, tiny):
  """Float64 NumPy reference of make_eval_fn's metrics (closed-form logit gradients)."""
  heldout = labels >= K
  y = np.where(heldout, labels - K, labels)
  onehot = np.eye(K)[y]
  if name == "softmax_cross_entropy":
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad, loss = p - onehot, -np.log(p[np.arange(len(y)), y])
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
  return {"test_accuracy": correct[heldout].mean(), "probe_accuracy": correct[probe].mean(),
          "probe_loss": loss[probe].mean(), "probe_grad_norm_mean": norm[probe].mean(),
          "probe_wrong_grad_norm_mean": norm[wrong].mean(), "probe_wrong_count": wrong.sum(),
          "probe_wrong_tiny_share": (norm[wrong] < tiny).mean()}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", TRAINED)
def test_eval_fn_matches_numpy_reference(name, rng):
  n = 200
  logits = rng.normal(0.0, 3.0, (n, K))
  labels = rng.integers(0, 2 * K, n)
  # Confidently wrong rows (sigmoid-difference's gradient vanishes there), confidently right ones.
  logits[:20] = -30.0
  logits[:20, (labels[:20] % K + 1) % K] = -10.0
  logits[20:30] = -5.0
  logits[20:30, labels[20:30] % K] = 8.0
  eval_fn = jax.jit(gradients.make_eval_fn(jaxloss.get(name), tiny=1e-3))
  got = {k: float(v) for k, v in eval_fn(jnp.asarray(logits), jnp.asarray(labels)).items()}
  want = _reference(name, logits, labels, 1e-3)
  assert set(got) == set(want)
  for key, value in want.items():
    rtol = 1e-6 if ("accuracy" in key or "share" in key) else 1e-9  # float32 means
    np.testing.assert_allclose(got[key], value, rtol=rtol, atol=1e-12, err_msg=key)
  assert (got["probe_wrong_tiny_share"] > 0) == (name == "sigmoid_difference")


def test_eval_fn_without_mistakes_gives_nan_and_test_fn_scores_heldout_only():
  logits = 5.0 * jnp.eye(K)[jnp.array([1, 2, 3, 4])]
  labels = jnp.array([1, 2, 13, 15])  # two probe images (right), two held-out (right, wrong)
  out = jax.jit(gradients.make_eval_fn(jaxloss.get("ce")))(logits, labels)
  assert float(out["probe_wrong_count"]) == 0 and float(out["probe_accuracy"]) == 1.0
  assert math.isnan(float(out["probe_wrong_grad_norm_mean"]))
  assert math.isnan(float(out["probe_wrong_tiny_share"]))
  assert float(out["test_accuracy"]) == 0.5
  variants = gradients.variants(gradients.Settings(probe_size=2))
  assert [v.name for v in variants] == [*TRAINED, "sd-from-ce", "ce-from-sd"]
  correct = jax.jit(variants[0].test_fn)(logits, labels)["correct"]
  assert correct.tolist() == [True, False]  # shape [N_heldout]: what harness.compare pairs


def test_interventions_are_variants_that_continue_from_b(tmp_path):
  ce, sd, bce, sd_from_ce, ce_from_sd = gradients.variants(gradients.Settings())
  assert (ce.keep_final, sd.keep_final, bce.keep_final) == (True, True, False)
  assert (sd_from_ce.start_from, sd_from_ce.rate_from) == (ce.name, sd.name)
  assert (ce_from_sd.start_from, ce_from_sd.rate_from) == (sd.name, ce.name)
  assert sd_from_ce.loss_fn is sd.loss_fn and ce_from_sd.eval_fn is ce.eval_fn
  assert not sd_from_ce.keep_final and sd_from_ce.train == ce.train
  assert harness._dependency_problems([ce, sd, bce, sd_from_ce, ce_from_sd],
                                      gradients.Settings()) == []
  plain = gradients.variants(gradients.Settings(no_interventions=True))
  assert [(v.name, v.keep_final) for v in plain] == [(n, False) for n in TRAINED]
  # The report takes (b)'s selected models as the sources, the variants (c) as the rest.
  outcomes = {**_outcomes(), **{n: o for n, o in _arms().items() if "from" in n}}
  got = gradients.report(gradients.Settings(out=str(tmp_path)), outcomes)
  arms = {r["arm"]: r for r in got.summary["interventions"]["arms"]}
  assert list(arms) == list(gradients.ARMS) and [r["loss"] for r in got.summary["rows"]] == \
      list(TRAINED)
  assert arms["ce-source"]["test_acc_mean"] == got.summary["rows"][0]["test_acc_mean"]


@pytest.mark.parametrize("val_size", [0, 4])
def test_splits_put_a_training_probe_before_each_heldout_split(val_size):
  images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2)
  labels = (np.arange(20) % K).astype(np.int32)
  mnist = Mnist(images, labels, images[:6] + 100, labels[:6])
  s = gradients.Settings(val_size=val_size, probe_size=5, probe_seed=3)
  got = gradients.splits(s, mnist)["mnist"]
  base = harness.default_splits(s, mnist)["mnist"]
  np.testing.assert_array_equal(got.train[0], base.train[0])
  train_keys = {bytes(x) for x in np.asarray(base.train[0])}
  for split, held in ((got.test, base.test), (got.val, base.val)):
    if held is None:
      assert split is None
      continue
    assert {bytes(x) for x in split[0][:5]} <= train_keys  # the probe: training images
    np.testing.assert_array_equal(split[0][5:], held[0])
    np.testing.assert_array_equal(split[1][5:], np.asarray(held[1]) + K)
    assert split[1].dtype == np.int32 and np.all(split[1][:5] < K)
  if val_size:
    np.testing.assert_array_equal(got.val[0][:5], got.test[0][:5])  # the same probe


def _outcome(name, acc_S, norm_ExS, share_ExS, n=1000):
  """An Outcome with per-epoch probe curves and final test metrics for 3 seeds."""
  rows = [{"seed": s, "epoch": e + 1, "test_accuracy": acc_S[s], "train_loss": 0.1,
           "probe_wrong_grad_norm_mean": norm_ExS[e][s], "probe_wrong_tiny_share": share_ExS[e][s]}
          for e in range(len(norm_ExS)) for s in range(len(acc_S))]
  correct = np.array([np.arange(n) < round(a * n) for a in acc_S])
  test = {"test_accuracy": np.array(acc_S), "correct": correct,
          "probe_accuracy": np.array(acc_S), "probe_wrong_count": np.array([5.0, 0.0, 3.0]),
          "probe_wrong_grad_norm_mean": np.array(norm_ExS[-1], np.float64),
          "probe_wrong_tiny_share": np.array(share_ExS[-1], np.float64)}
  result = runs.RunResult(name, "done", rows, {}, 1.0, 0, [{"seed": s} for s in range(3)], test)
  return harness.Outcome(harness.Variant(name, loss_fn=None),
                         protocol.Selected({"lr": 1e-3}, [], [], result, [result]))


def _outcomes():
  nan = math.nan
  return {"softmax_cross_entropy": _outcome("softmax_cross_entropy", [0.98, 0.985, 0.982],
                                            [[1.0, 1.2, 1.1], [1.0, nan, 1.1]],
                                            [[0.0, 0.0, 0.0], [0.0, nan, 0.0]]),
          "sigmoid_difference": _outcome("sigmoid_difference", [0.2, 0.22, 0.21],
                                         [[1e-4, 2e-4, 1e-4], [1e-4, 2e-4, 3e-4]],
                                         [[0.9, 0.95, 0.99], [0.99, 1.0, 0.98]]),
          "sigmoid_binary_cross_entropy": _outcome(
              "sigmoid_binary_cross_entropy", [0.981, 0.984, 0.983],
              [[0.1, 0.1, 0.1], [0.1, 0.12, 0.11]], [[0.0] * 3, [0.0] * 3])}


def _arm(name, acc_ExS):
  """An intervention arm: per-epoch accuracy [epochs][3 seeds], final test = the last epoch."""
  acc_ExS = np.asarray(acc_ExS, np.float64)
  norm, share = [[0.5] * 3] * len(acc_ExS), [[0.0] * 3] * len(acc_ExS)
  o = _outcome(name, acc_ExS[-1].tolist(), norm, share)
  for r in o.selected.result.rows:
    r["test_accuracy"] = acc_ExS[r["epoch"] - 1, r["seed"]]
  return o


def _arms():
  return {"ce-source": _arm("ce-source", [[0.96, 0.965, 0.962], [0.98, 0.985, 0.982]]),
          "sd-source": _arm("sd-source", [[0.15, 0.2, 0.18], [0.2, 0.22, 0.21]]),
          "sd-from-ce": _arm("sd-from-ce", [[0.97, 0.975, 0.972], [0.95, 0.96, 0.955]]),
          "ce-from-sd": _arm("ce-from-sd", [[0.975, 0.981, 0.978], [0.981, 0.984, 0.982]])}


def test_report_verdicts_and_summary_fields(tmp_path):
  outcomes = _outcomes()
  report = gradients.build_report(gradients.Settings(out=str(tmp_path)), outcomes, _arms())
  rows = {r["loss"]: r for r in report.summary["rows"]}
  ce, sd = rows["softmax_cross_entropy"], rows["sigmoid_difference"]
  assert ce["test_acc_mean"] == pytest.approx(98.2333, abs=1e-3)
  assert ce["wrong_norm_per_seed"] == pytest.approx([1.0, 1.2, 1.1])  # NaN epochs left out
  assert sd["probe_wrong_tiny_share_peak"] == pytest.approx((0.99 + 1.0 + 0.99) / 3)
  assert ce["probe_wrong_count"] == pytest.approx(8 / 3)
  acc = {(c["a"], c["b"]): c for c in report.summary["comparisons"]}
  assert acc["softmax_cross_entropy", "sigmoid_difference"]["verdict"] == "better"
  norms = {c["b"]: c for c in report.summary["norm_contrasts"]}
  log_ratio = np.log10([1.0, 1.2, 1.1]) - np.log10([1e-4, 2e-4, 2e-4])
  assert norms["sigmoid_difference"]["interval"]["mean"] == pytest.approx(log_ratio.mean())
  assert norms["sigmoid_difference"]["verdict"] == "larger"
  assert norms["sigmoid_difference"]["test"] == "paired-t"
  # One Holm family: 2 accuracy + 2 norm + 4 intervention comparisons.
  inter = report.summary["interventions"]
  assert report.summary["holm_family"] == 8
  every = [*report.summary["comparisons"], *report.summary["norm_contrasts"],
           *inter["comparisons"]]
  np.testing.assert_allclose([c["p_holm"] for c in every],
                             stats.holm([c["p_value"] for c in every]))
  got = {(c["a"], c["b"]): c for c in inter["comparisons"]}
  assert list(got) == [("sd-from-ce", "ce-source"), ("sd-from-ce", "sd-source"),
                       ("ce-from-sd", "ce-source"),
                       ("ce-from-sd after epoch 1", "ce-source after epoch 1")]
  assert got["sd-from-ce", "ce-source"]["interval"]["mean"] == pytest.approx(-2.7333333)
  assert got["sd-from-ce", "ce-source"]["verdict"] == "worse"
  assert got["ce-from-sd after epoch 1", "ce-source after epoch 1"]["interval"]["mean"] == \
      pytest.approx(1.5666667)
  arms = {r["arm"]: r for r in inter["arms"]}
  assert arms["sd-from-ce"]["start_acc"] == pytest.approx(98.2333, abs=1e-3)  # ce-source's end
  assert arms["ce-source"]["start_acc"] is None and arms["ce-from-sd"]["starts_from"] == "sd-source"
  assert arms["ce-source"]["epochs_to_98"] == 2.0 and arms["ce-source"]["reached_98"] == 3
  assert arms["ce-from-sd"]["epochs_to_98"] == pytest.approx(5 / 3)  # epochs 2, 1, 2
  assert arms["sd-source"]["epochs_to_97"] is None and arms["sd-source"]["reached_97"] == 0
  assert "| 0 | — | — | 98.23 | 21.00 |" in report.markdown  # epoch 0: where each starts
  assert ("| ce-from-sd | softmax_cross_entropy | sd-source | 0.001 | 21.00 | 97.80 |"
          in report.markdown)
  assert "| never | 0 |" in report.markdown
  at = report.summary["analytic"]["at_margin"]
  assert set(at) == set(jaxloss.multiclass())
  assert at["softmax_cross_entropy"]["A"]["-5"]["grad"] == pytest.approx(
      math.exp(-5) / (math.exp(-5) + 9) - 1)
  assert at["softmax_cross_entropy"]["B"]["-5"] == at["softmax_cross_entropy"]["A"]["-5"]
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", report.verdict)) <= 3
  assert "x" + f"{10 ** log_ratio.mean():.3g}" in report.verdict
  assert "sd-from-ce vs ce-source: -2.73 accuracy points" in report.verdict
  assert len(report.headline.split()) <= 40, report.headline
  saved = json.loads((tmp_path / "analytic.json").read_text())
  assert len(saved["margins"]) == len(saved["curves"]["sigmoid_difference"]["grad"][1]) == 401
  assert list(report.figures) == ["analytic.png", "training.png"]
  for name, draw in report.figures.items():
    draw(str(tmp_path / name))
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Without interventions: the same (b) verdicts, Holm over 4.
  plain = gradients.build_report(gradients.Settings(out=str(tmp_path)), outcomes, {})
  assert plain.summary["holm_family"] == 4
  assert "interventions" not in plain.verdict and len(plain.headline.split()) <= 40


def test_epochs_to():
  acc = np.array([[96.0, 97.5, np.nan], [97.0, 96.0, 99.0]])
  assert gradients.epochs_to(acc, 97.0) == [2, 1, 2]
  assert gradients.epochs_to(acc, 99.5) == [None, None, None]


def test_norm_contrasts_need_finite_values():
  rows = [{"loss": "a", "wrong_norm_per_seed": [1.0, math.nan]},
          {"loss": "b", "wrong_norm_per_seed": [0.1, 0.1]}]
  assert gradients.norm_contrasts(rows) == []
  rows[0]["wrong_norm_per_seed"] = [1.0, 1.0]
  (c,) = gradients.norm_contrasts(rows)
  assert c.interval.mean == pytest.approx(1.0) and c.verdict == "larger"


@pytest.mark.parametrize("argv, start", [
    (["--quick", "--probe-size", "4000"], "error: --probe-size: must be at most the 2048"),
    (["--seeds", "1"], "error: --seeds: the verdicts pair seeds"),
    (["--tiny", "0"], "error: --tiny: must be"),
    (["--others-level", "nan"], "error: --others-level: must be"),
    (["--hidden", "a"], "error: --hidden: must be"),
    (["--val-size", "0"], "error: --val-size 0 trains without selection"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert refusal(gradients.main, argv, tmp_path, capsys, monkeypatch).startswith(start)


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_read_back(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["--quick", "--epochs", "1", "--out", str(out), "--no-progress"]  # 1: no checkpoints
  summary = gradients.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  assert {p.name for p in out.iterdir()} >= {
      "config.json", "metrics.jsonl", "summary.json", "summary.md", "summary.csv",
      "analytic.json", "analytic.png", "training.png"}
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 5 * 2 * 1  # (b)'s 3 losses and (c)'s 2 arms x seeds x epochs
  assert {r["variant"] for r in rows} == {*TRAINED, "sd-from-ce", "ce-from-sd"}
  assert {r["split"] for r in rows} == {"test"}
  for r in rows:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and r["probe_grad_norm_mean"] > 0

  saved = json.loads((out / "summary.json").read_text())
  assert saved["settings"]["probe_size"] == 512 and saved["settings"]["hidden"] == [32]
  assert [r["loss"] for r in saved["rows"]] == list(TRAINED)
  for name in TRAINED:
    assert len(saved["variants"][name]["test"]["test_accuracy"]) == 2
    assert saved["variants"][name]["probe_size"] == 512
  assert [(c["a"], c["b"]) for c in saved["comparisons"]] == [
      (TRAINED[0], TRAINED[1]), (TRAINED[0], TRAINED[2])]
  assert all(c["verdict"] in ("better", "worse", "equivalent", "inconclusive")
             for c in saved["comparisons"])
  assert saved["comparisons"][0]["interval"]["mean"] > 0  # CE beats sigmoid-difference
  ce, sd = saved["rows"][0], saved["rows"][1]
  assert np.mean(ce["wrong_norm_per_seed"]) > np.mean(sd["wrong_norm_per_seed"])
  assert saved["analytic"]["others_level"] == -6.0
  # (c): the sources keep their final parameters, each continued arm starts from its source's.
  arms = {r["arm"]: r for r in saved["interventions"]["arms"]}
  assert list(arms) == list(gradients.ARMS) and saved["holm_family"] == 8
  for name, (loss, source) in gradients.ARMS.items():
    (row,) = [r for r in saved["rows"] if r["loss"] == loss]
    assert arms[name]["lr"] == row["lr"]  # the rate the loss selected in (b)
    if source is None:  # (b)'s own models, kept
      assert (out / "runs" / f"{loss}-grid" / "final_params.npz").exists()
      assert arms[name]["test_acc_mean"] == row["test_acc_mean"]
      continue
    stored = json.loads((out / "runs" / f"{name}-grid" / "run.json").read_text())
    assert stored["describe"]["loss"] == loss and stored["init_params"] == "given"
    assert stored["describe"]["starts_from"] == gradients.ARMS[source][0]
    assert arms[name]["start_acc"] == pytest.approx(arms[source]["final_acc"])

  again = gradients.main(argv)  # finished runs are read back, not retrained
  assert again["variants"] == summary["variants"] and again["rows"] == summary["rows"]
  assert again["norm_contrasts"] == summary["norm_contrasts"]
  assert again["interventions"] == summary["interventions"]
  assert "training it again" not in capsys.readouterr().out
