"""experiments.compare: the headline CLI end to end (tiny config) and its pieces."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from experiments import common, compare


def test_parse_seeds_and_ints():
  assert common.parse_seeds("3") == (0, 1, 2)
  assert common.parse_seeds("4,9") == (4, 9)
  assert common.parse_ints("512,512") == (512, 512)
  assert common.parse_ints("") == ()
  with pytest.raises(Exception, match="distinct"):
    common.parse_seeds("1,1")
  with pytest.raises(Exception, match="integers"):
    common.parse_ints("a,b")


def test_positive_flag_types():
  assert common.positive_int("3") == 3 and common.positive_float("1e-3") == 1e-3
  assert common.parse_learning_rates("1e-3,3e-3") == (1e-3, 3e-3)
  for bad in ("0", "-1", "1.5", "x"):
    with pytest.raises(argparse.ArgumentTypeError):
      common.positive_int(bad)
  for bad in ("nan", "inf", "-inf", "0", "-1e-3", "x"):
    with pytest.raises(argparse.ArgumentTypeError):
      common.positive_float(bad)
  for bad in ("1e-3,nan", "inf", "0,1e-3", "-1"):
    with pytest.raises(argparse.ArgumentTypeError, match="finite numbers > 0"):
      common.parse_learning_rates(bad)


def test_mean_std_and_first_crossing():
  assert common.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
  assert common.mean_std([5.0]) == (5.0, 0.0)
  assert common.first_crossing([90, 97.5, 98.2], 98.0) == 2
  assert common.first_crossing([90, 91], 98.0) is None


def test_diagnose_shows_vanishing_gradient_of_sigmoid_difference():
  """A confidently wrong output: sigmoid-difference gives ~0 gradient, cross-entropy ~sqrt(2)."""
  logits_NxC = jnp.array([[-20.0, 20.0, -20.0], [20.0, -20.0, -20.0]])  # wrong, then right
  labels_N = jnp.array([0, 0])
  ce = compare.diagnose(jaxloss.get("ce"), logits_NxC[None], labels_N)
  sd = compare.diagnose(jaxloss.get("sigmoid_difference"), logits_NxC[None], labels_N)
  assert ce["test_error"][0] == sd["test_error"][0] == 0.5
  np.testing.assert_allclose(ce["wrong_grad_norm_median"], [math.sqrt(2.0)], rtol=1e-4)
  assert sd["wrong_grad_norm_median"][0] < 1e-7
  assert sd["wrong_tiny_grad_share"][0] == 1.0 and ce["wrong_tiny_grad_share"][0] == 0.0
  np.testing.assert_allclose(sd["wrong_true_prob_mean"], [jax.nn.sigmoid(-20.0)], rtol=1e-4)


def _fake_result(acc_ExS, seconds=2.0):
  history = []
  for e, acc in enumerate(acc_ExS, start=1):
    acc = np.asarray(acc, np.float64)
    history.append({"epoch": e, "seconds": seconds, "wall_seconds": seconds * e,
                    "compile_seconds": 1.5 if e == 1 else 0.0, "test_accuracy": acc,
                    "train_accuracy": acc, "train_loss": 1 - acc, "test_nll": 1 - acc,
                    "test_ece": 0.01 + 0 * acc, "test_confidence": acc})
  diagnostics = {k: np.array([0.1, 0.2]) for k in (
      "test_error", "wrong_grad_norm_median", "wrong_tiny_grad_share", "true_prob_mean",
      "wrong_true_prob_mean", "top_prob_mean")}
  return {"history": history, "diagnostics": diagnostics}


def test_summarize_crossings():
  result = _fake_result([[0.96, 0.975], [0.979, 0.981], [0.985, 0.979]])
  row = compare.summarize("x", result, seeds=(0, 1))
  assert row["final_acc_mean"] == pytest.approx(98.2)
  assert row["best_acc_mean"] == pytest.approx((98.5 + 98.1) / 2)
  assert row["reached_97"] == 2 and row["epochs_to_97"] == pytest.approx(1.5)
  assert row["seconds_to_97"] == pytest.approx(3.0)
  assert row["reached_98"] == 2 and row["epochs_to_98"] == pytest.approx(2.5)
  assert row["compile_seconds"] == 1.5 and row["train_seconds"] == 6.0
  never = compare.summarize("y", _fake_result([[0.5, 0.975]]), seeds=(0, 1))
  assert never["reached_98"] == 0 and math.isnan(never["epochs_to_98"])
  config = {"train_examples": 10, "test_examples": 5, "model": "m", "optimizer": "adam",
            "lr": 1e-3, "schedule": "cosine", "batch_size": 2, "epochs": 1, "seeds": [0, 1],
            "device": "CPU"}
  text = compare.summary_markdown([row, never], config)
  assert "| never |" in text and "(1/2 seeds)" in text


def test_unknown_loss_lists_valid_names(tmp_path):
  with pytest.raises(SystemExit, match="softmax_cross_entropy"):
    compare.main(["--losses", "nope", "--out", str(tmp_path)])


@pytest.mark.parametrize("argv, flag", [
    (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "-inf"], "--lr"),
    (["--lr", "0"], "--lr"), (["--lr", "-1e-3"], "--lr"), (["--lr", "abc"], "--lr"),
    (["--epochs", "0"], "--epochs"), (["--epochs", "-2"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_training_flags_are_refused_before_any_data(argv, flag, tmp_path, capsys,
                                                        monkeypatch):
  def no_data(*args, **kwargs):
    raise AssertionError("MNIST was loaded despite a bad flag")

  monkeypatch.setattr("jaxloss.train.load_mnist", no_data)
  with pytest.raises(SystemExit) as exit_info:
    compare.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("python -m experiments.compare: error: argument " + flag)
  assert not (tmp_path / "out").exists()


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
  last = done.stderr.strip().splitlines()[-1]
  assert last == ("python -m experiments.compare: error: argument --lr: must be a finite number "
                  "> 0, got 'nan'")
  assert done.stdout == "" and not (tmp_path / "out").exists()


def test_missing_mnist_fails_fast_with_advice(tmp_path, monkeypatch):
  monkeypatch.setattr("jaxloss.train.data._host_reachable", lambda *a, **k: False)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(SystemExit, match="JAXLOSS_MNIST_DIR"):
    compare.main(["--mnist-dir", str(empty), "--data-dir", str(tmp_path / "tfds"),
                  "--out", str(tmp_path / "out"), "--no-progress"])


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_tiny(tmp_path, mnist_dir, capsys):
  out = tmp_path / "run"
  result = compare.main([
      "--mnist-dir", mnist_dir, "--epochs", "2", "--seeds", "2", "--hidden", "32",
      "--train-subset", "2048", "--test-subset", "500", "--out", str(out), "--no-progress"])
  printed = capsys.readouterr().out
  assert "device: CPU" in printed
  assert {p.name for p in out.iterdir()} >= {
      "metrics.jsonl", "summary.csv", "summary.md", "curves.png", "config.json"}

  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert len(rows) == 2 * 2 * 2  # losses x seeds x epochs
  assert {r["loss"] for r in rows} == set(compare.DEFAULT_LOSSES)
  for r in rows:
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["train_loss"])
    assert r["test_error"] == pytest.approx(1 - r["test_accuracy"])
    assert r["wall_seconds"] >= r["epoch_seconds"] > 0
  ce = [r["test_accuracy"] for r in rows if r["loss"] == "softmax_cross_entropy"]
  assert min(ce) > 0.5  # it learned something in 2 tiny epochs

  with open(out / "summary.csv") as f:
    summary = list(csv.DictReader(f))
  assert [s["loss"] for s in summary] == list(compare.DEFAULT_LOSSES)
  for s in summary:
    assert 0.0 < float(s["final_acc_mean"]) <= 100.0 and s["seeds"] == "2"
  md = (out / "summary.md").read_text()
  assert "softmax_cross_entropy" in md and "sigmoid_difference" in md

  config = json.loads((out / "config.json").read_text())
  assert config["seeds"] == [0, 1] and config["hidden"] == [32]
  assert config["environment"]["versions"]["jax"] == jax.__version__
  assert config["environment"]["device"]["platform"] == "cpu"
  assert config["train_examples"] == 2048 and config["test_examples"] == 500
  assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert len(result["rows"]) == 2
