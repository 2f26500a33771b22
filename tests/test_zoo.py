"""experiments.zoo: every multi-class loss on MNIST; pure pieces, figures, the CLI end to end."""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import pytest

from experiments import runs, zoo

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- CLI pieces


def test_parse_models():
  assert zoo.parse_models("512,512;800") == ((512, 512), (800,))
  assert zoo.parse_models(" 32 ") == ((32,),)
  for bad, match in (("512;512", "twice"), ("512;", "separated"), ("a;b", "integers"),
                     ("0", "positive")):
    with pytest.raises(argparse.ArgumentTypeError, match=match):
      zoo.parse_models(bad)


def test_model_names_tags_and_params():
  assert zoo.model_name((512, 512)) == "784-512-512-10"
  assert zoo.model_name((800,)) == "784-800-10"
  assert zoo.model_tag((512, 512)) == "h512x512" and zoo.model_tag(()) == "h0"
  assert zoo.num_params((512, 512)) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
  assert zoo.num_params((800,)) == 784 * 800 + 800 + 800 * 10 + 10
  assert zoo.num_params(()) == 7850


def resolve(argv):
  parser = zoo.build_parser()
  return zoo._resolve(parser.parse_args(argv), parser)  # pylint: disable=protected-access


def test_defaults_and_quick_resolution():
  import jaxloss

  args = resolve([])
  assert args.models == ((512, 512), (800,))
  assert set(args.losses) == set(jaxloss.multiclass()) and len(args.losses) == 19
  assert args.losses[0] == zoo.BASELINE  # the reference trains first
  assert (args.epochs, args.select_epochs, args.val_size) == (10, 1, 10000)
  assert args.lrs == runs.ADAM_LR_GRID and args.seeds == (0, 1, 2)
  quick = resolve(["--quick"])
  assert quick.models == ((32,),) and quick.losses == zoo.QUICK_LOSSES
  assert (quick.train_subset, quick.test_subset, quick.epochs) == (2048, 512, 2)
  assert quick.lrs == (3e-3,) and quick.seeds == (0, 1) and quick.val_size == 512
  # --quick only replaces what was left at its default.
  mixed = resolve(["--quick", "--lrs", "1e-3,3e-3", "--losses", "mnist_loss,CE",
                   "--models", "8;16", "--epochs", "3"])
  assert mixed.lrs == (1e-3, 3e-3) and mixed.epochs == 3
  assert mixed.losses == ("softmax_cross_entropy", "sigmoid_difference")
  assert mixed.models == ((8,), (16,))


@pytest.mark.parametrize("argv, match", [
    (["--losses", "nope"], "Valid names"),
    (["--losses", "multilabel_bce"], "not a single-label"),
    (["--losses", "ce,softmax_cross_entropy"], "each once"),
    (["--epochs", "0"], "positive"),
    (["--lrs", "1e-3,1e-3"], "distinct"),
])
def test_bad_arguments_exit_with_a_message(argv, match, capsys):
  with pytest.raises(SystemExit):
    resolve(argv)
  assert match in capsys.readouterr().err


def test_budget_estimate_explains_the_select_epochs_default():
  import jaxloss

  kwargs = dict(models=zoo.parse_models(zoo.DEFAULT_MODELS),
                n_losses=len(jaxloss.multiclass()), n_lrs=3, seeds=3, epochs=10)
  default = zoo.estimate_seconds(select_epochs=zoo.DEFAULTS["select_epochs"], **kwargs)
  assert default["total"] <= 45 * 60 < zoo.estimate_seconds(select_epochs=3, **kwargs)["total"]
  # 19 x 2 final runs of 10 epochs at about 5.2 s per 3-seed epoch, plus compilation.
  assert 30 * 60 < default["final"] < 36 * 60
  single = zoo.estimate_seconds(models=((32,),), n_losses=3, n_lrs=1, seeds=2, epochs=2,
                                select_epochs=1, n_train=2048, val_size=512)
  assert single["select"] == 0.0 and single["total"] == pytest.approx(single["final"])


# --------------------------------------------------------------------------- run summaries


