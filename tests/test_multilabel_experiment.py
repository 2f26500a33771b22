"""Tests of experiments/multilabel.py (two-digit MNIST: BCE vs sigmoid-difference vs softmax CE).

Pure helpers (losses, eval_fn metrics, data construction, verdict wording,
argument handling) are checked against NumPy references without MNIST; one
end-to-end run of ``--quick`` on the real MNIST files (marked ``mnist``) checks
every output and that a second call with the same ``--out`` retrains nothing.
"""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import multilabel as ml
from jaxloss import train as jt

K = 10


def random_batch(n=64, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0.0, 2.0, (n, K)).astype(np.float32)
  targets = np.zeros((n, K), np.float32)
  for i in range(n):
    targets[i, rng.choice(K, 2, replace=False)] = 1.0
  # Make some rows easy (right top-2) so the exact-set accuracy is not ~0.
  easy = rng.random(n) < 0.5
  logits[easy] += 6.0 * targets[easy]
  return logits, targets


def np_top2(logits):
  pred = np.zeros_like(logits)
  idx = np.argsort(-logits, axis=-1, kind="stable")[:, :2]
  np.put_along_axis(pred, idx, 1.0, axis=-1)
  return pred


def np_f1(pred, targets):
  p, t = pred > 0.5, targets > 0.5
  tp = (p & t).sum(0)
  fp = (p & ~t).sum(0)
  fn = (~p & t).sum(0)
  den = 2 * tp + fp + fn
  return np.where(den == 0, 1.0, 2 * tp / np.maximum(den, 1))


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


# --------------------------------------------------------------------------- losses and metrics


def test_losses_match_numpy_references():
  logits, targets = random_batch()
  z, t = logits.astype(np.float64), targets.astype(np.float64)
  p = np_sigmoid(z)
  bce = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
  sigdiff = np.mean(np.abs(p - t))
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  softmax = np.mean(-np.sum(t / t.sum(-1, keepdims=True) * log_softmax, axis=-1))
  for key, want in (("bce", bce), ("sigdiff", sigdiff), ("softmax", softmax)):
    got = float(ml.loss_fn_for(key)(jnp.asarray(logits), jnp.asarray(targets)))
    assert got == pytest.approx(want, rel=1e-5), key
  # The softmax loss on normalized targets bottoms out at log 2, not 0.
  perfect = jnp.asarray(30.0 * targets)
  assert float(ml.loss_fn_for("softmax")(perfect, jnp.asarray(targets))) == pytest.approx(
      math.log(2), rel=1e-4)
  with pytest.raises(ValueError, match="unknown variant"):
    ml.loss_fn_for("mse")


