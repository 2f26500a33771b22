"""experiments.multilabel: its data, threshold fits, scores, report, refusals and CLI (tiny)."""

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
from experiments import datasets, harness, multilabel as ml, protocol, runs, stats
from jaxloss import train as jt
from _experiments import refusal  # noqa: E402

K = 10


def random_targets(n, seed=0, counts=(1, 2, 3)):
  """``[n, K]`` multi-hot targets with 1 to 3 ones (uniform counts)."""
  rng = np.random.default_rng(seed)
  ranks = np.argsort(rng.random((n, K)), axis=-1)
  return (ranks < rng.choice(counts, size=(n, 1))).astype(np.float32)


def random_batch(n=64, seed=0):
  """Random logits and 1-3-hot targets; about half the rows made easy (positives high)."""
  rng = np.random.default_rng(seed)
  targets_NxK = random_targets(n, seed)
  logits_NxK = rng.normal(0.0, 2.0, (n, K)).astype(np.float32)
  return logits_NxK + 6.0 * targets_NxK * (rng.random((n, 1)) < 0.5), targets_NxK


def test_losses_match_numpy_references():
  logits, targets = random_batch()
  z, t = logits.astype(np.float64), targets.astype(np.float64)
  p = 1.0 / (1.0 + np.exp(-z))
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  want = {"bce": np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))),
          "sigdiff": np.mean(np.abs(p - t)),
          "balanced_sigdiff": np.mean(0.5 * ((t * (1 - p)).sum(-1) / t.sum(-1)
                                             + ((1 - t) * p).sum(-1) / (1 - t).sum(-1))),
          "softmax": np.mean(-np.sum(t / t.sum(-1, keepdims=True) * log_softmax, axis=-1))}
  assert set(want) == set(ml.LOSSES)
  for kind, value in want.items():  # jitted: one program per loss, not one per operation
    got = float(jax.jit(functools.partial(ml.multilabel_loss, kind=kind))(logits, targets))
    assert got == pytest.approx(value, rel=1e-5), kind
  # The softmax loss on normalized targets bottoms out at the targets' entropy, log k.
  perfect = jax.jit(functools.partial(ml.multilabel_loss, kind="softmax"))(40.0 * targets,
                                                                           targets)
  assert float(perfect) == pytest.approx(np.mean(np.log(t.sum(-1))), rel=1e-4)


@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_eval_fn_matches_the_numpy_fits(kind):
  """The in-graph selection score is the NumPy tuned validation accuracy; top-k its oracle."""
  logits, targets = random_batch(n=400, seed=1)
  logp = ml.log_probabilities(logits, kind)
  tau, curve = ml.tune_threshold(logp, targets)
  got = jax.jit(functools.partial(ml.evaluate, kind=kind))(logits, targets)
  assert 0.2 < curve.max() < 0.9 and tau in ml.THRESHOLDS  # a non-trivial check
  np.testing.assert_allclose(got["exact_best"], curve.max(), atol=1.5 / 400)
  np.testing.assert_allclose(got["exact_oracle"], ml.oracle_top_k(logp, targets).mean(),
                             atol=1.5 / 400)
  assert curve.max() <= ml.oracle_top_k(logp, targets).mean()  # one tau is a top-k
  decoded = jax.jit(functools.partial(ml.predict_half, kind=kind))(logits)
  np.testing.assert_array_equal(decoded, logp > np.log(0.5))
  out = ml.model_outputs(jnp.asarray(logits), jnp.asarray(targets))
  assert out["targets"].dtype == jnp.bool_ and out["logits"].shape == (400, K)


def test_log_probabilities_are_exact_where_float32_saturates():
  z = np.array([[40.0, 41.0, -3.0], [0.0, 0.0, 0.0]], np.float32)
  sig = ml.log_probabilities(z, "bce")
  assert sig[0, 0] < sig[0, 1] < 0  # sigmoid(40) and sigmoid(41) are both 1.0 in float32
  np.testing.assert_allclose(np.exp(sig[1]), 0.5)
  soft = ml.log_probabilities(z, "softmax")
  np.testing.assert_allclose(np.exp(soft).sum(-1), 1.0)
  np.testing.assert_allclose(np.exp(soft[1]), 1 / 3)


