"""experiments.label_smoothing: metrics, data prep, verdict wording, and the CLI end to end."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import label_smoothing as ls
from jaxloss.train import Mnist

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- eval_fn


def _reference_metrics(logits, labels, num_bins):
  """float64 NumPy reference, written from the definitions."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  p = np.exp(logp)
  conf = p.max(axis=-1)
  pred = p.argmax(axis=-1)
  correct = (pred == labels).astype(np.float64)
  # Bin b holds confidences in (b/n, (b+1)/n].
  bins = np.clip(np.ceil(conf * num_bins).astype(int) - 1, 0, num_bins - 1)
  counts = np.bincount(bins, minlength=num_bins)
  sum_conf = np.bincount(bins, weights=conf, minlength=num_bins)
  sum_acc = np.bincount(bins, weights=correct, minlength=num_bins)
  mean_conf = np.where(counts > 0, sum_conf / np.maximum(counts, 1), 0.0)
  mean_acc = np.where(counts > 0, sum_acc / np.maximum(counts, 1), 0.0)
  ece = np.sum(counts * np.abs(mean_acc - mean_conf)) / counts.sum()
  return {"test_accuracy": correct.mean(), "test_nll": -logp[np.arange(len(labels)), labels].mean(),
          "test_confidence": conf.mean(), "test_ece": ece, "test_bin_count": counts,
          "test_bin_confidence": mean_conf, "test_bin_accuracy": mean_acc}


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_eval_metrics_match_numpy_reference(scale):
  rng = np.random.default_rng(1)
  logits = (scale * rng.normal(size=(300, 10))).astype(np.float32)
  labels = rng.integers(0, 10, 300).astype(np.int32)
  labels[:150] = logits[:150].argmax(axis=-1)  # Some right, some wrong.
  got = jax.jit(ls.eval_metrics)(jnp.asarray(logits), jnp.asarray(labels))
  want = _reference_metrics(logits, labels, ls.ECE_BINS)
  assert set(got) == set(ls.SCALAR_METRICS) | set(ls.BIN_METRICS)
  for key in ls.SCALAR_METRICS:
    assert np.shape(got[key]) == ()
    np.testing.assert_allclose(float(got[key]), want[key], rtol=1e-5, atol=1e-6, err_msg=key)
  np.testing.assert_array_equal(np.asarray(got["test_bin_count"]), want["test_bin_count"])
  for key in ("test_bin_confidence", "test_bin_accuracy"):
    assert np.shape(got[key]) == (ls.ECE_BINS,)
    np.testing.assert_allclose(np.asarray(got[key]), want[key], rtol=1e-5, atol=1e-6)
  # ECE is the count-weighted gap of the bins themselves.
  counts = np.asarray(got["test_bin_count"], np.float64)
  gap = np.abs(np.asarray(got["test_bin_accuracy"]) - np.asarray(got["test_bin_confidence"]))
  np.testing.assert_allclose(float(got["test_ece"]), (counts * gap).sum() / counts.sum(),
                             rtol=1e-5)


def test_eval_metrics_confident_logits_are_finite():
  logits = jnp.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]])
  got = ls.eval_metrics(logits, jnp.array([0, 0]), num_bins=4)
  assert float(got["test_accuracy"]) == 0.5 and float(got["test_confidence"]) == 1.0
  assert all(np.all(np.isfinite(np.asarray(v))) for v in got.values())
  np.testing.assert_array_equal(np.asarray(got["test_bin_count"]), [0, 0, 0, 2])


# --------------------------------------------------------------------------- pooling, data