def fake_result(acc_SxE, *, diverged=None, status="done", run_id="r", wall=12.0):
  """A `runs.RunResult` with one row per (seed, epoch); acc in [0, 1]; None = no row."""
  diverged = diverged or {}
  rows = []
  for seed, accs in enumerate(acc_SxE):
    for epoch, acc in enumerate(accs, start=1):
      if acc is None:
        continue
      row = {"run": run_id, "seed": seed, "epoch": epoch, "test_accuracy": acc,
             "test_nll": 1.0 - acc, "test_ece": 0.02 * (seed + 1), "test_confidence": acc,
             "train_loss": 0.1, "epoch_seconds": 1.0, "wall_seconds": float(epoch),
             "compile_seconds": 2.5 if epoch == 1 else 0.0}
      if diverged.get(seed) == epoch:
        row["diverged"] = True
        row["train_loss"] = math.nan
      rows.append(row)
  rows.sort(key=lambda r: (r["epoch"], r["seed"]))
  return runs.RunResult(run_id, status, rows, dict(diverged), wall, 0)


def test_summarize_run_against_numpy():
  result = fake_result([[0.95, 0.979, 0.982], [0.97, 0.985, 0.983], [0.90, 0.95, 0.97]])
  s = zoo.summarize_run(result, epochs=3)
  final_err = np.array([1.8, 1.7, 3.0])
  assert s["error"] == pytest.approx(final_err.tolist())
  assert s["error_mean"] == pytest.approx(final_err.mean())
  assert s["error_std"] == pytest.approx(final_err.std(ddof=1))
  assert s["epochs_to"] == [3, 2, None]
  assert zoo.crossing_text(s["epochs_to"]) == "2.5 (2/3 seeds)"
  assert s["ece_mean"] == pytest.approx(100 * np.mean([0.02, 0.04, 0.06]))
  assert s["nll_mean"] == pytest.approx(np.mean(1 - np.array([0.982, 0.983, 0.97])))
  assert s["error_curve"] == pytest.approx(
      (100 - 100 * np.array([[0.95, 0.97, 0.90], [0.979, 0.985, 0.95],
                             [0.982, 0.983, 0.97]]).mean(axis=1)).tolist())
  assert s["status"] == "done" and s["n_diverged"] == 0 and s["compile_seconds"] == 2.5
  assert s["wall_seconds"] == 12.0


def test_summarize_run_masks_diverged_seeds():
  # Seed 1 diverges at epoch 2: its epoch-2 row exists (with a bogus accuracy) but
  # must count as missing, as must every later epoch.
  result = fake_result([[0.9, 0.95, 0.97], [0.9, 0.99, None]], diverged={1: 2})
  s = zoo.summarize_run(result, epochs=3)
  assert s["error"][0] == pytest.approx(3.0) and s["error"][1] is None
  assert s["epochs_to"] == [None, None] and s["n_diverged"] == 1
  assert s["error_mean"] == pytest.approx(3.0) and s["error_std"] == 0.0
  assert zoo.failed(s)
  # A run whose every seed diverged at epoch 1 is padded with NaN to the full length.
  dead = zoo.summarize_run(fake_result([[0.1], [0.1]], diverged={0: 1, 1: 1},
                                       status="diverged"), epochs=4)
  assert dead["error"] == [None, None] and math.isnan(dead["error_mean"])
  assert dead["error_curve"] == [None] * 4 and zoo.crossing_text(dead["epochs_to"]) == "never"


def test_crossing_text():
  assert zoo.crossing_text([3, 4, 5]) == "4.0"
  assert zoo.crossing_text([None, None]) == "never"
  assert zoo.crossing_text([2, None]) == "2.0 (1/2 seeds)"


# --------------------------------------------------------------------------- verdict


def entry(mean, std, *, n_diverged=0, seeds=3, status="done"):
  return {"error_mean": mean, "error_std": std, "n_diverged": n_diverged,
          "seeds": list(range(seeds)), "status": status, "diverged": {}}