def test_threshold_tuning_by_hand():
  """Probabilities of 4 images (classes 0..2): exact iff positives > tau >= negatives."""
  p = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.05], [0.6, 0.3, 0.35], [0.45, 0.5, 0.1]])
  t = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], np.float32)
  grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
  curve = ml.exact_curve(np.log(p), t, grid)
  # tau 0.1: image 0 predicts {0, 1}, only image 1 right; 0.2: images 0, 1 (0.2 is not
  # > 0.2); 0.3: 0, 1; 0.4: 0, 1, 2 (0.35 <= 0.4); 0.5: the same (image 3: 0.5 is not > 0.5,
  # no tau fits it); 0.6: 0, 1 (image 2: 0.6 is not > 0.6).
  np.testing.assert_allclose(curve, [0.25, 0.5, 0.5, 0.75, 0.75, 0.5])
  tau, _ = ml.tune_threshold(np.log(p), t, grid)
  assert tau == 0.4  # 0.4 and 0.5 tie: the lower middle
  plateau, flat = ml.tune_threshold(np.log([[0.9, 0.15, 0.1]]), np.array([[1, 0, 0]]), grid)
  assert plateau == 0.4 and flat.tolist() == [0, 1, 1, 1, 1, 1]  # the middle of 0.2..0.6
  np.testing.assert_array_equal(ml.oracle_top_k(np.log(p), t), [True, True, True, True])
  tie = ml.oracle_top_k(np.log([[0.5, 0.5, 0.1]]), np.array([[1, 0, 0]]))
  assert tie.tolist() == [False]  # a tie between a positive and a negative is no top-1


def test_set_scores_by_hand():
  pred = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
  true = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]])
  got = ml.set_scores(pred, true)
  np.testing.assert_allclose(got["f1"], jax.jit(jaxloss.per_class_f1)(pred, true), rtol=1e-6)
  np.testing.assert_allclose(got["f1"], [0.8, 0.0, 2 / 3, 1.0])  # class 3: 0/0 = 1
  assert got["macro_f1"] == pytest.approx(float(np.mean(got["f1"])))
  assert got["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))  # tp 3, fp 2, fn 1
  assert got["exact"].tolist() == [False, False, False]
  assert got["count_right"].tolist() == [False, False, False]
  assert got["count"] == pytest.approx(5 / 3)
  assert ml.set_scores(true, true)["exact"].all() and ml.set_scores(true, true)["micro_f1"] == 1


def test_average_precision_by_hand():
  scores = np.array([[0.9, 0.9, 0.2], [0.8, 0.9, 0.1], [0.7, 0.3, 0.3], [0.6, 0.1, 0.4]])
  targets = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
  ap = ml.average_precision(scores, targets)
  # Class 0: hits at ranks 1 and 3: (1 + 2/3) / 2. Class 1: 0.9 twice (one hit), then a
  # hit at rank 3: 1/2 * 1/2 + 1/2 * 2/3 (scikit-learn's step rule, ties enter together).
  np.testing.assert_allclose(ap[:2], [5 / 6, 7 / 12])
  assert np.isnan(ap[2])  # no positives
  assert ml._mean_ap(ap) == pytest.approx((5 / 6 + 7 / 12) / 2)
  scores[0, 0] = np.nan
  assert np.isnan(ml.average_precision(scores, targets)[0])
  assert math.isnan(ml._mean_ap(np.full(3, np.nan)))


def _index_mnist(n_train=200, n_test=50):
  """Every 28x28 image filled with its index + 1 (train 1..200, test 201..250)."""
  images = np.broadcast_to(np.arange(1, n_train + n_test + 1, dtype=np.uint8)[:, None, None],
                           (n_train + n_test, 28, 28))
  labels = np.arange(n_train + n_test, dtype=np.int32) % K
  return jt.Mnist(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:])


def _slot_ids(images):
  """``[N, slots]`` image ids (0: blank) of `_index_mnist` compositions."""
  return images[:, 0, ::28].astype(int)


def test_multi_digit_images_counts_slots_and_targets():
  mnist = _index_mnist()
  x, y = datasets.multi_digit_images(mnist.train_images, mnist.train_labels, n=3000, seed=3)
  assert x.shape == (3000, 28, 84) and x.dtype == np.uint8 and y.dtype == np.float32
  ids = _slot_ids(x)
  assert np.all(x == np.repeat(ids, 28, axis=1)[:, None, :])  # whole slots, blank or one image
  count = (ids > 0).sum(1)
  np.testing.assert_array_equal(y.sum(1), count)
  assert set(count.tolist()) == {1, 2, 3} and np.all(np.abs(np.bincount(count)[1:] - 1000) < 100)
  for row, slot_ids in zip(y, ids):  # the targets are the digits shown, all different
    digits = [int(mnist.train_labels[i - 1]) for i in slot_ids if i]
    assert len(set(digits)) == len(digits) and np.flatnonzero(row).tolist() == sorted(digits)
  assert np.all((ids > 0).mean(0) > 0.6)  # every slot used: positions are random
  assert ((ids[:, 0] > 0) & (ids[:, 1] == 0)).any() and (ids[:, 0] == 0).any()
  again = datasets.multi_digit_images(mnist.train_images, mnist.train_labels, n=3000, seed=3)
  np.testing.assert_array_equal(again[0], x)
  two, _ = datasets.multi_digit_images(mnist.train_images, mnist.train_labels, n=5, seed=0,
                                       counts=(2,))
  assert two.shape == (5, 28, 56) and np.all(_slot_ids(two) > 0)
  with pytest.raises(ValueError, match="at least 3 different digits"):
    datasets.multi_digit_images(mnist.train_images[:20:10], mnist.train_labels[:20:10], n=2,
                                seed=0)
  with pytest.raises(ValueError, match="counts must be distinct"):
    datasets.multi_digit_images(mnist.train_images, mnist.train_labels, n=2, seed=0,
                                counts=(0, 1))