def test_pool_bins_weights_by_count_and_drops_diverged_seeds():
  counts = [[2, 0, 1], [2, 0, 3], [np.nan, np.nan, np.nan]]
  conf = [[0.1, 0.0, 0.9], [0.3, 0.0, 0.7], [np.nan] * 3]
  acc = [[0.5, 0.0, 1.0], [1.0, 0.0, 0.0], [np.nan] * 3]
  pooled = ls.pool_bins(counts, conf, acc)
  assert pooled["seeds_pooled"] == 2
  np.testing.assert_allclose(pooled["count"], [4, 0, 4])
  np.testing.assert_allclose(pooled["confidence"], [0.2, 0.0, (0.9 + 3 * 0.7) / 4])
  np.testing.assert_allclose(pooled["accuracy"], [0.75, 0.0, 0.25])
  empty = ls.pool_bins(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
  assert empty["count"] == [0.0, 0.0, 0.0] and empty["seeds_pooled"] == 0


def _tiny_mnist(n=1000, n_test=50):
  rng = np.random.default_rng(3)
  return Mnist(rng.integers(0, 256, (n, 4, 4)).astype(np.uint8),
               rng.integers(0, 10, n).astype(np.int32),
               rng.integers(0, 256, (n_test, 4, 4)).astype(np.uint8),
               rng.integers(0, 10, n_test).astype(np.int32))


def test_prepare_data_noise_before_split_and_clean_test():
  data = _tiny_mnist()
  train_test, train_val, info = ls.prepare_data(data, 0.2, noise_seed=0, val_size=200)
  noisy = train_test.train_labels
  assert info["flipped"] == 200 == int(np.sum(noisy != data.train_labels))
  assert info["flipped_fraction"] == pytest.approx(0.2)
  # Test labels and images untouched; the validation split comes from the noisy labels.
  np.testing.assert_array_equal(train_test.test_labels, data.test_labels)
  assert train_val.test_labels.shape == (200,) and train_val.train_labels.shape == (800,)
  assert sorted(np.concatenate([train_val.train_labels, train_val.test_labels])) == sorted(noisy)
  # Where the flips landed: the two parts add up to the total.
  assert (info["flipped_fraction_train_part"] * 800 + info["flipped_fraction_validation"] * 200
          == pytest.approx(200))
  perm = np.random.default_rng(0).permutation(1000)  # validation_split(seed=0)'s permutation
  held = perm[:200]
  assert info["flipped_fraction_validation"] == pytest.approx(
      np.mean(noisy[held] != data.train_labels[held]))
  np.testing.assert_array_equal(train_val.test_labels, noisy[held])
  # Deterministic; no noise leaves the labels alone.
  again = ls.prepare_data(data, 0.2, noise_seed=0, val_size=200)
  np.testing.assert_array_equal(again[0].train_labels, noisy)
  clean, _, info0 = ls.prepare_data(data, 0.0, noise_seed=0, val_size=200)
  np.testing.assert_array_equal(clean.train_labels, data.train_labels)
  assert info0["flipped"] == 0 and info0["flipped_fraction_validation"] == 0.0


# --------------------------------------------------------------------------- statistics, verdict


def test_compare_rule():
  c = ls.compare([0.97, 0.971, 0.969], [0.980, 0.981, 0.979])
  assert c["delta"] == pytest.approx(0.01) and c["clear"]
  assert c["se"] == pytest.approx(math.sqrt(2 * 0.001 ** 2 / 3))
  assert not ls.compare([0.97, 0.98, 0.96], [0.975, 0.985, 0.965])["clear"]
  assert not ls.compare([0.97], [0.99])["clear"]  # one seed: no uncertainty, never clear
  nan = ls.compare([np.nan], [0.9])
  assert math.isnan(nan["delta"]) and not nan["clear"]
  assert ls.compare([0.97, np.nan, 0.97], [0.98, 0.98, 0.98])["clear"]  # diverged seed dropped


def _variant(alpha, acc, conf, ece, nll):
  return {"alpha": alpha, "finals": {"test_accuracy": acc, "test_confidence": conf,
                                     "test_ece": ece, "test_nll": nll}}


def test_verdict_clear_gain_and_underconfidence():
  vs = [_variant(0.0, [0.980, 0.981, 0.979], [0.99, 0.99, 0.99], [0.010, 0.011, 0.009],
                 [0.07, 0.07, 0.07]),
        _variant(0.1, [0.985, 0.986, 0.984], [0.95, 0.95, 0.95], [0.004, 0.004, 0.004],
                 [0.06, 0.06, 0.06]),
        _variant(0.2, [0.9805, 0.9815, 0.9795], [0.88, 0.88, 0.88], [0.09, 0.09, 0.09],
                 [0.12, 0.12, 0.12])]
  text = ls.noise_verdict(0.0, vs)
  assert text.startswith("Clean labels: label smoothing improves test accuracy")
  assert "alpha=0.1 beats plain cross-entropy (98.00 ± 0.10%) by 0.50 ± 0.08 points" in text
  assert "alpha=0.1 +0.50 ± 0.08 (clear gain)" in text and "alpha=0.2 +0.05 ± 0.08;" not in text
  assert "alpha=0.2 +0.05 ± 0.08." in text
  assert ("falls from 0.990 (plain cross-entropy) to 0.880 at alpha=0.2 (-0.110 ± 0.000, clear), "
          "monotonically in alpha;") in text
  assert "to under-confident (0.880 vs 0.980)" in text and "over-confident (0.990 vs 0.980)" in text
  assert "ECE improves from 1.00 ± 0.10% to 0.40 ± 0.00% at alpha=0.1" in text
  assert "while alpha=0.2 clearly worsens it (to 9.00 ± 0.00% at alpha=0.2)" in text
  assert "test NLL is lowest at alpha=0.1 (0.060 vs 0.070)" in text
  assert "\n" not in text


def test_verdict_no_clear_difference_with_noise():
  vs = [_variant(0.0, [0.95, 0.97, 0.96], [0.9, 0.9, 0.9], [0.02, 0.03, 0.04], [0.2, 0.3, 0.4]),
        _variant(0.2, [0.955, 0.965, 0.975], [0.92, 0.92, 0.92], [0.03, 0.02, 0.05],
                 [0.25, 0.3, 0.35])]
  text = ls.noise_verdict(0.2, vs)
  assert text.startswith("20% noisy training labels: no clear difference in test accuracy")
  assert "clear gain" not in text and "clear loss" not in text
  assert ("rises from 0.900 (plain cross-entropy) to 0.920 at alpha=0.2 (+0.020 ± 0.000, "
          "clear)") in text
  assert "monotonically" not in text
  assert "no alpha clearly lowers ECE" in text and "no alpha clearly lowers test NLL" in text
  assert ("the model is under-confident with either (confidence vs accuracy 0.900 vs 0.960, "
          "then 0.920 vs 0.965)") in text
  assert ls.noise_verdict(0.2, vs[:1]).endswith("nothing to compare.")


def test_verdict_clear_loss():
  vs = [_variant(0.0, [0.98, 0.98, 0.98], [0.99] * 3, [0.01] * 3, [0.07] * 3),
        _variant(0.2, [0.95, 0.95, 0.951], [0.85] * 3, [0.1] * 3, [0.2] * 3)]
  text = ls.noise_verdict(0.0, vs)
  assert "label smoothing lowers test accuracy (clearly for alpha=0.2)" in text
  assert "(clear loss)" in text
  assert "no alpha clearly lowers ECE below plain cross-entropy's 1.00 ± 0.00%" in text
  assert "while alpha=0.2 clearly worsens it (to 10.00 ± 0.00% at alpha=0.2)" in text


# --------------------------------------------------------------------------- CLI


def test_estimate_keeps_default_inside_budget():
  default = ls.estimate_seconds(variants=8, lrs=3, seeds=3, epochs=8, select_epochs=3)
  assert 8 * 60 < default < 12 * 60  # the brief's budget: 12 minutes
  # 10 final epochs would not leave a margin; no selection runs with one rate.
  assert ls.estimate_seconds(variants=8, lrs=3, seeds=3, epochs=10, select_epochs=3) > default
  one = ls.estimate_seconds(variants=1, lrs=1, seeds=1, epochs=1, select_epochs=3)
  assert one == pytest.approx(ls.LOAD_S + ls.COMPILE_S + ls.SEED_EPOCH_S * (1 + ls.SEED_OVERHEAD))


def _resolved(argv):
  parser = ls.build_parser()
  return ls._resolve(parser.parse_args(argv), parser)  # pylint: disable=protected-access


def test_parser_defaults_quick_and_errors(capsys):
  args = _resolved([])
  assert (args.epochs, args.select_epochs, args.hidden, args.val_size) == (8, 3, (512, 512),
                                                                          10000)
  assert args.alphas == ls.DEFAULT_ALPHAS and args.noise_rates == ls.DEFAULT_NOISE_RATES
  assert args.seeds == (0, 1, 2) and len(args.lrs) == 3 and args.train_subset is None
  quick = _resolved(["--quick"])
  for key, value in ls.QUICK.items():
    assert getattr(quick, key) == value, key
  assert quick.alphas == ls.QUICK_ALPHAS
  assert _resolved(["--quick", "--epochs", "3", "--seeds", "4"]).epochs == 3
  assert _resolved(["--quick", "--seeds", "4"]).seeds == (0, 1, 2, 3)
  for bad in (["--alphas", "0,1.5"], ["--noise-rates", "1"], ["--epochs", "0"],
              ["--alphas", "0.1,0.1"]):
    with pytest.raises(SystemExit):
      _resolved(bad)
  assert "must be" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exc:
    ls.main(["--help"])
  assert exc.value.code == 0
  assert "--select-epochs" in capsys.readouterr().out


def _rows(out):
  return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _check_outputs(out, result, *, alphas, noise_rates, lrs):
  q = ls.QUICK
  n_variants = len(alphas) * len(noise_rates)
  names = {p.name for p in out.iterdir()}
  assert names >= {"config.json", "metrics.jsonl", "summary.md", "summary.json",
                   "reliability.png", "accuracy_curves.png", "confidence_vs_alpha.png", "runs"}
  assert len(result["figures"]) == 3
  for fig in result["figures"]:
    with open(fig, "rb") as f:
      assert f.read(8) == PNG

  rows = _rows(out)
  select = [r for r in rows if r["stage"] == "select"]
  final = [r for r in rows if r["stage"] == "final"]
  n_select = len(lrs) * q["select_epochs"] if len(lrs) > 1 else 0  # one seed
  assert len(select) == n_variants * n_select
  assert len(final) == n_variants * len(q["seeds"]) * q["epochs"]
  for r in rows:
    assert {"run", "stage", "alpha", "noise_rate", "lr", "variant", "seed", "epoch"} <= set(r)
    assert r["alpha"] in alphas and r["noise_rate"] in noise_rates and r["lr"] in lrs
    for key in ls.SCALAR_METRICS + ("train_loss", "train_accuracy"):
      assert math.isfinite(r[key]), key
    assert len(r["test_bin_count"]) == ls.ECE_BINS
    assert sum(r["test_bin_count"]) == (q["val_size"] if r["stage"] == "select"
                                        else q["test_subset"])
  assert all("-select-" in r["run"] for r in select) and all("-final-" in r["run"] for r in final)
  assert all(r["seed"] == q["seeds"][0] for r in select)

  summary = json.loads((out / "summary.json").read_text())
  assert summary == json.loads(json.dumps(result["summary"]))
  assert len(summary["variants"]) == n_variants
  for info in summary["noise"]:
    assert info["flipped_fraction"] == pytest.approx(info["noise_rate"], abs=1e-3)
  for v in summary["variants"]:
    assert v["lr"] in lrs and len(v["selection"]) == (len(lrs) if len(lrs) > 1 else 0)
    assert 0.0 <= v["metrics"]["test_accuracy"][0] <= 1.0
    assert sum(v["reliability"]["count"]) == q["test_subset"] * len(q["seeds"])
  config = json.loads((out / "config.json").read_text())
  assert config["environment"]["device"]["platform"] == "cpu"
  assert set(config["chosen_lrs"]) == {v["variant"] for v in summary["variants"]}
  md = (out / "summary.md").read_text()
  assert md == result["summary_md"] and md.startswith("## ") and "(quick mode)" in md
  assert "**Verdict.** " in md and "![" in md and "](reliability.png)" in md
  for rate in noise_rates:
    assert ls.noise_verdict(rate, [v for v in summary["variants"] if v["noise_rate"] == rate]) in md
  return rows, summary, md


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_end_to_end_and_resume(tmp_path, mnist_dir, monkeypatch, capsys):
  out = tmp_path / "ls"
  argv = ["--quick", "--mnist-dir", mnist_dir, "--out", str(out), "--no-progress"]
  result = ls.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  rows, _, md = _check_outputs(out, result, alphas=ls.QUICK_ALPHAS,
                               noise_rates=ls.DEFAULT_NOISE_RATES, lrs=ls.QUICK["lrs"])
  assert "**Verdict.** Clean labels:" in md and "20% noisy training labels:" in md
  assert "no selection runs" in md

  # Second call with the same --out: nothing is trained again, same numbers.
  def no_training(*a, **k):
    raise AssertionError("a finished run was trained again")

  monkeypatch.setattr("jaxloss.train.iterate_training", no_training)
  again = ls.main(argv)
  assert _rows(out) == rows
  def plain(x):
    return json.loads(json.dumps(x))

  assert plain(again["summary"]["variants"]) == plain(result["summary"]["variants"])
  assert again["summary"]["verdicts"] == result["summary"]["verdicts"]


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_with_learning_rate_selection(tmp_path, mnist_dir):
  """Two rates: selection runs on the noisy validation split, one seed, their own run ids."""
  out = tmp_path / "sel"
  lrs = (1e-3, 3e-3)
  result = ls.main(["--quick", "--mnist-dir", mnist_dir, "--out", str(out), "--no-progress",
                    "--lrs", "1e-3,3e-3", "--noise-rates", "0.2"])
  _, summary, md = _check_outputs(out, result, alphas=ls.QUICK_ALPHAS, noise_rates=(0.2,),
                                  lrs=lrs)
  assert "Learning-rate selection" in md and "**" in md.split("Learning-rate selection")[1]
  for v in summary["variants"]:
    scores = {row["lr"]: row["score"] for row in v["selection"]}
    assert v["lr"] == max(lrs, key=lambda lr: (scores[lr], -lrs.index(lr)))
    assert all(row["run_id"].endswith(f"-select-lr{row['lr']:g}") for row in v["selection"])
    assert (out / "runs" / f"{v['variant']}-final-lr{v['lr']:g}" / "result.json").exists()
