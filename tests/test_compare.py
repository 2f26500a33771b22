"""experiments.compare on the harness: its pieces, its refusals, and the CLI end to end (tiny)."""

from __future__ import annotations

import csv
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
from experiments import compare, harness, protocol, runs, stats
from _experiments import refusal


def test_diagnose_shows_vanishing_gradient_of_sigmoid_difference():
  """A confidently wrong output: sigmoid-difference gives ~0 gradient, cross-entropy ~sqrt(2)."""
  logits_NxC = jnp.array([[-20.0, 20.0, -20.0], [20.0, -20.0, -20.0]])  # wrong, then right
  labels_N = jnp.array([0, 0])
  # Jitted, as a test_fn runs (one program each: op by op it would take many more compiles).
  ce, sd = (jax.jit(lambda z, y, spec=jaxloss.get(name): compare.diagnose(spec, z, y))(
      logits_NxC, labels_N) for name in ("ce", "sigmoid_difference"))
  assert ce["test_error"] == sd["test_error"] == 0.5
  assert ce["correct"].tolist() == [False, True]
  np.testing.assert_allclose(ce["wrong_grad_norm_median"], math.sqrt(2.0), rtol=1e-4)
  assert sd["wrong_grad_norm_median"] < 1e-7
  assert sd["wrong_tiny_grad_share"] == 1.0 and ce["wrong_tiny_grad_share"] == 0.0
  np.testing.assert_allclose(sd["wrong_true_prob_mean"], jax.nn.sigmoid(-20.0), rtol=1e-4)


def _fake_outcome(acc_ExS, seconds=2.0):
  rows = []
  for e, accs in enumerate(acc_ExS, start=1):
    for seed, acc in enumerate(accs):
      rows.append({"seed": seed, "epoch": e, "epoch_seconds": seconds, "wall_seconds": seconds * e,
                   "compile_seconds": 1.5 if e == 1 else 0.0, "test_accuracy": acc,
                   "train_loss": 1 - acc, "test_nll": 1 - acc, "test_ece": 0.01,
                   "test_confidence": acc})
  test = {k: np.array([0.1, 0.2]) for k in (
      "test_error", "wrong_grad_norm_median", "wrong_tiny_grad_share", "true_prob_mean",
      "wrong_true_prob_mean", "top_prob_mean")}
  result = runs.RunResult("x", "done", rows, {}, seconds * len(acc_ExS), 0,
                          [{"seed": 0}, {"seed": 1}], test)
  selected = protocol.Selected({"lr": 1e-3}, [], [], result, [result])
  return harness.Outcome(harness.Variant("x", loss_fn=None), selected)


def _fake_selected(loss, acc_S, n=1000):
  """A second-table Outcome: seed s gets the first ``acc_S[s] * n`` test digits right."""
  correct_SxN = np.arange(n)[None, :] < np.round(np.asarray(acc_S) * n)[:, None]
  test = {"test_accuracy": correct_SxN.mean(axis=1), "correct": correct_SxN,
          **{k: np.full(len(acc_S), 0.5) for k in (
              "test_nll", "test_ece", "test_confidence", "wrong_grad_norm_median",
              "wrong_tiny_grad_share", "true_prob_mean", "wrong_true_prob_mean",
              "top_prob_mean")}}
  result = runs.RunResult(loss, "done", [], {}, 1.0, 0,
                          [{"seed": s} for s in range(len(acc_S))], test)
  selected = protocol.Selected({"lr": 1e-4}, [], [3.16e-5], result, [result])
  return harness.Outcome(harness.Variant(f"selected-{loss}", loss_fn=None, data="selected",
                                         describe={"loss": loss}), selected)


SD_ACC = [0.11, 0.12, 0.115, 0.113, 0.114]


def _selected(mae, bsd):
  return {o.variant.name: o for o in (
      _fake_selected("softmax_cross_entropy", [0.98, 0.981, 0.979, 0.98, 0.982]),
      _fake_selected("sigmoid_difference", SD_ACC),
      _fake_selected("softmax_absolute_error", mae),
      _fake_selected("balanced_sigmoid_difference", bsd))}