def test_classify_rule():
  assert zoo.classify(1.60, 0.05, 1.50, 0.04) == "within noise"   # 0.10 <= 2 * 0.05
  assert zoo.classify(1.61, 0.05, 1.50, 0.04) == "clearly worse"
  assert zoo.classify(1.30, 0.02, 1.50, 0.05) == "clearly better"
  assert zoo.classify(1.50, 0.0, 1.50, 0.0) == "within noise"
  assert zoo.classify(1.0, 0.0, 1.5, 0.0, is_failed=True) == "fails"
  assert zoo.failed(entry(10.0, 0.0)) and not zoo.failed(entry(9.99, 1.0))
  assert zoo.failed(entry(1.5, 0.1, n_diverged=1)) and zoo.failed(entry(math.nan, math.nan))


def test_model_verdict_and_reference_fallback():
  entries = {"softmax_cross_entropy": entry(1.50, 0.05), "brier_score": entry(1.58, 0.03),
             "ovr_hinge": entry(2.10, 0.05), "poly1_cross_entropy": entry(1.20, 0.02),
             "sigmoid_difference": entry(88.66, 0.0), "ovr_exponential": entry(1.7, 0.1,
                                                                              n_diverged=1)}
  v = zoo.model_verdict(entries)
  assert v["reference"] == "softmax_cross_entropy"
  assert v["classes"] == {"softmax_cross_entropy": "reference", "brier_score": "within noise",
                          "ovr_hinge": "clearly worse", "poly1_cross_entropy": "clearly better",
                          "sigmoid_difference": "fails", "ovr_exponential": "fails"}
  assert v["delta"]["ovr_hinge"] == pytest.approx(0.60)
  # Without a working cross-entropy the best working loss is the reference.
  no_ce = {"brier_score": entry(1.58, 0.03), "ovr_hinge": entry(2.10, 0.05),
           "softmax_cross_entropy": entry(50.0, 1.0)}
  assert zoo.model_verdict(no_ce)["reference"] == "brier_score"
  assert zoo.model_verdict({"a": entry(90.0, 0.0)})["reference"] is None


def two_models():
  m1 = {"softmax_cross_entropy": entry(1.50, 0.05), "brier_score": entry(1.58, 0.03),
        "ovr_hinge": entry(2.10, 0.05), "sigmoid_difference": entry(88.66, 0.0)}
  m2 = {"softmax_cross_entropy": entry(1.70, 0.04), "brier_score": entry(1.65, 0.05),
        "ovr_hinge": entry(2.30, 0.06), "sigmoid_difference": entry(88.66, 0.0)}
  return [{"name": "784-512-512-10", "hidden": [512, 512], "entries": m1,
           "verdict": zoo.model_verdict(m1)},
          {"name": "784-800-10", "hidden": [800], "entries": m2,
           "verdict": zoo.model_verdict(m2)}]


def test_verdict_wording_for_fixed_numbers():
  text = zoo.verdict_text(two_models(), epochs=10)
  assert "\n" not in text and "|" not in text  # one paragraph; safe in a table cell
  assert text.startswith("784-512-512-10: softmax_cross_entropy ends at 1.50 ± 0.05% test "
                         "error after 10 epochs; within noise of it")
  assert "brier_score (1.58 ± 0.03%)" in text
  assert "clearly worse: ovr_hinge (+0.60 points)" in text
  assert "fail (a diverged seed, or 10% test error or more): sigmoid_difference (88.7% error)" \
      in text
  assert ("In every model, within noise of the reference: brier_score; clearly worse: ovr_hinge; "
          "failing: sigmoid_difference.") in text
  # 1.70 vs the published 1.6: 0.10 points above, more than 2 x 0.04.
  assert "784-800-10 cross-entropy MLP here (1.70 ± 0.04% after 10 epochs" in text
  assert "0.10 points above the 1.6% published" in text
  close = two_models()
  close[1]["entries"]["softmax_cross_entropy"] = entry(1.62, 0.05)
  close[1]["verdict"] = zoo.model_verdict(close[1]["entries"])
  assert "is about the same as the 1.6% published" in zoo.verdict_text(close, epochs=10)
  quick = zoo.verdict_text(two_models()[:1], epochs=2, quick=True)
  assert quick.startswith("(Quick mode") and "In every model" not in quick
  assert "784-800-10 cross-entropy" not in quick


