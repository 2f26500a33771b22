"""experiments.all: report assembly (with stand-in experiments; each real one has its own test)."""

import json
import types

import pytest

from experiments import all as suite


def fake_experiment(name, calls):
  """A stand-in experiment module whose main writes a figure and a summary."""

  def main(argv):
    out = argv[argv.index("--out") + 1]
    calls.append((name, list(argv)))
    import os  # pylint: disable=import-outside-toplevel

    os.makedirs(out, exist_ok=True)
    fig = os.path.join(out, "curves.png")
    with open(fig, "wb") as f:
      f.write(b"\x89PNG\r\n\x1a\nfake")
    md = (f"## Question of {name}?\n\nSetup.\n\n![curves](curves.png)\n\n"
          f"**Verdict.** {name} says yes\nacross two lines.\n\nMore text.\n")
    return {"summary_md": md, "figures": [fig], "summary": {}, "wall_seconds": 12.0}

  return types.SimpleNamespace(main=main)


def test_report_collects_sections_figures_and_verdicts(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(suite.importlib, "import_module",
                      lambda mod: fake_experiment(mod.split(".")[-1], calls))
  report = tmp_path / "rep" / "REPORT.md"
  result = suite.main(["--only", "zoo,open_set", "--out", str(tmp_path / "out"),
                       "--report", str(report), "--quick", "--mnist-dir", "/m", "--no-progress"])
  assert [c[0] for c in calls] == ["zoo", "open_set"]  # the report's order, not --only's
  for _, argv in calls:
    assert "--quick" in argv and argv[argv.index("--mnist-dir") + 1] == "/m"
  text = report.read_text()
  assert "QUICK MODE" in text
  assert "| `python -m experiments.zoo` | Question of zoo? | zoo says yes across two lines. |" in text
  assert "![curves](report/zoo/curves.png)" in text
  assert "![curves](report/open_set/curves.png)" in text
  assert (tmp_path / "rep" / "report" / "zoo" / "curves.png").read_bytes().startswith(b"\x89PNG")
  assert [s["name"] for s in result["sections"]] == ["zoo", "open_set"]
  saved = json.loads((tmp_path / "out" / "all.json").read_text())
  assert saved["sections"][0]["seconds"] == 12.0


def test_compare_section_reads_its_output(tmp_path):
  out = tmp_path / "compare"
  out.mkdir()
  (out / "summary.md").write_text("| loss | acc |\n|---|---|\n")
  (out / "summary.csv").write_text(
      "loss,final_acc_mean,final_acc_std,wrong_grad_norm_median\n"
      "softmax_cross_entropy,98.5,0.1,1.2\nsigmoid_difference,11.35,0.0,5e-17\n")
  md, figures, verdict = suite.compare_section(str(out))
  assert md.startswith("## Does cross-entropy")
  assert "Cross-entropy is better by 87.15 points" in verdict
  assert figures == [str(out / "curves.png")]
  (out / "summary.csv").write_text(
      "loss,final_acc_mean,final_acc_std,wrong_grad_norm_median\n"
      "softmax_cross_entropy,98.5,0.3,1.2\nsigmoid_difference,98.2,0.2,1.0\n")
  assert "No clear difference" in suite.compare_section(str(out))[2]


def test_verdict_and_title_extraction():
  md = "## What is it?\n\ntext\n\n**Verdict.** It is\n a thing.\n\nafter"
  assert suite.title_of(md, "x") == "What is it?"
  assert suite.verdict_of(md) == "It is a thing."
  assert suite.verdict_of("no verdict here") == ""


def test_unknown_experiment_is_refused(tmp_path):
  with pytest.raises(SystemExit, match="valid: compare"):
    suite.main(["--only", "nope", "--out", str(tmp_path)])
