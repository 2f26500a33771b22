"""experiments.all: report assembly (with stand-in experiments; each real one has its own test),
and the wall-time estimate: `harness.plan` on a toy experiment, `harness.estimate`, the text."""

import dataclasses
import json
import types

import numpy as np
import pytest

from experiments import all as suite
from experiments import cli, harness, protocol


def fake_cost(name, **changes):
  """A Cost of 25 models x 4 epochs x 50000 images of a 1e6-weight MLP (no evaluation)."""
  return harness.Cost(**{"variant": name, "run_id": f"{name}-grid", "models": 25, "epochs": 4,
                         "examples": 50000, "eval_examples": 0, "final_examples": 0,
                         "weights": 10**6, "extension_models": 5, "max_extensions": 2,
                         **changes})


def patch_planning(monkeypatch, calls):
  """Stand-ins for the settings, the plan (one Cost per experiment) and the speed probe."""
  monkeypatch.setattr(suite.harness, "settings_of", lambda experiment, argv: argv)
  monkeypatch.setattr(suite.harness, "plan", lambda experiment, argv, mnist: (
      calls.append(("plan", experiment.name)), [fake_cost(experiment.name)])[1])
  monkeypatch.setattr(suite.harness, "measure_speed", lambda: (1e-11, 3.0))


def fake_harness_main(calls, tmp_path, edge=False):
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
            "variants": {"a": {"edge": None}, "b": {"edge": "upper" if edge else None}},
            "train_seconds": 30.0,  # its runs' time, in all invocations
            "title": f"Question of {name}?"}

  return main