def test_json_ready_makes_strict_json():
  obj = {"a": math.nan, "b": [1.0, math.inf, np.float32(2.5)], "c": (np.int64(3), None)}
  out = zoo.json_ready(obj)
  assert out == {"a": None, "b": [1.0, None, 2.5], "c": [3, None]}
  json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------- report and figures


def fake_summary(losses):
  rng = np.random.default_rng(0)
  models = []
  for hidden in ((512, 512), (800,)):
    entries, selection, chosen = {}, {}, {}
    for i, name in enumerate(losses):
      mean = 1.4 + 0.1 * i if name != "sigmoid_difference" else 88.66
      curve = [mean * (4 - e) for e in range(3)]
      entries[name] = {**entry(mean, 0.05), "epochs_to": [2, 3, None], "ece_mean": 1.0,
                       "ece_std": 0.1, "nll_mean": 0.06, "nll_std": 0.01,
                       "confidence_mean": 0.99, "wall_seconds": 52.0, "select_seconds": 14.0,
                       "error_curve": curve, "lr": 1e-3}
      selection[name] = [{"lr": lr, "score": float(rng.uniform(0.9, 0.99)), "std": 0.0,
                          "status": "done", "run_id": f"x-{lr:g}"} for lr in (3e-4, 1e-3)]
      selection[name].append({"lr": 3e-3, "score": -math.inf, "std": math.nan,
                              "status": "diverged", "run_id": "x-0.003"})
      chosen[name] = 1e-3
    models.append({"name": zoo.model_name(hidden), "hidden": list(hidden), "entries": entries,
                   "selection": selection, "lrs": chosen,
                   "verdict": zoo.model_verdict(entries)})
  est = {"select": 500.0, "final": 2000.0, "total": 2500.0}
  settings = {"quick": False, "losses": list(losses), "lrs": [3e-4, 1e-3, 3e-3], "epochs": 3,
              "select_epochs": 1, "select_seeds": [0], "seeds": [0, 1, 2], "batch_size": 128,
              "val_size": 10000, "train_examples": 60000, "test_examples": 10000,
              "device": "CPU (cpu)", "estimate_default_seconds": est,
              "estimate_default_seconds_select3": {**est, "total": 2900.0},
              "estimate_seconds": est, "default_losses": list(losses),
              "command": "python -m experiments.zoo"}
  return {"settings": settings, "models": models, "wall_seconds": 100.0, "train_seconds": 90.0,
          "verdict": zoo.verdict_text(models, epochs=3)}


def test_summary_markdown_sections_and_tables():
  import jaxloss

  losses = [zoo.BASELINE] + [n for n in jaxloss.multiclass() if n != zoo.BASELINE]
  summary = fake_summary(losses)
  md = zoo.summary_markdown(summary)
  assert md.startswith("## How does every classification loss compare on full MNIST?")
  assert "### 784-512-512-10 ReLU MLP" in md and "### 784-800-10 ReLU MLP" in md
  assert "![test error vs epoch, every loss, one panel per model](curves.png)" in md
  assert "(final_error.png)" in md and "**Verdict.** " + summary["verdict"] in md
  assert "Simard, Steinkraus & Platt, ICDAR 2003" in md and "JMLR 15 (2014)" in md
  assert "| **this run**: 784-800-10 ReLU, softmax_cross_entropy |" in md
  assert "784-800-10 lr 0.003" in md and "| diverged |" in md
  chosen = summary["models"][0]["selection"][zoo.BASELINE][1]  # lr 1e-3, the chosen one
  assert f"**{100 * chosen['score']:.2f}**" in md
  assert "Divergence: no final run diverged; selection runs: " in md
  table_rows = [line for line in md.splitlines() if line.startswith("| brier_score |")]
  assert len(table_rows) == 3  # two result tables and the selection table