def test_splits_keep_validation_images_out_of_training_images():
  mnist = _index_mnist()
  s = ml.Settings(val_size=50, train_size=500, test_size=60)
  split = ml.splits(s, mnist)["digits"]
  ids = {name: set(_slot_ids(x[0]).ravel().tolist()) - {0} for name, x in (
      ("train", split.train), ("val", split.val), ("test", split.test))}
  assert [x[0].shape[0] for x in (split.train, split.val, split.test)] == [500, 50, 60]
  assert not ids["val"] & ids["train"] and ids["val"] | ids["train"] <= set(range(1, 201))
  assert ids["test"] <= set(range(201, 251))
  assert all(set(x[1].sum(-1).tolist()) == {1.0, 2.0, 3.0} for x in (split.train, split.test))
  np.testing.assert_array_equal(ml.splits(s, mnist)["digits"].train[0], split.train[0])
  other = ml.splits(ml.Settings(val_size=50, train_size=500, test_size=60, data_seed=1), mnist)
  assert not np.array_equal(other["digits"].test[0], split.test[0])


def _fake_outcome(name, quality, seeds=3, n=300):
  """Seeds' logits on 1-3-digit validation and test images: positives raised by `quality`."""
  test = {}
  for split, offset in (("val/", 0), ("", 100)):
    logits, targets = [], []
    for s in range(seeds):
      rng = np.random.default_rng(1000 * s + offset + sum(map(ord, name)))
      t = random_targets(n, seed=offset + s)
      logits.append(rng.normal(-1.0, 1.0, (n, K)) + (quality + 0.3 * s) * t)
      targets.append(t > 0.5)
    test[split + "logits"], test[split + "targets"] = np.asarray(logits), np.asarray(targets)
  test.update(exact_best=np.zeros(seeds), exact_oracle=np.zeros(seeds))
  result = runs.RunResult("x", "done", [], {}, 1.0, 0, [{"seed": s} for s in range(seeds)], test)
  selected = protocol.Selected({"lr": 1e-3}, [], [], result, [result])
  return harness.Outcome(harness.Variant(name, loss_fn=None, final_splits=("val",)), selected)


def _sentences(text):
  return len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", text))


def test_report_verdicts_tables_summary_and_figures(tmp_path):
  outcomes = {"bce": _fake_outcome("bce", 4.0), "sigdiff": _fake_outcome("sigdiff", 0.5),
              "balanced_sigdiff": _fake_outcome("balanced_sigdiff", 2.5)}
  rep = ml.report(ml.Settings(seeds=(0, 1, 2)), outcomes)
  calls = [(c["metric"], c["a"], c["b"], c["test"], c["verdict"])
           for c in rep.summary["comparisons"]]
  assert calls == [("exact", "bce", "sigdiff", "mcnemar", "better"),
                   ("exact", "bce", "balanced_sigdiff", "mcnemar", "better"),
                   ("exact", "balanced_sigdiff", "sigdiff", "mcnemar", "better"),
                   ("map", "bce", "sigdiff", "paired-t", "better"),
                   ("map", "bce", "balanced_sigdiff", "paired-t", "better"),
                   ("map", "balanced_sigdiff", "sigdiff", "paired-t", "better")]
  p = [c["p_value"] for c in rep.summary["comparisons"]]
  np.testing.assert_allclose([c["p_holm"] for c in rep.summary["comparisons"]],
                             stats.holm(p))  # one family
  bce = rep.summary["losses"]["bce"]
  assert set(bce["tau"]) <= set(ml.THRESHOLDS) and len(bce["f1"]) == 3
  assert all(a <= b + 1e-12 for a, b in zip(bce["best_tau_test"], bce["oracle"]))
  assert all(a <= b + 1e-12 for a, b in zip(bce["exact"], bce["best_tau_test"]))
  assert _sentences(rep.verdict) <= 3 and "On mAP (threshold-free): bce vs sigdiff" in rep.verdict
  exact = "{:.2f} ± {:.2f}".format(100 * np.mean(bce["exact"]),
                                   100 * np.std(bce["exact"], ddof=1))
  assert f"bce {exact}%" in rep.verdict
  assert len(rep.headline.split()) <= 40 and "bce vs sigdiff: better" in rep.headline
  assert re.search(r"^\| bce \| 0\.001 \| 0\.\d\d ± 0\.\d\d \| " + re.escape(exact) + r" \|",
                   rep.markdown, re.M)
  assert "| loss | 1 digit | 2 digits | 3 digits | digits predicted |" in rep.markdown
  assert "| loss | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |" in rep.markdown
  assert "| balanced_sigdiff vs sigdiff | mAP |" in rep.markdown and "(oracle)" in rep.markdown
  for name in ("accuracy.png", "thresholds.png"):
    rep.figures[name](str(tmp_path / name))
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  one = ml.report(ml.Settings(seeds=(0,)), {"bce": _fake_outcome("bce", 4.0, seeds=1)})
  assert one.summary["comparisons"] == [] and _sentences(one.verdict) == 1
  broken = _fake_outcome("softmax", 3.0)
  broken.selected.result.test["logits"][1, 0, 0] = np.nan  # a diverged seed
  two = ml.report(ml.Settings(seeds=(0, 1, 2)), {"bce": outcomes["bce"], "softmax": broken})
  assert two.summary["skipped"] == ["bce vs softmax (mAP)"]
  assert [c["metric"] for c in two.summary["comparisons"]] == ["exact"]