@pytest.mark.parametrize("key", ["bce", "softmax"])
def test_eval_fn_matches_numpy(key):
  logits, targets = random_batch(n=200, seed=1)
  got = ml.make_eval_fn(key)(jnp.asarray(logits), jnp.asarray(targets))
  top2 = np_top2(logits)
  np.testing.assert_allclose(float(got["exact_top2"]), np.mean(np.all(top2 == targets, -1)))
  np.testing.assert_allclose(np.asarray(got["f1_top2"]), np_f1(top2, targets), rtol=1e-6)
  np.testing.assert_allclose(float(got["macro_f1_top2"]), np_f1(top2, targets).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(got["eval_loss"]),
                             float(ml.loss_fn_for(key)(jnp.asarray(logits), jnp.asarray(targets))),
                             rtol=1e-6)
  assert 0.2 < float(got["exact_top2"]) < 0.9  # a non-trivial check
  if key == "softmax":
    assert set(got) == {"eval_loss", "exact_top2", "macro_f1_top2", "f1_top2"}
    return
  thr = (logits > 0).astype(np.float32)  # sigmoid > 0.5
  np.testing.assert_allclose(float(got["exact_threshold"]), np.mean(np.all(thr == targets, -1)))
  np.testing.assert_allclose(np.asarray(got["f1_threshold"]), np_f1(thr, targets), rtol=1e-6)
  np.testing.assert_allclose(float(got["macro_f1_threshold"]), np_f1(thr, targets).mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(float(got["count_threshold"]), thr.sum(-1).mean(), rtol=1e-6)
  np.testing.assert_allclose(float(got["two_threshold"]), np.mean(thr.sum(-1) == 2))


def test_eval_fn_runs_under_jit_and_vmap():
  import jax  # pylint: disable=import-outside-toplevel

  logits, targets = random_batch(n=32)
  stacked = jnp.stack([jnp.asarray(logits), -jnp.asarray(logits)])
  out = jax.jit(jax.vmap(ml.make_eval_fn("sigdiff"), in_axes=(0, None)))(stacked,
                                                                         jnp.asarray(targets))
  assert out["f1_top2"].shape == (2, K) and out["exact_top2"].shape == (2,)
  single = ml.make_eval_fn("sigdiff")(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(out["exact_threshold"][0], single["exact_threshold"])
  pred = ml.predict_top2(jnp.asarray(logits))
  np.testing.assert_array_equal(np.asarray(pred), np_top2(logits))


# --------------------------------------------------------------------------- data


def test_build_data_keeps_validation_images_out_of_training_pairs():
  # Every 28x28 image is unique: its index is written into its first pixels.
  n_train, n_test = 300, 80
  rng = np.random.default_rng(0)

  def images(n, offset):
    x = np.zeros((n, 28, 28), np.uint8)
    idx = np.arange(n) + offset
    x[:, 0, 0], x[:, 0, 1] = idx // 256, idx % 256
    return x

  mnist = jt.Mnist(images(n_train, 0), rng.integers(0, K, n_train).astype(np.int32),
                   images(n_test, 1000), rng.integers(0, K, n_test).astype(np.int32))
  data, val = ml.build_data(mnist, train_size=500, test_size=60, val_size=50, seed=0)

  def ids(pairs):
    halves = np.concatenate([pairs[:, :, :28], pairs[:, :, 28:]])
    return set((256 * halves[:, 0, 0].astype(int) + halves[:, 0, 1]).tolist())

  assert data.train_images.shape == (500, 28, 56) and data.test_images.shape == (60, 28, 56)
  assert val.train_images.shape == (500, 28, 56) and val.test_images.shape == (50, 28, 56)
  for split in (data.train_labels, data.test_labels, val.train_labels, val.test_labels):
    assert split.dtype == np.float32 and np.all(split.sum(-1) == 2)
  assert ids(data.train_images) <= set(range(n_train))
  assert ids(data.test_images) <= set(range(1000, 1000 + n_test))
  val_ids, select_train_ids = ids(val.test_images), ids(val.train_images)
  assert val_ids <= set(range(n_train)) and not val_ids & select_train_ids
  assert len(val_ids | select_train_ids) <= n_train
  # Deterministic.
  again, _ = ml.build_data(mnist, train_size=500, test_size=60, val_size=50, seed=0)
  np.testing.assert_array_equal(again.train_images, data.train_images)


# --------------------------------------------------------------------------- verdict


def stats(exact_top2, exact_threshold=None, count=2.0, two=95.0, diverged=None):
  sigmoid = exact_threshold is not None
  return {"exact_top2": exact_top2, "exact_threshold": exact_threshold,
          "count_threshold": (count, 0.05) if sigmoid else None,
          "two_threshold": (two, 1.0) if sigmoid else None, "diverged": diverged or {}}


def test_verdict_bce_wins_and_threshold_works():
  text = ml.verdict({"bce": stats((90.0, 0.3), (89.5, 0.4)),
                     "sigdiff": stats((60.0, 2.0), (40.0, 3.0), count=1.4, two=50.0),
                     "softmax": stats((88.0, 0.4))})
  assert "sigmoid BCE has the highest exact-set test accuracy (90.00 ± 0.30%)" in text
  assert "beats softmax CE (t/sum t) by 2.00 ± 0.50 points" in text
  assert "beats sigmoid-difference by 30.00 ± 2.02 points" in text
  assert "sigmoid BCE is a right choice here: it is the best loss." in text
  assert "thresholding works without knowing the number of labels (it costs 0.50 points" in text
  assert "thresholding costs 20.00 points" in text
  assert "quick mode" not in text


def test_verdict_softmax_wins_and_ties():
  text = ml.verdict({"bce": stats((85.0, 0.3), (70.0, 0.5)), "softmax": stats((90.0, 0.2))})
  assert "So sigmoid BCE is not the best loss here" in text
  assert "needs the number of labels to decode" in text
  tie = ml.verdict({"bce": stats((89.8, 0.3), (89.0, 0.3)), "softmax": stats((90.0, 0.4))},
                   quick=True)
  assert tie.startswith("(quick mode")
  assert "is not clearly better than sigmoid BCE (+0.20 ± 0.50 points" in tie
  assert "no other loss is clearly better" in tie


def test_verdict_barely_learned_and_diverged():
  text = ml.verdict({"bce": stats((80.0, 1.0), (79.0, 1.0)),
                     "sigdiff": stats((3.0, 1.0), (0.0, 0.0)),
                     "softmax": stats((math.nan, math.nan))})
  assert "sigmoid-difference barely learned" in text
  assert "Diverged (every seed, no final numbers): softmax CE (t/sum t)." in text
  partial = ml.verdict({"bce": stats((80.0, 1.0), (79.0, 1.0), diverged={"1": 2})})
  assert "Some seeds diverged for sigmoid BCE" in partial
  assert "Only sigmoid BCE ran" in partial


# --------------------------------------------------------------------------- CLI


def test_parse_args_quick_and_overrides():
  args = ml.parse_args([])
  assert args.seeds == (0, 1, 2) and args.epochs == 10 and args.select_epochs == 3
  assert args.hidden == (512, 512) and args.train_size == 60000 and args.val_size == 10000
  assert args.losses == ("bce", "sigdiff", "softmax") and len(args.lrs) == 3
  quick = ml.parse_args(["--quick"])
  assert quick.seeds == (0, 1) and quick.lrs == (1e-3, 3e-3) and quick.hidden == (32,)
  assert quick.train_subset == 2048 and quick.epochs == 2 and quick.select_epochs == 1
  mixed = ml.parse_args(["--quick", "--epochs", "3", "--seeds", "3", "--losses", "softmax,bce"])
  assert mixed.epochs == 3 and mixed.seeds == (0, 1, 2) and mixed.hidden == (32,)
  assert mixed.losses == ("softmax", "bce")
  with pytest.raises(SystemExit):
    ml.parse_args(["--losses", "bce,mse"])
  with pytest.raises(SystemExit):
    ml.parse_args(["--epochs", "0"])


# --------------------------------------------------------------------------- end to end


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_end_to_end_and_resume(tmp_path, mnist_dir, monkeypatch, capsys):
  argv = ["--quick", "--mnist-dir", mnist_dir, "--out", str(tmp_path), "--no-progress"]
  result = ml.main(argv)
  printed = capsys.readouterr().out
  assert "device: " in printed and "Verdict" in printed

  names = {p.name for p in tmp_path.iterdir()}
  assert {"config.json", "metrics.jsonl", "summary.md", "summary.json", "curves.png",
          "f1_digits.png"} <= names
  for fig in result["figures"]:
    with open(fig, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  # Per loss: 2 rates x 1 seed x 1 epoch (select) + 2 seeds x 2 epochs (final).
  assert len(rows) == 3 * (2 + 4)
  assert {r["stage"] for r in rows} == {"select", "final"}
  assert {r["loss"] for r in rows} == {"bce", "sigdiff", "softmax"}
  for r in rows:
    assert {"run", "seed", "epoch", "lr", "train_loss", "exact_top2", "macro_f1_top2",
            "f1_top2"} <= set(r)
    assert math.isfinite(r["train_loss"]) and 0.0 <= r["exact_top2"] <= 1.0
    assert len(r["f1_top2"]) == K and all(0.0 <= v <= 1.0 for v in r["f1_top2"])
    assert ("exact_threshold" in r) == (r["loss"] != "softmax")
    assert r["run"] == f"{r['loss']}-{r['stage']}-lr{r['lr']:g}"
  assert {r["seed"] for r in rows if r["stage"] == "select"} == {0}

  md = (tmp_path / "summary.md").read_text()
  assert md.startswith("## ") and "(quick mode)" in md and "**Verdict.**" in md
  assert "![" in md and "](curves.png)" in md and "](f1_digits.png)" in md
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["verdict"] == result["summary"]["verdict"] and summary["quick"] is True
  for key, entry in summary["losses"].items():
    assert entry["lr"] in (1e-3, 3e-3) and len(entry["selection"]) == 2
    assert 0.0 <= entry["exact_top2"][0] <= 100.0 and len(entry["f1_top2"]["mean"]) == K
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["settings"]["chosen_lrs"] == {k: e["lr"] for k, e in summary["losses"].items()}
  assert config["environment"]["device"]["platform"] in ("cpu", "gpu", "tpu")
  assert config["args"]["quick"] is True
  assert result["wall_seconds"] > 0

  # A second call with the same --out reads every run back: training would fail.
  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")

  monkeypatch.setattr(jt, "iterate_training", no_training)
  again = ml.main(argv)
  assert [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == rows
  assert again["summary"]["losses"] == result["summary"]["losses"]
  assert again["summary"]["verdict"] == result["summary"]["verdict"]
