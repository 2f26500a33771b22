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
from experiments import compare, harness, protocol, runs
from _experiments import refusal


def test_diagnose_shows_vanishing_gradient_of_sigmoid_difference():
  """A confidently wrong output: sigmoid-difference gives ~0 gradient, cross-entropy ~sqrt(2)."""
  logits_NxC = jnp.array([[-20.0, 20.0, -20.0], [20.0, -20.0, -20.0]])  # wrong, then right
  labels_N = jnp.array([0, 0])
  ce = compare.diagnose(jaxloss.get("ce"), logits_NxC, labels_N)
  sd = compare.diagnose(jaxloss.get("sigmoid_difference"), logits_NxC, labels_N)
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
  assert len(rows) == 2 * 2 * 2  # losses x seeds x epochs
  assert {r["variant"] for r in rows} == set(compare.DEFAULT_LOSSES)
  assert {r["split"] for r in rows} == {"test"}
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
  with open(out / "summary.csv") as f:
    assert [r["variant"] for r in csv.DictReader(f)] == list(compare.DEFAULT_LOSSES)
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