def _refused(argv, capsys, monkeypatch, tmp_path):
  return refusal(ml.main, argv, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, start", [
    (["--losses", "bce,mse"], "error: --losses: must be among bce, softmax, sigdiff, "
                              "balanced_sigdiff, got mse"),
    (["--losses", "bce,bce"], "error: --losses: must be distinct"),
    (["--train-size", "0"], "error: --train-size: must be an integer >= 1"),
    (["--batch-size", "4096", "--train-size", "1000"], "error: --batch-size: must be <= --train"),
    (["--hidden", "a"], "error: --hidden: must be"),
    (["--counts", "0,2"], "error: --counts: must be distinct comma-separated integers in [1, 10]"),
    (["--quick", "--val-size", "0"], "error: --val-size: must be >= 1: every model's threshold"),
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
                                            "summary.csv", "summary.md", "accuracy.png",
                                            "thresholds.png"}
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 2 * 2 * 2 and {r["split"] for r in rows} == {"validation"}
  saved = json.loads((out / "summary.json").read_text())
  bce, softmax = saved["variants"]["bce"], saved["variants"]["softmax"]
  assert bce["selected"] == {"lr": 3e-3} and bce["probabilities"] == "sigmoid"
  assert softmax["probabilities"] == "softmax"
  assert set(bce["test"]) == {"exact_best", "exact_oracle"}
  found = saved["losses"]
  assert set(found) == {"bce", "softmax"} and set(found["bce"]["tau"]) <= set(ml.THRESHOLDS)
  assert min(found["softmax"]["exact"]) > 0.1  # learned something (1/3 of images: 1 digit)
  # The selection score (in-graph, float32) is the NumPy tuned validation accuracy.
  for name in ("bce", "softmax"):
    np.testing.assert_allclose(np.mean(found[name]["val_exact"]),
                               saved["variants"][name]["selection"][0]["score"], atol=2 / 512)
  np.testing.assert_allclose(found["bce"]["oracle"], bce["test"]["exact_oracle"], atol=2 / 512)
  assert [(c["metric"], c["a"], c["b"], c["test"]) for c in saved["comparisons"]] == [
      ("exact", "bce", "softmax", "mcnemar"), ("map", "bce", "softmax", "paired-t")]
  assert _sentences(saved["verdict"]) <= 3 and saved["headline"]
  assert json.loads((out / "config.json").read_text())["settings"]["hidden"] == [32]
  monkeypatch.setattr(jt, "iterate_training", None)  # finished runs are read back, not trained
  again = ml.main(argv)
  assert (again["variants"], again["comparisons"], again["losses"]) == (
      summary["variants"], summary["comparisons"], summary["losses"])


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_with_a_grid_selects_on_validation_images(tmp_path):
  out = tmp_path / "run"
  summary = ml.main(["--quick", "--val-size", "256", "--losses", "bce", "--lrs", "1e-3,3e-3",
                     "--out", str(out), "--no-progress"])
  bce = summary["variants"]["bce"]
  assert len(bce["selection"]) >= 2  # both rates, and more if a winner sat on an edge
  chosen = [row for row in bce["selection"] if row["lr"] == bce["selected"]["lr"]]
  assert chosen[0]["score"] == max(row["score"] for row in bce["selection"])
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in rows} == {"validation"}
  assert summary["comparisons"] == [] and set(summary["losses"]) == {"bce"}
