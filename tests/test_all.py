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


def test_harness_experiment_section_is_its_summary_md_and_figures(tmp_path, monkeypatch):
  """An experiment on experiments.harness returns its summary; all.py reads its files."""

  def main(argv):
    out = tmp_path / "out" / "compare"
    out.mkdir(parents=True)
    (out / "summary.md").write_text("## Headline?\n\n**Verdict.** CE wins.\n\n| a |\n")
    (out / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    return {"verdict": "CE wins by far.", "headline": "CE wins.", "wall_seconds": 3.0}

  monkeypatch.setattr(suite.importlib, "import_module",
                      lambda mod: types.SimpleNamespace(main=main))
  report = tmp_path / "REPORT.md"
  result = suite.main(["--only", "compare", "--out", str(tmp_path / "out"),
                       "--report", str(report), "--no-progress"])
  text = report.read_text()
  assert "| `python -m experiments.compare` | Headline? | CE wins. | 0.1 min |" in text
  assert "![curves.png](report/compare/curves.png)" in text
  assert result["sections"][0]["seconds"] == 3.0


def test_verdict_and_title_extraction():
  md = "## What is it?\n\ntext\n\n**Verdict.** It is\n a thing.\n\nafter"
  assert suite.title_of(md, "x") == "What is it?"
  assert suite.verdict_of(md) == "It is a thing."
  assert suite.verdict_of("no verdict here") == ""


def test_unknown_experiment_is_refused(tmp_path):
  with pytest.raises(SystemExit, match="valid: compare"):
    suite.main(["--only", "nope", "--out", str(tmp_path)])