def test_selected_pairs():
  assert compare.selected_pairs(list(compare.SELECTED_LOSSES)) == [
      ("sigmoid_difference", "softmax_cross_entropy"),
      ("softmax_absolute_error", "softmax_cross_entropy"),
      ("balanced_sigmoid_difference", "softmax_cross_entropy"),
      ("softmax_absolute_error", "sigmoid_difference"),
      ("balanced_sigmoid_difference", "sigmoid_difference")]
  assert compare.selected_pairs(["balanced_sigmoid_difference"]) == []


@pytest.mark.parametrize("mae, bsd, words", [
    (0.97, 0.96, ["1 - p_y (bounded", "trains (97.00%", "boundedness alone does not cause",
                  "balanced sigmoid-difference (no 9-to-1", "the 9-to-1 imbalance causes"]),
    (0.5, 0.113, ["trains only partly (50.00%", "does not explain all",
                  "does not train (11.30%", "the imbalance alone does not explain it"]),
])
def test_explain_reads_the_controls(mae, bsd, words):
  outcomes = _selected([mae] * 5, [bsd] * 5)
  by_loss = {o.variant.describe["loss"]: o for o in outcomes.values()}
  (comps,) = stats.holm_family(harness.compare(
      by_loss, compare.selected_pairs(list(by_loss)), margin=0.15))
  acc = {n: float(np.mean(o.accuracy())) for n, o in by_loss.items()}
  claims, short = compare.explain(acc, {(c.a, c.b): c for c in comps})
  text = "; ".join(claims)
  for word in words:
    assert word in text
  assert len(claims) == len(short) == 2 and "vs sigmoid-difference +" in claims[0]
  sd_trains = compare.explain({"sigmoid_difference": 95.0}, {})[0]
  assert sd_trains == ["with its own rate sigmoid-difference trains (95.00%), so its collapse "
                       "belongs to the headline's rate"]
  assert compare.explain({"softmax_cross_entropy": 98.0}, {}) == ([], [])


def test_report_with_both_tables():
  head = {n: _fake_outcome([[0.96, 0.975], [0.979, 0.981]]) for n in compare.DEFAULT_LOSSES}
  for n, o in head.items():
    o.selected.result.test.update(correct=np.ones((2, 10), bool),
                                  test_accuracy=np.array([0.975, 0.981]))
    object.__setattr__(o, "variant", harness.Variant(n, loss_fn=None))
  s = compare.Settings()
  rep = compare.report(s, {**head, **_selected([0.97] * 5, [0.96] * 5)})
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", rep.verdict)) <= 3  # sentences
  assert "With the rate selected on validation (5 seeds, 5 epochs): softmax_cross_entropy " \
         "98.04%, sigmoid_difference 11.44%" in rep.verdict
  assert rep.headline.endswith("; rate selected: boundedness alone is not the cause; the "
                               "imbalance is the cause.")
  assert len(rep.headline.split()) <= 40
  assert len(rep.summary["comparisons"]) == 1 + 5  # one Holm family: the headline's and 5
  md = rep.markdown
  assert "### With the learning rate selected on validation" in md
  assert "5 epochs, not the headline's 10: the suite's time budget" in md
  assert "| sigmoid_difference | 0.0001 (grid grown: 3.16e-05) | 11.44 ± 0." in md
  assert "Holm over all 6 comparisons of this experiment" in md
  assert "| softmax_absolute_error vs sigmoid_difference | +85.56 | +85.11 to +86.01 " \
         "| < 0.0001 | better |" in md
  assert "**What causes the collapse.** 1 - p_y (bounded" in md
  assert [r["loss"] for r in rep.summary["selected_rows"]] == list(compare.SELECTED_LOSSES)