def test_figures_are_pngs(tmp_path):
  import jaxloss

  losses = [zoo.BASELINE] + [n for n in jaxloss.multiclass() if n != zoo.BASELINE]
  summary = fake_summary(losses)
  curves, finals = tmp_path / "curves.png", tmp_path / "final_error.png"
  zoo.plot_curves(summary["models"], losses, str(curves))
  zoo.plot_final_errors(summary["models"], str(finals))
  assert curves.read_bytes()[:8] == PNG and finals.read_bytes()[:8] == PNG


# --------------------------------------------------------------------------- end to end


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_resumed(tmp_path, mnist_dir, capsys):
  out = tmp_path / "zoo"
  # Every run costs ~4-5 CPU seconds of compilation: one loss and two rates (2 selection
  # runs + 1 final run) cover both stages within the test's time budget.
  argv = ["--quick", "--lrs", "1e-3,3e-3", "--losses", "ce",
          "--mnist-dir", mnist_dir, "--out", str(out), "--no-progress"]
  first = zoo.main(argv)
  printed = capsys.readouterr().out
  assert "device: CPU" in printed and "**Verdict.**" in printed

  assert {p.name for p in out.iterdir()} >= {
      "config.json", "metrics.jsonl", "summary.md", "summary.json", "curves.png",
      "final_error.png", "runs"}
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  # 1 loss x 1 model: selection 2 rates x 1 seed x 1 epoch, final 2 seeds x 2 epochs.
  assert len(rows) == 2 * 1 * 1 + 2 * 2
  assert {r["stage"] for r in rows} == {"select", "final"}
  assert {r["loss"] for r in rows} == {"softmax_cross_entropy"}
  for r in rows:
    assert {"run", "seed", "epoch", "lr", "model", "hidden", "test_accuracy", "test_nll",
            "test_ece", "train_loss"} <= set(r)
    assert r["model"] == "784-32-10" and r["run"].startswith("h32-")
    assert ("-select-" in r["run"]) == (r["stage"] == "select")
    assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["test_nll"])
  ce_final = [r["test_accuracy"] for r in rows
              if r["loss"] == "softmax_cross_entropy" and r["stage"] == "final"]
  assert min(ce_final) > 0.5  # it learned something

  summary = json.loads((out / "summary.json").read_text())
  (model,) = summary["models"]
  assert set(model["lrs"]) == {"softmax_cross_entropy"}
  assert all(lr in (1e-3, 3e-3) for lr in model["lrs"].values())
  for name, e in model["entries"].items():
    assert len(e["error"]) == 2 and len(e["error_curve"]) == 2
    assert all(math.isfinite(x) for x in e["error"]) and e["wall_seconds"] > 0
    assert len(model["selection"][name]) == 2
  assert set(model["verdict"]["classes"].values()) <= {
      "reference", "within noise", "clearly worse", "clearly better", "fails"}
  config = json.loads((out / "config.json").read_text())
  assert config["settings"]["chosen_lrs"] == {"784-32-10": model["lrs"]}
  assert config["environment"]["device"]["platform"] == "cpu"
  assert config["settings"]["train_examples"] == 2048
  md = (out / "summary.md").read_text()
  assert md.startswith("## ") and "(quick mode)" in md and "**Verdict.**" in md
  for path in first["figures"]:
    assert os.path.isabs(path) and open(path, "rb").read(8) == PNG
  assert first["summary_md"] == md and first["wall_seconds"] > 0

  # A second call with the same --out retrains nothing: every run is read back.
  run_files = sorted((out / "runs").glob("*/*.json")) + sorted((out / "runs").glob("*/*.jsonl"))
  assert len(run_files) == 3 * 3 and not list((out / "runs").glob("*/ckpt"))
  stamps = {p: p.stat().st_mtime_ns for p in run_files}
  second = zoo.main(argv)
  assert {p: p.stat().st_mtime_ns for p in run_files} == stamps
  assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == rows
  assert second["summary"]["train_seconds"] == first["summary"]["train_seconds"]
  assert second["summary"]["verdict"] == first["summary"]["verdict"]
  assert second["summary"]["chosen_lrs"] == first["summary"]["chosen_lrs"]