def test_report_collects_sections_figures_and_headlines(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(suite.importlib, "import_module", lambda mod: types.SimpleNamespace(
      EXPERIMENT=types.SimpleNamespace(name=mod.split(".")[-1])))
  monkeypatch.setattr(suite.harness, "main", fake_harness_main(calls, tmp_path))
  monkeypatch.setattr(suite.harness, "load", lambda settings: "MNIST")
  patch_planning(monkeypatch, calls)
  report = tmp_path / "rep" / "REPORT.md"
  stale = tmp_path / "rep" / "report" / "zoo" / "old_figure.png"  # from an earlier report
  stale.parent.mkdir(parents=True)
  stale.write_bytes(b"old")
  result = suite.main(["--only", "zoo,open_set", "--out", str(tmp_path / "out"),
                       "--report", str(report), "--quick", "--mnist-dir", "/m", "--no-progress"])
  assert [c for c in calls if c[0] == "plan"] == [("plan", "zoo"), ("plan", "open_set")]
  calls = [c for c in calls if c[0] != "plan"]  # every plan is made before any training
  assert [c[0] for c in calls] == ["zoo", "open_set"]  # the report's order
  for _, argv in calls:
    assert "--quick" in argv and argv[argv.index("--mnist-dir") + 1] == "/m"
  text = report.read_text()
  assert "QUICK MODE" in text
  # 25 x 4 x 50000 x 6e6 FLOPs x 1e-11 s + 3 s = 303 s a run; 2 x 2 extensions of 63 s.
  assert "Training took 1.0 min in all" in text
  assert "Every selected rate lies inside the rates tried" in text
  assert "against an estimate of about 10 min for the whole suite before grid extensions" in text
  assert "at its start about 10 min were left to train, up to 14 min with grid extensions. " \
         "The suite's defaults are cut to fit 180 min" in text
  assert "| `python -m experiments.zoo` | Question of zoo? | zoo says yes. | 0.5 min (5) |" in text
  assert "![curves](report/zoo/curves.png)" in text
  assert "![curves](report/open_set/curves.png)" in text
  assert (tmp_path / "rep" / "report" / "zoo" / "curves.png").read_bytes().startswith(b"\x89PNG")
  assert not stale.exists()  # the report's figure folders hold this report's figures only
  assert [s["name"] for s in result["sections"]] == ["zoo", "open_set"]
  saved = json.loads((tmp_path / "out" / "all.json").read_text())
  assert saved["sections"][0]["seconds"] == 30.0
  assert saved["estimate"][0]["minutes"] == pytest.approx(303 / 60)
  assert saved["speed"] == {"seconds_per_flop": 1e-11, "compile_seconds": 3.0,
                            "seconds_per_model_step": 0.0}


def test_estimate_only_prints_the_estimate_and_trains_nothing(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(suite.importlib, "import_module", lambda mod: types.SimpleNamespace(
      EXPERIMENT=types.SimpleNamespace(name=mod.split(".")[-1])))
  monkeypatch.setattr(suite.harness, "main", lambda *a, **k: pytest.fail("it trained"))
  monkeypatch.setattr(suite.harness, "load", lambda settings: "MNIST")
  patch_planning(monkeypatch, calls)
  result = suite.main(["--estimate-only", "--out", str(tmp_path / "out")])
  assert [r["name"] for r in result["estimate"]] == list(suite.NAMES)
  out = capsys.readouterr().out
  assert "  compare          about 5 min (up to 7 with grid extensions), 100 model-epochs " \
         "to train" in out
  assert "  total: about 35 min, up to 50 min with grid extensions" in out
  assert not (tmp_path / "out").exists()


def test_report_lists_the_selections_on_an_edge(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(suite.importlib, "import_module", lambda mod: types.SimpleNamespace(
      EXPERIMENT=types.SimpleNamespace(name=mod.split(".")[-1])))
  monkeypatch.setattr(suite.harness, "main", fake_harness_main(calls, tmp_path, edge=True))
  monkeypatch.setattr(suite.harness, "load", lambda settings: "MNIST")
  patch_planning(monkeypatch, calls)
  report = tmp_path / "REPORT.md"
  suite.main(["--only", "zoo,open_set", "--out", str(tmp_path / "out"), "--report", str(report),
              "--quick", "--no-progress"])
  assert "the optimum is not bracketed: that loss may do better further out): zoo `b` " \
         "(upper); open_set `b` (upper)." in report.read_text()


def test_estimate_counts_finished_runs_nothing_and_extensions_apart():
  done = fake_cost("b", done=True, models=5)
  low, high = harness.estimate([fake_cost("a"), done], 1e-11, 3.0)
  assert low == pytest.approx(25 * 4 * 50000 * 6e6 * 1e-11 + 3.0)
  one_extension = 5 * 4 * 50000 * 6e6 * 1e-11 + 3.0
  assert high - low == pytest.approx(4 * one_extension)  # 2 of a's, and 2 of b's (an upper bound)
  rows = suite.estimate_rows({"x": [fake_cost("a"), done]}, 1e-11, 3.0)
  assert rows[0]["done"] == 1 and rows[0]["runs"] == 2 and rows[0]["model_epochs"] == 100
  assert rows[0]["minutes"] == pytest.approx(low / 60)  # what is left: a's run
  assert rows[0]["whole_minutes"] == pytest.approx((low + one_extension) / 60)  # b's run too
  text = suite.estimate_text(rows * 40, 1e-11, 3.0)
  assert "1 of 2 first runs finished" in text and "over the suite's 180-minute budget" in text
  # The step term: 25 models x 4 epochs x 390 steps (batch 128) at 1 ms each.
  steps = harness.estimate([fake_cost("a")], 1e-11, 3.0, 1e-3)[0] - low
  assert steps == pytest.approx(25 * 4 * (50000 // 128) * 1e-3)
  assert fake_cost("a", batch=32).model_steps(5) == 5 * 4 * (50000 // 32)


def test_fit_speed_solves_the_two_probes():
  wide, narrow = fake_cost("w"), fake_cost("n", weights=10**4, batch=32)
  a, b = 2e-11, 3e-4
  times = [c.flops() * a + c.model_steps() * b for c in (wide, narrow)]
  speed = harness.fit_speed(times, [wide, narrow], 5.0)
  assert speed.seconds_per_flop == pytest.approx(a) and speed.compile_seconds == 5.0
  assert speed.seconds_per_model_step == pytest.approx(b)
  assert harness.estimate([narrow], *speed)[0] == pytest.approx(times[1] + 5.0)
  # A narrow probe no slower per FLOP than the wide one: no step term (b would be < 0).
  flat = harness.fit_speed([wide.flops() * a, narrow.flops() * a * 0.5], [wide, narrow], 5.0)
  assert flat == harness.Speed(pytest.approx(a), 5.0, 0.0)


@dataclasses.dataclass(frozen=True)
class ToySettings(harness.Settings):
  width: int = cli.option(8, "hidden width", parse=cli.positive_int)


def _toy_splits(settings, mnist):
  def pair(n, *shape):
    return np.zeros((n, *shape), np.uint8), np.zeros(n, np.int32)
  return {"a": harness.Splits(pair(100, 4, 5), pair(30, 4, 5), pair(20, 4, 5)),
          "b": harness.Splits(pair(64, 20), None, pair(10, 20))}


def _toy_variants(s):
  def loss(z, y, **params):
    return 0.0
  return [harness.Variant("grid", loss, train={"hidden": (s.width,), "num_classes": 3},
                          params={"alpha": (0.1, 0.2)}, sweep={"beta": (1.0, 2.0, 3.0)},
                          data="a", final_splits=("val",)),
          harness.Variant("linear", loss, train={"hidden": (), "epochs": 7}, rates=(0.1,),
                          seeds=(0, 1, 2, 3, 4), data="b"),
          harness.Variant("one-rate", loss, rates=(1e-3,), data="a")]


def test_plan_of_a_toy_experiment(tmp_path):
  experiment = harness.Experiment("toy", "Toy?", ToySettings, _toy_variants, report=None,
                                  splits=_toy_splits)
  settings = ToySettings(out=str(tmp_path), lrs=(1e-3, 3e-3), seeds=(0, 1, 2), epochs=2,
                         batch_size=32)
  (tmp_path / "runs" / "linear-grid").mkdir(parents=True)
  (tmp_path / "runs" / "linear-grid" / "result.json").write_text("{}")
  mnist = types.SimpleNamespace(subset=lambda train, test: "MNIST")
  grid, linear, one = harness.plan(experiment, settings, mnist)
  # 2 rates x 2 alphas x 3 betas x 3 seeds; whole batches of 32 of the 100 images; the
  # validation split every epoch, test and validation once; 20 inputs (4 x 5) -> 8 -> 3.
  assert (grid.variant, grid.run_id, grid.models, grid.epochs, grid.examples) == (
      "grid", "grid-grid", 36, 2, 96)
  assert (grid.eval_examples, grid.final_examples, grid.weights) == (30, 50, 20 * 8 + 8 + 8 * 3 + 3)
  assert (grid.extension_models, grid.max_extensions, grid.done) == (18, protocol.MAX_EXTENSIONS,
                                                                     False)
  assert grid.flops_per_example == 6 * grid.weights
  assert grid.flops() == 36 * (2 * (6 * 195 * 96 + 2 * 195 * 30) + 2 * 195 * 50)
  assert grid.model_epochs == pytest.approx(36 * 2 * 96 / 50000)
  # Its own rate, seeds and epochs; no validation split: test every epoch, no extension.
  assert (linear.models, linear.epochs, linear.examples, linear.eval_examples) == (5, 7, 64, 10)
  assert (linear.weights, linear.extension_models, linear.max_extensions) == (210, 0, 0)
  assert linear.done  # its first run finished in --out
  assert (one.models, one.max_extensions) == (3, 0)  # one rate: nothing to select or extend
  assert one.weights == 20 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10  # TrainConfig's MLP


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


def test_the_report_asks_compare_for_its_second_table():
  from experiments import compare
  s = suite.Settings()
  argv = suite._argv(s, "out", "compare")
  assert argv[argv.index("--selected-losses") + 1].split(",") == list(compare.SELECTED_LOSSES)
  assert compare.Settings().selected_losses == ()  # the default command: the headline alone
  quick = dataclasses.replace(s, quick=True)
  assert "--selected-losses" not in suite._argv(quick, "out", "compare")
  assert "--selected-losses" not in suite._argv(s, "out", "zoo")
