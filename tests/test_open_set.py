"""experiments.open_set: eval_fn metrics vs NumPy references, data prep, wording, end to end."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import open_set

K = 5
UNSEEN = (5, 6, 7, 8, 9)


# --------------------------------------------------------------------------- NumPy references


def np_logsumexp(x, axis=-1):
  m = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def np_log_odds(score, z):
  """logit(score) from the definitions, float64."""
  z = np.asarray(z, np.float64)
  p = np.exp(z - np_logsumexp(z)[:, None])
  if score == "msp":
    s = p.max(-1)
  elif score == "max_sigmoid":
    s = 1.0 / (1.0 + np.exp(-z.max(-1)))
  elif score == "not_na":
    s = 1.0 - p[:, K]
  else:
    s = p[:, :K].max(-1)
  return np.log(s) - np.log1p(-s), s


def np_threshold(s_in, recall):
  s = np.sort(s_in)
  return s[len(s) - math.ceil(recall * len(s) - 1e-9)]


def np_auroc(s_in, s_out):
  d = s_in[:, None] - s_out[None, :]
  return float(np.mean((d > 0) + 0.5 * (d == 0)))


def make_split(rng, n_seen, n_unseen, classes):
  """Random logits with a per-class signal; labels in the eval-split encoding."""
  y_in = rng.integers(0, K, n_seen)
  digits = rng.choice(UNSEEN, n_unseen)
  z = rng.normal(0.0, 2.0, (n_seen + n_unseen, classes))
  z[np.arange(n_seen), y_in] += 3.0
  labels = np.concatenate([y_in, open_set.unseen_code(digits)]).astype(np.int32)
  return z, labels, digits


# --------------------------------------------------------------------------- pure helpers


def test_eval_split_order_and_label_encoding():
  seen_x = np.full((3, 28, 28), 1, np.uint8)
  unseen_x = np.full((2, 28, 28), 2, np.uint8)
  images, labels, n_seen = open_set.eval_split(seen_x, np.array([0, 4, 2]), unseen_x,
                                               np.array([7, 5]))
  assert n_seen == 3 and images.shape == (5, 28, 28)
  np.testing.assert_array_equal(images[:, 0, 0], [1, 1, 1, 2, 2])
  np.testing.assert_array_equal(labels, [0, 4, 2, -8, -6])
  assert labels.dtype == np.int32
  assert open_set.na_count(np.zeros(30611), 5) == 6122


def test_histogram_matches_numpy():
  v = np.random.default_rng(0).uniform(0, 1, 500)
  v[:3] = [0.0, 1.0, 0.5]
  got = np.asarray(jax.jit(lambda x: open_set.histogram(x, 20))(jnp.asarray(v)))
  np.testing.assert_array_equal(got, np.histogram(v, bins=20, range=(0.0, 1.0))[0])
  w = np.random.default_rng(1).uniform(-20, 50, 500)  # partly outside: clipped to end bins
  got = np.asarray(open_set.histogram(jnp.asarray(w), 8, -10.0, 30.0))
  np.testing.assert_array_equal(got, np.histogram(np.clip(w, -10, 30), bins=8,
                                                  range=(-10.0, 30.0))[0])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("score", ["msp", "max_sigmoid", "not_na", "max_digit"])
def test_log_odds_is_logit_of_probability_score(score):
  z = np.random.default_rng(1).normal(0, 3, (64, K + 1))
  ref_lo, ref_p = np_log_odds(score, z)
  lo = open_set.score_log_odds(score, jnp.asarray(z), K)
  p = open_set.score_probability(score, jnp.asarray(z), K)
  np.testing.assert_allclose(np.asarray(p), ref_p, rtol=1e-12)
  np.testing.assert_allclose(np.asarray(lo), ref_lo, rtol=1e-9, atol=1e-9)


def test_log_odds_has_no_float32_ties_where_probabilities_saturate():
  z = jnp.array([[40.0, 0.0, 0.0, 0.0, 0.0, -5.0],
                 [30.0, 0.0, 0.0, 0.0, 0.0, -5.0]], jnp.float32)
  for score in ("msp", "max_digit", "not_na"):
    p = np.asarray(open_set.score_probability(score, z, K))
    lo = np.asarray(open_set.score_log_odds(score, z, K))
    assert p[0] == p[1] == 1.0  # float32 saturation: a tie
    assert np.all(np.isfinite(lo)) and lo[0] > lo[1] > 25.0


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("method", open_set.METHODS)
def test_eval_fn_matches_numpy_reference(method):
  rng = np.random.default_rng(2)
  classes = K + (method == "ce_na")
  n_seen, n_unseen = 120, 90
  z, labels, digits = make_split(rng, n_seen, n_unseen, classes)
  fn = open_set.make_eval_fn(method, num_seen=K, n_seen=n_seen, n_unseen=n_unseen,
                             unseen_digits=UNSEEN, recall=0.95, bins=10)
  out = {k: np.asarray(v) for k, v in jax.jit(fn)(jnp.asarray(z), jnp.asarray(labels)).items()}
  z_in, z_out = z[:n_seen], z[n_seen:]
  assert out["eval_layout_ok"] == 1
  np.testing.assert_allclose(out["seen_accuracy"],
                             np.mean(z_in[:, :K].argmax(-1) == labels[:n_seen]))
  scores = [key for m, key, _ in open_set.SCORES if m == method]
  for score in scores:
    lo_in, p_in = np_log_odds(score, z_in)
    lo_out, p_out = np_log_odds(score, z_out)
    t = np_threshold(lo_in, 0.95)
    np.testing.assert_allclose(out[f"{score}_threshold"], t, rtol=1e-9)
    np.testing.assert_allclose(out[f"{score}_rejected"], np.mean(lo_out < t))
    np.testing.assert_allclose(out[f"{score}_seen_kept"], np.mean(lo_in >= t))
    assert out[f"{score}_seen_kept"] >= 0.95
    np.testing.assert_allclose(out[f"{score}_auroc"], np_auroc(lo_in, lo_out), rtol=1e-12)
    by_digit = [np.mean(lo_out[digits == d] < t) for d in UNSEEN]
    np.testing.assert_allclose(out[f"{score}_rejected_by_digit"], by_digit)
    np.testing.assert_array_equal(out[f"{score}_hist_seen"],
                                  np.histogram(p_in, bins=10, range=(0, 1))[0])
    np.testing.assert_array_equal(out[f"{score}_hist_unseen"],
                                  np.histogram(p_out, bins=10, range=(0, 1))[0])
    lo_range = open_set.LOG_ODDS_RANGE
    for part, lo in (("seen", lo_in), ("unseen", lo_out)):
      np.testing.assert_array_equal(
          out[f"{score}_lohist_{part}"],
          np.histogram(np.clip(lo, *lo_range), bins=10, range=lo_range)[0])
  if method == "sigmoid_bce":
    np.testing.assert_allclose(out["rule_unseen_rejected"], np.mean(z_out.max(-1) < 0))
    np.testing.assert_allclose(out["rule_seen_rejected"], np.mean(z_in.max(-1) < 0))
  if method == "ce_na":
    np.testing.assert_allclose(out["seen_to_na"], np.mean(z_in.argmax(-1) == K))
    np.testing.assert_allclose(out["rule_unseen_rejected"], np.mean(z_out.argmax(-1) == K))
  if method == "softmax_ce":
    assert "rule_unseen_rejected" not in out


def test_validation_eval_fn_has_seen_metrics_only():
  z = jnp.array([[2.0, 0, 0, 0, 0, 9.0], [0, 3.0, 0, 0, 0, 1.0]])
  out = open_set.make_eval_fn("ce_na", num_seen=K, n_seen=2)(z, jnp.array([0, 0]))
  assert set(out) == {"seen_accuracy", "seen_to_na"}
  assert float(out["seen_accuracy"]) == 0.5 and float(out["seen_to_na"]) == 0.5
  with pytest.raises(ValueError, match="unknown method"):
    open_set.make_eval_fn("nope", num_seen=K, n_seen=2)


def test_resolve_settings_quick_and_explicit_flags():
  parser = open_set.build_parser()
  s = open_set.resolve_settings(parser.parse_args([]), parser)
  assert (s.epochs, s.select_epochs, s.hidden, s.seeds, s.val_size) == (10, 3, (512, 512),
                                                                       (0, 1, 2), 5000)
  assert s.lrs == (3e-4, 1e-3, 3e-3) and s.train_subset is None
  q = open_set.resolve_settings(parser.parse_args(["--quick"]), parser)
  assert (q.epochs, q.hidden, q.train_subset, q.seeds) == (2, (32,), 2048, (0, 1))
  assert q.lrs == open_set.QUICK["lrs"]
  e = open_set.resolve_settings(parser.parse_args(["--quick", "--epochs", "3", "--lrs", "0.01"]),
                                parser)
  assert e.epochs == 3 and e.lrs == (0.01,)
  with pytest.raises(SystemExit):
    open_set.resolve_settings(parser.parse_args(["--seen", "1,1"]), parser)


def test_train_method_collects_selection_and_final_rows(monkeypatch):
  """The protocol plumbing with fake runs: selection runs are read back, rows tagged."""
  from experiments import runs

  def fake_result(run_id, acc):
    return runs.RunResult(run_id, "done", [{"run": run_id, "seed": 0, "epoch": 1,
                                            "seen_accuracy": acc}], {}, 1.0, None)

  calls = []
  accs = {1e-3: 0.5, 3e-3: 0.7}

  def fake_tune_and_run(make_spec, lrs, data, val_data, out_dir, *, metric, bar=None):
    assert metric == "seen_accuracy" and val_data == "VAL" and data == "DATA"
    table = [{"lr": lr, "score": accs[lr], "std": 0.0, "status": "done",
              "run_id": make_spec(lr, "select")} for lr in lrs]
    return runs.Tuned(3e-3, table, fake_result(make_spec(3e-3, "final"), 0.8))

  def fake_run(spec, data, out_dir, **kwargs):
    calls.append((spec, data))
    return fake_result(spec, accs[float(spec.split("lr")[1])])

  monkeypatch.setattr(runs, "tune_and_run", fake_tune_and_run)
  monkeypatch.setattr(runs, "run", fake_run)
  entry, rows = open_set.train_method(lambda lr, stage: f"m-{stage}-lr{lr:g}", (1e-3, 3e-3),
                                      "DATA", "VAL", "/nowhere", keys={"method": "m"})
  assert calls == [("m-select-lr0.001", "VAL"), ("m-select-lr0.003", "VAL")]
  assert entry["lr"] == 3e-3 and entry["final"].run_id == "m-final-lr0.003"
  assert sorted(entry["results"]) == ["m-final-lr0.003", "m-select-lr0.001", "m-select-lr0.003"]
  assert [(r["run"], r["stage"], r["lr"], r["method"]) for r in rows] == [
      ("m-select-lr0.001", "select", 1e-3, "m"), ("m-select-lr0.003", "select", 3e-3, "m"),
      ("m-final-lr0.003", "final", 3e-3, "m")]


# --------------------------------------------------------------------------- wording


def st(mean, std):
  return {"mean": mean, "std": std, "values": []}


def test_probability_text():
  assert open_set.probability_text(0.0) == "p = 0.500"
  assert open_set.probability_text(-800.0) == "p = 0.000"
  assert open_set.probability_text(20.0) == "p = 1 - 2.1e-09"
  assert open_set.probability_text(math.nan) == "n/a"


def test_compare_phrase():
  assert open_set.compare_phrase("A", st(50, 1), "B", st(40, 2), "x").startswith(
      "A beats B in x by 10.0 points (50.0 ± 1.0 vs 40.0 ± 2.0)")
  assert open_set.compare_phrase("A", st(40, 1), "B", st(50, 2), "x").startswith("B beats A")
  assert "no clear difference" in open_set.compare_phrase("A", st(50, 3), "B", st(45, 3), "x")
  assert "not comparable" in open_set.compare_phrase("A", st(math.nan, 0), "B", st(1, 0), "x")


def fake_summary(quick=False, diverged=None):
  score = lambda r, a: {"rejected": st(r, 1), "auroc": st(a, 0.5), "seen_kept": st(95.1, 0),
                        "p1_seen": st(10, 1), "p1_unseen": st(5, 1),
                        "threshold_log_odds": st(2.2, 0.1),
                        "rejected_by_digit": [st(r, 1)] * 5}
  method = lambda acc, rule=(math.nan, 0), na=(math.nan, 0): {
      "lr": 1e-3, "seen_accuracy": st(acc, 0.1), "seen_to_na": st(*na),
      "rule_unseen_rejected": st(*rule), "rule_seen_rejected": st(rule[0] / 10, 1),
      "selection": [{"lr": 1e-3, "score": 0.98, "std": 0, "status": "done"},
                    {"lr": 3e-3, "score": -math.inf, "std": math.nan, "status": "diverged"}]}
  return {
      "settings": {"recall": 0.95, "seen": [0, 1, 2, 3, 4], "quick": quick,
                   "na_images_final": 6000, "unseen_digits": list(UNSEEN), "hidden": [512, 512],
                   "train_examples": 30000, "n_seen": 5000, "n_unseen": 5000, "epochs": 10,
                   "seeds": [0, 1, 2], "device": "CPU (cpu)", "wall_seconds": 200.0,
                   "lrs": [1e-3, 3e-3], "val_size": 5000, "select_epochs": 3},
      "methods": {"softmax_ce": method(99.0), "sigmoid_bce": method(98.0, rule=(60.0, 2)),
                  "ce_na": method(99.0, rule=(5.0, 1), na=(0.2, 0.1))},
      "scores": {"msp": score(40, 90), "max_sigmoid": score(55, 93), "not_na": score(41, 88),
                 "max_digit": score(30, 91)},
      "diverged": diverged or {},
  }


def test_verdict_is_generated_from_the_numbers():
  s = fake_summary()
  text = open_set.verdict(s)
  assert "max softmax rejects 40.0 ± 1.0% of the never-seen digits" in text
  assert "fires on most of the unseen digits (60.0 ± 2.0%)" in text
  assert "max sigmoid beats max softmax in rejection of unseen digits by 15.0 points" in text
  assert "no clear difference in rejection at 95% seen recall between 1 - p(NA)" in text
  assert "non-digit images) help? Not clearly. By argmax it takes 5.0 ± 1.0%" in text
  assert "softmax CE beats sigmoid BCE in accuracy by 1.0 points" in text
  assert "Best separation of seen from unseen digits: max sigmoid (sigmoid BCE)" in text
  assert "%, clearly ahead of max digit probability" in text and "No run diverged." in text
  s = fake_summary(quick=True, diverged={"ce_na-select-lr0.003": [0]})
  s["scores"]["max_sigmoid"]["rejected"] = st(41, 1)
  text = open_set.verdict(s)
  assert text.startswith("(quick mode")
  assert "no clear difference in rejection of unseen digits between max sigmoid" in text
  assert "Diverged: ce_na-select-lr0.003: seeds [0]." in text


@pytest.mark.parametrize("not_na,max_digit,answer", [
    (50, 30, "Yes."), (30, 45, "Yes."), (30, 30, "No, it hurts"), (30, 40, "No: 1 - p(NA)"),
    (40.5, 39.5, "Not clearly.")])
def test_verdict_answers_whether_the_na_class_helps(not_na, max_digit, answer):
  s = fake_summary()  # plain max softmax rejects 40 ± 1%
  s["scores"]["not_na"]["rejected"] = st(not_na, 1)
  s["scores"]["max_digit"]["rejected"] = st(max_digit, 1)
  assert f"help? {answer}" in open_set.verdict(s)


def test_summary_markdown_tables():
  s = fake_summary()
  s["verdict"] = open_set.verdict(s)
  md = open_set.summary_markdown(s, "python -m experiments.open_set", ["/x/histograms.png",
                                                                         "/x/curves.png"])
  assert md.startswith("## Do softmax or sigmoid outputs say")
  assert "| sigmoid BCE | every sigmoid < 0.5 | 60.0 ± 2.0 |" in md
  assert "| CE + NA class | 98.00 | diverged | 0.001 |" in md
  assert "](histograms.png)" in md and "](curves.png)" in md and "**Verdict.**" in md
  assert "| 2.20 ± 0.10 (p = 0.900) |" in md
  s["settings"]["lrs"] = [1e-3]
  md = open_set.summary_markdown(s, "cmd", [])
  assert "One learning rate (0.001) for every method: no selection." in md
  assert "no selection runs" in md and "| lr " not in md and "](curves.png)" not in md


# --------------------------------------------------------------------------- end to end


def _rows(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_quick_run_end_to_end_and_resume(mnist_dir, tmp_path):
  argv = ["--quick", "--mnist-dir", mnist_dir, "--out", str(tmp_path), "--no-progress"]
  first = open_set.main(argv)
  for name in ("config.json", "metrics.jsonl", "summary.md", "summary.json", "histograms.png",
               "curves.png"):
    assert (tmp_path / name).exists(), name
  for fig in first["figures"]:
    with open(fig, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  md = (tmp_path / "summary.md").read_text()
  assert md.startswith("## ") and "**Verdict.**" in md and "(quick mode" in md
  rows = _rows(tmp_path / "metrics.jsonl")
  s = first["summary"]["settings"]
  n_seeds, n_lrs = len(s["seeds"]), len(s["lrs"])
  select = n_lrs * s["select_epochs"] if n_lrs > 1 else 0
  assert len(rows) == 3 * (select + n_seeds * s["epochs"])
  final = [r for r in rows if r["stage"] == "final"]
  assert {r["method"] for r in final} == set(open_set.METHODS)
  for r in final:
    assert r["run"].startswith(r["method"] + "-final-lr") and r["eval_layout_ok"] == 1.0
    assert 0.0 <= r["seen_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
    for _, key, _ in open_set.SCORES:
      if key + "_auroc" in r:
        assert 0.0 <= r[key + "_auroc"] <= 1.0 and r[key + "_seen_kept"] >= 0.95
        assert sum(r[key + "_hist_seen"]) == s["n_seen"]
        assert sum(r[key + "_hist_unseen"]) == s["n_unseen"]
        assert sum(r[key + "_lohist_seen"]) == s["n_seen"]
  summary = json.loads((tmp_path / "summary.json").read_text())
  for key in ("msp", "max_sigmoid", "not_na", "max_digit"):
    assert math.isfinite(summary["scores"][key]["auroc"]["mean"])
  config = json.loads((tmp_path / "config.json").read_text())
  assert set(config["chosen_lrs"]) == set(open_set.METHODS) and "environment" in config

  stamps = {p: os.path.getmtime(p) for p in tmp_path.glob("runs/*/result.json")}
  assert len(stamps) == 3 * ((n_lrs if n_lrs > 1 else 0) + 1)
  second = open_set.main(argv)
  assert {p: os.path.getmtime(p) for p in tmp_path.glob("runs/*/result.json")} == stamps
  assert _rows(tmp_path / "metrics.jsonl") == rows  # read back, nothing retrained
  assert second["summary"]["scores"] == first["summary"]["scores"]
  assert second["summary"]["verdict"] == first["summary"]["verdict"]