def test_variants_and_splits_of_both_tables():
  from jaxloss import train as jt

  s = compare.Settings(selected_losses=("mae", "balanced_sigmoid_difference"), train_subset=3000)
  head, *_, last = compare.variants(s)
  assert head.name == "softmax_cross_entropy" and head.data == "mnist" and head.seeds is None
  assert last.name == "selected-balanced_sigmoid_difference" and last.data == "selected"
  assert last.seeds == (0, 1, 2, 3, 4) and last.rates == protocol.half_decades()
  assert last.train["epochs"] == 5 and last.train["hidden"] == (512, 512)
  rng = np.random.default_rng(0)
  mnist = jt.Mnist(rng.integers(0, 255, (12000, 2, 2), dtype=np.uint8), np.arange(12000) % 10,
                   np.zeros((5, 2, 2), np.uint8), np.arange(5))
  splits = compare.splits(s, mnist)
  assert splits["mnist"].val is None and len(splits["mnist"].train[1]) == 12000
  assert len(splits["selected"].val[1]) == 10000 and len(splits["selected"].train[1]) == 2000
  assert list(compare.splits(compare.Settings(selected_losses=()), mnist)) == ["mnist"]


def test_summarize_crossings_and_tables():
  row = compare.summarize("x", _fake_outcome([[0.96, 0.975], [0.979, 0.981], [0.985, 0.979]]))
  assert row["final_acc_mean"] == pytest.approx(98.2)
  assert row["best_acc_mean"] == pytest.approx((98.5 + 98.1) / 2)
  assert row["reached_97"] == 2 and row["epochs_to_97"] == pytest.approx(1.5)
  assert row["seconds_to_97"] == pytest.approx(3.0)
  assert row["reached_98"] == 2 and row["epochs_to_98"] == pytest.approx(2.5)
  assert row["compile_seconds"] == 1.5 and row["train_seconds"] == 6.0
  never = compare.summarize("y", _fake_outcome([[0.5, 0.975]]))
  assert never["reached_98"] == 0 and math.isnan(never["epochs_to_98"])
  text = compare.tables_markdown([row, never], compare.Settings())
  assert "| never |" in text and "(1/2 seeds)" in text and "784-512-512-10 relu" in text


