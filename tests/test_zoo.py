"""experiments.zoo on the harness: its pieces, its refusals, and the CLI end to end (tiny)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from experiments import harness, protocol, runs, zoo
from _experiments import refusal  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
N_TEST = 10000


def test_parse_models_tags_and_names():
  assert zoo.parse_models("512,512;800") == ((512, 512), (800,))
  assert zoo.parse_models(" 32 ") == ((32,),)
  for bad in ("512;512", "a;b", "0", "800;-1"):
    with pytest.raises(ValueError, match="must be distinct ';'-separated lists"):
      zoo.parse_models(bad)
  assert zoo.Settings(models="512,512;800").mlps == ((512, 512), (800,))
  assert zoo.tag((512, 512)) == "h512x512" and zoo.tag((800,)) == "h800" and zoo.tag(()) == "h0"
  assert zoo.model_name((800,)) == "784-800-10" and zoo.OURS == "h800-softmax_cross_entropy"


def _fake_outcome(name, acc_S, diverged=None, params=None, point=None):
  """An Outcome whose seed s gets the first ``acc_S[s] * N_TEST`` test examples right
  (two epochs of validation rows: 0.5, then its mean accuracy)."""
  correct_SxN = np.arange(N_TEST)[None, :] < np.round(np.asarray(acc_S) * N_TEST)[:, None]
  rows = [{"seed": s, "epoch": e, "test_accuracy": a} for e, a in ((1, 0.5), (2, np.mean(acc_S)))
          for s in range(len(acc_S))]
  test = {"test_accuracy": correct_SxN.mean(axis=1), "correct": correct_SxN,
          "test_ece": np.full(len(acc_S), 0.01), "test_nll": np.full(len(acc_S), 0.05),
          "test_confidence": np.full(len(acc_S), 0.99)}
  result = runs.RunResult(name, "done", rows, dict(diverged or {}), 1.0, 0,
                          [{"seed": s} for s in range(len(acc_S))], test)
  selected = protocol.Selected({"lr": 1e-3, **(point or {})}, [], [], result, [result])
  variant = harness.Variant(name, loss_fn=None, params=params or {},
                            describe={"loss": name.split("-", 1)[1]})
  return harness.Outcome(variant, selected)


def _outcomes():
  ce = [0.985, 0.986, 0.984]
  out = {}
  for h, shift in (("h512x512", 0.0), ("h800", -0.001)):
    accs = {"softmax_cross_entropy": ce, "brier_score": ce,  # the same models: equivalent
            "ovr_tangent": [a - 0.01 for a in ce], "label_smoothing_cross_entropy":
            [a + 0.003 for a in ce], "sigmoid_difference": [0.3, 0.25, 0.35],
            "ovr_exponential": ce}
    for loss, acc in accs.items():
      smoothing = loss == "label_smoothing_cross_entropy"
      out[f"{h}-{loss}"] = _fake_outcome(
          f"{h}-{loss}", [a + shift for a in acc], {1: 4} if loss == "ovr_exponential" else None,
          zoo.GRIDS[loss] if smoothing else None, {"alpha": 0.2} if smoothing else None)
  return out


def test_verdicts_classes_and_one_holm_family():
  s = zoo.Settings(models="512,512;800")
  classes, by_name = zoo.verdicts(s, _outcomes())
  for h in ("h512x512", "h800"):
    assert {loss: classes[f"{h}-{loss}"] for loss in (
        "softmax_cross_entropy", "brier_score", "ovr_tangent", "label_smoothing_cross_entropy",
        "sigmoid_difference", "ovr_exponential")} == {
            "softmax_cross_entropy": "reference", "brier_score": "equivalent",
            "ovr_tangent": "worse", "label_smoothing_cross_entropy": "better",
            "sigmoid_difference": "fails",  # 70% test error
            "ovr_exponential": "fails"}  # a diverged seed
  assert set(by_name) == {f"{h}-{loss}" for h in ("h512x512", "h800")
                          for loss in ("brier_score", "ovr_tangent",
                                       "label_smoothing_cross_entropy")}
  assert all(c.b == c.a.split("-")[0] + "-softmax_cross_entropy" for c in by_name.values())
  worse = by_name["h800-ovr_tangent"]
  assert worse.interval.mean == pytest.approx(-1.0) and worse.test == "mcnemar"
  # Holm over the 6 pairs of both MLPs together: the smallest raw p is multiplied by 6.
  smallest = min(by_name.values(), key=lambda c: c.p_value)
  assert smallest.p_holm == pytest.approx(min(1.0, 6 * smallest.p_value))
  loose = zoo.verdicts(zoo.Settings(models="512,512;800", fail_error=80.0), _outcomes())[0]
  assert loose["h800-sigmoid_difference"] == "worse" and loose["h800-ovr_exponential"] == "fails"


def test_report_fields_tables_and_figure(tmp_path):
  s = zoo.Settings(models="512,512;800")
  outcomes = _outcomes()
  rep = zoo.report(s, outcomes)
  assert len(re.findall(r"[A-Za-z%)]\.(?:\s|$)", rep.verdict)) <= 3  # sentences
  assert "Holm over 6 pairs" in rep.verdict
  assert "worse h512x512-ovr_tangent -1.00 (-1.00 to -1.00)" in rep.verdict
  assert "h800-sigmoid_difference (70.1% error)" in rep.verdict
  assert "784-800-10 cross-entropy MLP ends at 1.60 ± 0.10% test error, against 1.6%" \
      in rep.verdict
  assert rep.headline == ("10 (MLP, loss) pairs vs cross-entropy: 2 equivalent, 2 better, "
                          "2 worse, 0 inconclusive; fail: ovr_exponential, sigmoid_difference.")
  assert len(rep.headline.split()) <= 40
  summary = json.loads(json.dumps(rep.summary))
  assert summary["reference"] == "softmax_cross_entropy" and len(summary["comparisons"]) == 6
  assert summary["classes"]["h800-brier_score"] == "equivalent"
  assert summary["test_error"]["h800-softmax_cross_entropy"][0] == pytest.approx(1.6)
  assert [p[2] for p in summary["published"]] == [p[2] for p in zoo.PUBLISHED]
  md = rep.markdown
  assert "### 784-512-512-10 ReLU MLP" in md and "### 784-800-10 ReLU MLP" in md
  table = md.split("### 784-800-10 ReLU MLP")[1].split("###")[0]
  rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
  assert rows[0].startswith("| label_smoothing_cross_entropy | 0.001 | alpha 0.2 (upper edge of "
                            "0.05, 0.1, 0.2) | 1.30 ± 0.10 | 1.00 ± 0.00 | 0.050 ± 0.000 "
                            "| 0.990 ± 0.000 | better | +0.30 (+0.30 to +0.30), Holm p ")
  assert rows[-1].startswith("| sigmoid_difference | 0.001 | — | 70.10 ± 5.00 | 1.00 ± 0.00 ")
  assert rows[-1].endswith("| fails | — |")
  assert "Not run here, 17 of the registry's multi-class losses" in md  # the default's cut
  assert "ovr_hinge, ovr_logistic" in md and "selected on 10000 held-out" in md
  assert summary["hyperparams"]["h800-label_smoothing_cross_entropy"] == {
      "alpha": {"value": 0.2, "grid": [0.05, 0.1, 0.2], "where": "upper edge"}}
  assert summary["test_ece"]["h800-brier_score"][0] == pytest.approx(0.01)
  assert "![error per epoch of the selected models](curves.png)" in md  # drawn: the CLI test
  assert "| Simard, Steinkraus & Platt, ICDAR 2003" in md and "JMLR 15 (2014)" in md
  assert "| **this run**: 784-800-10 ReLU, cross-entropy | none (Adam, cosine, 3 epochs) " \
         "| 1.60 ± 0.10 | this experiment |" in md
  rep.figures["final_error.png"](str(tmp_path / "final_error.png"))
  assert (tmp_path / "final_error.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("argv, start", [
    (["--models", "512;512"], "error: --models: must be distinct"),
    (["--models", "a"], "error: --models: must be distinct"),
    (["--models", "0"], "error: --models: must be distinct"),
    (["--losses", "nope"], "error: Unknown loss 'nope'"),
    (["--losses", "multilabel_bce"], "error: --losses: 'multilabel_bce' is not"),
    (["--losses", "ce,ce"], "error: --losses: must be distinct"),
    (["--seeds", "1"], "error: --seeds: the paired verdicts need 2 seeds"),
    (["--fail-error", "101"], "error: --fail-error: must be a finite number in [0, 100]"),
    (["--epochs", "0"], "error: --epochs: must be"),
])
def test_bad_flags_are_one_line_exit_2_before_any_data(argv, start, tmp_path, capsys,
                                                       monkeypatch):
  assert refusal(zoo.main, argv, tmp_path, capsys, monkeypatch).startswith(start)


def test_variants_reference_first_once_and_all():
  import jaxloss

  names = [v.name for v in zoo.variants(zoo.Settings(losses=("brier", "ce"), models="8;16"))]
  assert names == ["h8-softmax_cross_entropy", "h8-brier_score",
                   "h16-softmax_cross_entropy", "h16-brier_score"]
  every = zoo.variants(zoo.Settings(models="800", losses=("all",)))
  assert [v.describe["loss"] for v in every] == ["softmax_cross_entropy"] + [
      n for n in jaxloss.multiclass() if n != "softmax_cross_entropy"]
  assert every[0].train == {"hidden": (800,)} and every[0].params == {}
  focal = next(v for v in every if v.describe["loss"] == "softmax_focal_loss")
  assert focal.params == {"gamma": (1.0, 2.0, 4.0)} and focal.loss_fn.args == (
      "softmax_focal_loss",)
  default = [v.describe["loss"] for v in zoo.variants(zoo.Settings())]
  assert default == 2 * list(zoo.DEFAULT_LOSSES) and zoo.Settings().epochs == 3
  assert not zoo.left_out(zoo.Settings(losses=("all",)))
  fixed = zoo.variants(zoo.Settings(val_size=0, lrs=(1e-3,)))  # nothing to select on
  assert [v.params for v in fixed] == [{}] * len(fixed)


def test_every_numeric_hyperparameter_has_a_grid_bracketing_its_default():
  """Issue #13: every loss hyperparameter is selected on validation, from a small grid with
  the library default inside it (not on an edge)."""
  import jaxloss

  for name in jaxloss.multiclass():
    numeric = {k: v for k, v in jaxloss.get(name).hyperparams.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    grid = zoo.GRIDS.get(name, {})
    assert set(grid) == set(numeric), name
    for key, values in grid.items():
      assert 2 <= len(values) <= 3 and min(values) < numeric[key] < max(values), (name, key)
      jaxloss.get(name, **{key: values[0]})  # a value the loss accepts


def test_chosen_hyperparameters_and_their_edge():
  grid = {"gamma": (1.0, 2.0, 4.0)}
  for value, where in ((1.0, "lower edge"), (2.0, "inside"), (4.0, "upper edge")):
    o = _fake_outcome("h8-softmax_focal_loss", [0.9, 0.9], params=grid, point={"gamma": value})
    assert zoo.chosen(o) == {"gamma": (value, where)}
  assert zoo.chosen(_fake_outcome("h8-brier_score", [0.9, 0.9])) == {}


@pytest.mark.mnist
@pytest.mark.usefixtures("mnist_loaded_once")
def test_cli_end_to_end_quick_and_read_back(tmp_path, capsys):
  out = tmp_path / "zoo"
  argv = ["--quick", "--out", str(out), "--no-progress"]
  first = zoo.main(argv)
  assert "device: CPU" in capsys.readouterr().out
  saved = json.loads((out / "summary.json").read_text())
  names = [f"h32-{loss}" for loss in zoo.QUICK_LOSSES]
  assert list(saved["variants"]) == names and set(saved["classes"]) == set(names)
  assert saved["classes"]["h32-softmax_cross_entropy"] == "reference"
  assert set(saved["classes"].values()) <= set(zoo.CLASSES)
  for name in names:
    variant = saved["variants"][name]
    assert variant["selected"]["lr"] == 3e-3 and len(variant["test"]["test_accuracy"]) == 2
    mean = 100 - 100 * np.mean(variant["test"]["test_accuracy"])
    assert saved["test_error"][name][0] == pytest.approx(mean)
  smoothing = saved["variants"]["h32-label_smoothing_cross_entropy"]  # alpha with the rate
  assert smoothing["selected"]["alpha"] in zoo.GRIDS["label_smoothing_cross_entropy"]["alpha"]
  assert len(smoothing["selection"]) == 3  # 1 rate x 3 alphas, one program
  assert set(saved["hyperparams"]) == {"h32-label_smoothing_cross_entropy"}
  assert min(saved["variants"]["h32-softmax_cross_entropy"]["test"]["test_accuracy"]) > 0.5
  compared = {c["a"] for c in saved["comparisons"]}
  assert compared == {n for n, c in saved["classes"].items() if c not in ("reference", "fails")}
  assert all(c["b"] == "h32-softmax_cross_entropy" for c in saved["comparisons"])
  assert saved["settings"]["models"] == "32" and saved["settings"]["fail_error"] == 50.0
  assert (out / "final_error.png").read_bytes()[:8] == PNG
  assert (out / "curves.png").read_bytes()[:8] == PNG
  assert "### 784-32-10 ReLU MLP" in (out / "summary.md").read_text()

  stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.jsonl")}
  again = zoo.main(argv)  # finished runs are read back, not retrained
  assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(stamps) == 3
  assert again["variants"] == first["variants"] and again["classes"] == first["classes"]
  assert again["comparisons"] == first["comparisons"]
