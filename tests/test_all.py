"""experiments.all: report assembly (with stand-in experiments; each real one has its own test)."""

import json
import types

import pytest

from experiments import all as suite


def fake_harness_main(calls, tmp_path):
  """A stand-in for harness.main: writes summary.md and a figure, returns the summary."""

  def main(experiment, argv, *, mnist):
    name = experiment.name
    out = tmp_path / "out" / name
    assert argv[argv.index("--out") + 1] == str(out) and mnist == "MNIST"
    calls.append((name, list(argv)))
    out.mkdir(parents=True)
    (out / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (out / "summary.md").write_text(f"## Question of {name}?\n\n**Verdict.** Long.\n\n"
                                    "![curves](curves.png)\n")
    return {"verdict": "Long.", "headline": f"{name} says yes.", "wall_seconds": 12.0,
            "title": f"Question of {name}?"}

  return main


def test_report_collects_sections_figures_and_headlines(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(suite.importlib, "import_module", lambda mod: types.SimpleNamespace(
      EXPERIMENT=types.SimpleNamespace(name=mod.split(".")[-1])))
  monkeypatch.setattr(suite.harness, "main", fake_harness_main(calls, tmp_path))
  monkeypatch.setattr(suite.harness, "load", lambda settings: "MNIST")
  report = tmp_path / "rep" / "REPORT.md"
  result = suite.main(["--only", "zoo,open_set", "--out", str(tmp_path / "out"),
                       "--report", str(report), "--quick", "--mnist-dir", "/m", "--no-progress"])
  assert [c[0] for c in calls] == ["zoo", "open_set"]  # the report's order
  for _, argv in calls:
    assert "--quick" in argv and argv[argv.index("--mnist-dir") + 1] == "/m"
  text = report.read_text()
  assert "QUICK MODE" in text
  assert "| `python -m experiments.zoo` | Question of zoo? | zoo says yes. | 0.2 min |" in text
  assert "![curves](report/zoo/curves.png)" in text
  assert "![curves](report/open_set/curves.png)" in text
  assert (tmp_path / "rep" / "report" / "zoo" / "curves.png").read_bytes().startswith(b"\x89PNG")
  assert [s["name"] for s in result["sections"]] == ["zoo", "open_set"]
  saved = json.loads((tmp_path / "out" / "all.json").read_text())
  assert saved["sections"][0]["seconds"] == 12.0


def test_unknown_experiment_is_refused_in_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    suite.main(["--only", "nope", "--out", str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --only: must name experiments among compare")


def test_experiments_import_graph_has_no_cycle():
  """Issue 11: the experiments/ modules import each other without a cycle."""
  import ast
  import os

  folder = os.path.dirname(suite.__file__)
  graph = {}
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(folder, name)) as f:
      text = f.read()
    deps = set()
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.ImportFrom) and node.module == "experiments":
        deps |= {alias.name for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
        deps.add(node.module.split(".")[1])
    graph[name[:-3]] = deps
  done, active = set(), []

  def visit(module):
    assert module not in active, f"import cycle: {' -> '.join(active + [module])}"
    if module in done or module not in graph:
      return
    active.append(module)
    for dep in sorted(graph[module]):
      visit(dep)
    active.pop()
    done.add(module)

  for module in graph:
    visit(module)
  assert graph["harness"] >= {"cli", "protocol", "runs", "stats"}  # the walk saw imports