def _refused(argv, capsys, monkeypatch, tmp_path):
  return refusal(compare.main, argv, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv, start", [
    (["--lr", "nan"], "error: --lr: must be"), (["--lr", "inf"], "error: --lr: must be"),
    (["--lr", "0"], "error: --lr: must be"), (["--lr=-1e-3"], "error: --lr: must be"),
    (["--lr", "-1e-3"], "error: argument --lr: expected one argument"),
    (["--lr", "abc"], "error: --lr: must be"), (["--epochs", "0"], "error: --epochs: must be"),
    (["--batch-size", "0"], "error: --batch-size: must be"),
    (["--batch-size", "4096", "--train-subset", "1000"], "error: --batch-size: must be at most"),
    (["--val-size", "100", "--train-subset", "100"], "error: --val-size: must be below"),
    (["--losses", "nope"], "error: Unknown loss 'nope'"),
    (["--losses", "ce,softmax_cross_entropy"], "error: --losses lists a loss twice"),
    (["--losses", "multilabel_bce"], "error: --losses: 'multilabel_bce' is not"),
    (["--optimizer", "rmsprop"], "error: --optimizer: must be one of"),
    (["--selected-losses", "ce,softmax_cross_entropy"],
     "error: --selected-losses lists a loss twice"),
    (["--selected-losses", "multilabel_bce"], "error: --selected-losses: 'multilabel_bce' is"),
    (["--selected-losses", "mae", "--selected-val-size", "2000", "--train-subset", "2000"],
     "error: --selected-val-size: must be below the 2000"),
    (["--selected-losses", "mae", "--selected-val-size", "1950", "--train-subset", "2000"],
     "error: --batch-size: must be at most the 50 training images left by"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert _refused(argv, capsys, monkeypatch, tmp_path).startswith(start)


def test_lr_nan_exits_2_at_once_without_loading_jax(tmp_path):
  """``python -m experiments.compare --lr nan``: exit status 2, one line, nothing trained."""
  code = ("import sys\n"
          "from experiments import compare\n"
          "try:\n"
          "  compare.main(['--lr', 'nan', '--out', sys.argv[1]])\n"
          "except SystemExit as e:\n"
          "  assert 'jax' not in sys.modules, 'jax was imported before the flags were checked'\n"
          "  raise\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=root,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
      "error: --lr: must be a finite number > 0, got 'nan'"]
  assert done.stdout == "" and not (tmp_path / "out").exists()


def test_missing_mnist_fails_fast_with_advice(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr("jaxloss.train.data._host_reachable", lambda *a, **k: False)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(SystemExit) as exit_info:
    compare.main(["--mnist-dir", str(empty), "--data-dir", str(tmp_path / "tfds"),
                  "--out", str(tmp_path / "out"), "--no-progress"])
  assert exit_info.value.code == 2
  assert "JAXLOSS_MNIST_DIR" in capsys.readouterr().err


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_resume_and_refused_change(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["--quick", "--out", str(out), "--no-progress"]
  summary = compare.main(argv)
  printed = capsys.readouterr().out
  assert "device: CPU" in printed
  assert {p.name for p in out.iterdir()} >= {
      "metrics.jsonl", "summary.csv", "summary.md", "summary.json", "curves.png", "config.json"}

  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == (2 + 1) * 2 * 2  # (losses + selected losses) x seeds x epochs
  selected = "selected-balanced_sigmoid_difference"  # --quick's second table
  assert {r["variant"] for r in rows} == {*compare.DEFAULT_LOSSES, selected}
  assert {r["variant"] for r in rows if r["split"] == "validation"} == {selected}
  for r in rows:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
    assert r["wall_seconds"] >= r["epoch_seconds"] > 0

  saved = json.loads((out / "summary.json").read_text())
  ce, sd = (saved["variants"][n] for n in compare.DEFAULT_LOSSES)
  assert ce["selected"] == {"lr": 1e-3} and len(ce["test"]["test_accuracy"]) == 2
  assert min(ce["test"]["test_accuracy"]) > 0.5  # it learned something in 2 tiny epochs
  last = [r["test_accuracy"] for r in rows
          if r["variant"] == "softmax_cross_entropy" and r["epoch"] == 2]
  np.testing.assert_allclose(ce["test"]["test_accuracy"], last, rtol=1e-6)
  assert [r["loss"] for r in saved["rows"]] == list(compare.DEFAULT_LOSSES)
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", saved["verdict"])) <= 3  # sentences
  assert "softmax_cross_entropy vs sigmoid_difference: +" in saved["verdict"]
  assert "With the rate selected on validation (2 seeds, 2 epochs): " \
         "balanced_sigmoid_difference " in saved["verdict"]
  bsd = saved["variants"][selected]
  assert bsd["selected"] == {"lr": 3e-3} and len(bsd["test"]["test_accuracy"]) == 2
  assert [r["loss"] for r in saved["selected_rows"]] == ["balanced_sigmoid_difference"]
  md = (out / "summary.md").read_text()
  assert "### With the learning rate selected on validation" in md
  assert f"| {selected} | lr 0.003 | lr 0.003: " in md  # the harness's selection table
  with open(out / "summary.csv") as f:
    assert [r["variant"] for r in csv.DictReader(f)] == [*compare.DEFAULT_LOSSES, selected]
  config = json.loads((out / "config.json").read_text())
  assert config["settings"]["seeds"] == [0, 1] and config["settings"]["hidden"] == [32]
  assert config["environment"]["versions"]["jax"] == jax.__version__
  assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  again = compare.main(argv)  # finished runs are read back, not retrained
  assert again["variants"]["softmax_cross_entropy"]["test"] == summary["variants"][
      "softmax_cross_entropy"]["test"]
  before = (out / "config.json").read_text()
  with pytest.raises(SystemExit) as exit_info:
    compare.main([*argv, "--epochs", "3"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("error: ") and "epochs is 2 there, 3 here" in err[-1]
  assert (out / "config.json").read_text() == before  # a refused resume overwrites nothing
