"""Runs the whole experiment suite with its defaults and writes one report.

    python -m experiments.all                      # writes experiments/REPORT.md
    python -m experiments.all --estimate-only      # the wall-time estimate alone
    python -m experiments.all --quick --out /tmp/q # smoke run; report in /tmp/q/REPORT.md

Every experiment writes into ``OUT/NAME/`` (default ``OUT=runs/all``) and is
resumable: rerunning the same command reads finished runs back and continues
unfinished ones from their last completed epoch (see `experiments.runs`).

Before training, it prints an estimate of its wall time per experiment and in total:
each experiment's plan (`harness.plan`: models x epochs x training images x FLOPs per
example of every variant's grid, and its optimizer steps) at this machine's seconds per
FLOP and per model-step, fit on two small vmapped programs at the start (a wide net at
batch 128, a narrow one at batch 32: `harness.measure_speed`, a few seconds), plus a
compile time per run; runs already finished in ``OUT`` count nothing. Grid
extensions can add to it: "about X min, up to Y min with grid extensions". The suite's
defaults are cut to fit `BUDGET_MINUTES` on a 2-core CPU (each experiment's report says
what it cut).

The report (``experiments/REPORT.md`` for a default run, ``OUT/REPORT.md`` for
``--quick`` or ``--report PATH``) opens with the estimate against the measured time and
one line per experiment (its headline), then each experiment's own ``summary.md`` with
its figures copied next to the report (``report/NAME/*.png``), and the commands and
wall times.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
import re
import shutil
import sys
import time
from typing import Any, Mapping, Sequence

from experiments import cli, harness, outputs

# In the order of the report: the headline question first, then the thread's others.
NAMES = ("compare", "fastbook_3v7", "zoo", "gradients", "multilabel", "open_set",
         "label_smoothing")
DEFAULT_REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "REPORT.md")
BUDGET_MINUTES = 180  # the suite's defaults on this project's 2-core CPU


def _names(text: str) -> tuple[str, ...]:
  names = cli.names(text)
  if unknown := sorted(set(names) - set(NAMES)):
    raise ValueError(f"must name experiments among {', '.join(NAMES)}; unknown: "
                     f"{', '.join(unknown)}")
  return tuple(n for n in NAMES if n in names)


@dataclasses.dataclass(frozen=True)
class Settings:
  out: str = cli.option("runs/all", "root output folder (one sub-folder per experiment)")
  only: tuple[str, ...] = cli.option(NAMES, "the experiments to run", parse=_names)
  report: str | None = cli.option(None, "report path (default: experiments/REPORT.md, or "
                                  "OUT/REPORT.md with --quick)")
  mnist_dir: str | None = cli.option(None, "folder with the four MNIST .gz files (default "
                                     "$JAXLOSS_MNIST_DIR)")
  data_dir: str | None = cli.option(None, "TFDS data dir (default $JAXLOSS_DATA_DIR)")
  no_progress: bool = cli.option(False, "hide the progress bars")
  estimate_only: bool = cli.option(False, "print the wall-time estimate and stop (loads MNIST "
                                   "and times a small program; trains nothing)")
  quick: bool = False


def estimate_rows(plans: Mapping[str, Sequence[harness.Cost]], seconds_per_flop: float,
                  compile_seconds: float,
                  seconds_per_model_step: float = 0.0) -> list[dict[str, Any]]:
  """Per experiment: minutes left to train (and the most with grid extensions), the minutes of
  the whole experiment, finished runs included (without extensions), runs and model-epochs."""
  rows = []
  for name, costs in plans.items():
    low, high = harness.estimate(costs, seconds_per_flop, compile_seconds,
                                 seconds_per_model_step)
    whole = harness.estimate([dataclasses.replace(c, done=False) for c in costs],
                             seconds_per_flop, compile_seconds, seconds_per_model_step)[0]
    rows.append({"name": name, "minutes": low / 60, "max_minutes": high / 60,
                 "whole_minutes": whole / 60,  # finished runs counted too
                 "runs": len(costs), "done": sum(c.done for c in costs),
                 "model_epochs": sum(c.model_epochs for c in costs if not c.done)})
  return rows


def estimate_text(rows: Sequence[dict[str, Any]], seconds_per_flop: float,
                  compile_seconds: float, seconds_per_model_step: float = 0.0) -> str:
  """The estimate as printed before the start: one line per experiment, then the total."""
  lines = [f"Estimated wall time (each variant's models x epochs x images x FLOPs at "
           f"{seconds_per_flop:.3g} s per FLOP and its model-steps at "
           f"{1e3 * seconds_per_model_step:.3g} ms each, both timed here, plus "
           f"{compile_seconds:.0f} s of compilation per run; finished runs count nothing):"]
  width = max((len(r["name"]) for r in rows), default=0)
  for r in rows:
    done = f", {r['done']} of {r['runs']} first runs finished" if r["done"] else ""
    work = f"{r['model_epochs']:.0f}" if r["model_epochs"] >= 10 else f"{r['model_epochs']:.2g}"
    lines.append(f"  {r['name']:<{width}}  about {r['minutes']:.0f} min (up to "
                 f"{r['max_minutes']:.0f} with grid extensions), {work} model-epochs to "
                 f"train{done}")
  low, high = sum(r["minutes"] for r in rows), sum(r["max_minutes"] for r in rows)
  over = f"; over the suite's {BUDGET_MINUTES}-minute budget" if low > BUDGET_MINUTES else ""
  lines.append(f"  total: about {low:.0f} min, up to {high:.0f} min with grid extensions{over}")
  return "\n".join(lines)


def relink_figures(markdown: str, name: str, figures: Sequence[str], report_dir: str) -> str:
  """Copies `figures` to ``report_dir/report/NAME/`` and points the section's links there.

  The folder is emptied first: it holds this section's figures only, none left from an
  earlier report."""
  target = os.path.join(report_dir, "report", name)
  shutil.rmtree(target, ignore_errors=True)
  os.makedirs(target)
  for path in figures:
    base = os.path.basename(path)
    shutil.copyfile(path, os.path.join(target, base))
    markdown = re.sub(r"\]\((?:\./)?" + re.escape(base) + r"\)",
                      f"](report/{name}/{base})", markdown)
  return markdown


# Beyond an experiment's defaults, what the report asks of it. compare's default command is
# the headline alone (the README's main command); the report adds its second table, each
# loss with the rate selected on validation. Quick runs keep the scripts' quick values.
REPORT_ARGS = {"compare": ["--selected-losses", ",".join(
    ("softmax_cross_entropy", "sigmoid_difference", "softmax_absolute_error",
     "balanced_sigmoid_difference"))]}


def _argv(s: Settings, out: str, name: str = "") -> list[str]:
  argv = ["--out", out] + (["--quick"] if s.quick else REPORT_ARGS.get(name, []))
  argv += ["--mnist-dir", s.mnist_dir] if s.mnist_dir else []
  argv += ["--data-dir", s.data_dir] if s.data_dir else []
  return argv + (["--no-progress"] if s.no_progress else [])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  s = cli.parse(Settings, argv, prog="python -m experiments.all",
                description="Run every experiment with its defaults and write REPORT.md with "
                            "every table, figure and verdict.")
  report = s.report or (os.path.join(s.out, "REPORT.md") if s.quick else DEFAULT_REPORT)
  report_dir = os.path.dirname(os.path.abspath(report))
  if s.quick:
    harness.compile_fast()
  harness.join_processes()
  env = outputs.print_device()

  mnist = harness.load(dataclasses.replace(harness.Settings(), mnist_dir=s.mnist_dir,
                                           data_dir=s.data_dir))  # once, for every script
  t_all = time.perf_counter()
  experiments = {name: importlib.import_module(f"experiments.{name}").EXPERIMENT
                 for name in s.only}
  plans = {name: harness.plan(
      exp, harness.settings_of(exp, _argv(s, os.path.join(s.out, name), name)), mnist)
           for name, exp in experiments.items()}
  speed = harness.measure_speed()
  planned = estimate_rows(plans, *speed)
  estimate = estimate_text(planned, *speed)
  if outputs.is_writer():
    print(estimate, flush=True)
  if s.estimate_only:
    return {"estimate": planned}
  sections, rows = [], []
  for name, experiment in experiments.items():
    out = os.path.join(s.out, name)
    print(f"\n=== {name} -> {out}", flush=True)
    t0 = time.perf_counter()
    summary = harness.main(experiment, _argv(s, out, name), mnist=mnist)
    if not outputs.is_writer():  # several processes: process 0 alone writes the report
      continue
    with open(os.path.join(out, "summary.md")) as f:
      md = f.read()
    figures = sorted(glob.glob(os.path.join(out, "*.png")))
    md += "".join(f"\n![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in figures
                  if f"({os.path.basename(p)})" not in md)
    sections.append(relink_figures(md, name, figures, report_dir))
    rows.append({"name": name, "title": summary["title"], "headline": summary["headline"],
                 "seconds": float(summary.get("train_seconds", summary["wall_seconds"])),
                 "session_seconds": time.perf_counter() - t0,
                 "estimate": next(p for p in planned if p["name"] == name),
                 "edges": {v: info["edge"] for v, info in summary.get("variants", {}).items()
                           if info.get("edge")}})

  total = time.perf_counter() - t_all
  dev = env["device"]
  low, high, whole = (sum(p[k] for p in planned)
                      for k in ("minutes", "max_minutes", "whole_minutes"))
  trained = sum(r["seconds"] for r in rows)
  lines = [
      "# jaxloss experiment report" + (" (QUICK MODE: smoke run, numbers meaningless)"
                                       if s.quick else ""), "",
      "Generated by `python -m experiments.all" + (" --quick" if s.quick else "") + "` from the "
      f"committed code, on {dev['platform'].upper()} ({dev['device_kind']}, "
      f"{dev['device_count']} device(s)), jax {env['versions']['jax']}, "
      f"{env.get('processor') or ''}. Training took {trained / 60:.1f} min in all (each "
      "run's training and evaluation time, in whichever invocation trained it: the suite is "
      f"resumable), against an estimate of about {whole:.0f} min for the whole suite before "
      "grid extensions, made at this invocation's start from a timing of this machine then "
      f"(`harness.measure_speed`). This invocation, started {env['started']}, took "
      f"{total / 60:.1f} min (finished runs are read back, not retrained); at its start about "
      f"{low:.0f} min were left to train, up to {high:.0f} min with grid extensions. The "
      f"suite's defaults are cut to fit {BUDGET_MINUTES} min on a 2-core CPU.", "",
      "## At a glance", "", "| experiment | question | finding | training min (estimate) |",
      "|---|---|---|---|"]
  for r in rows:
    headline = r["headline"].replace("|", "\\|")
    lines.append(f"| `python -m experiments.{r['name']}` | {r['title']} | {headline} | "
                 f"{r['seconds'] / 60:.1f} min ({r['estimate']['whole_minutes']:.0f}) |")
  edges = [f"{r['name']} `{v}` ({edge})" for r in rows for v, edge in r["edges"].items()]
  lines += ["", "Selections whose winning rate sits on an edge of the rates tried, after the "
            "grid grew as far as the protocol lets it (the optimum is not bracketed: that loss "
            "may do better further out): " + "; ".join(edges) + "." if edges else
            "Every selected rate lies inside the rates tried (the grid brackets the optimum)."]
  lines += ["", "Every section below is the experiment's own `summary.md`, written by the "
            "command shown; figures are copied into `report/`.", ""]
  outputs.write_text(report, "\n".join(lines) + "\n" + "\n\n".join(
      section.strip() + "\n" for section in sections))
  outputs.write_json(os.path.join(s.out, "all.json"), outputs.json_ready(
      {"environment": env, "sections": rows, "total_seconds": total, "estimate": planned,
       "speed": harness.Speed(*speed)._asdict(),
       "report": os.path.abspath(report), "argv": list(sys.argv[1:] if argv is None else argv)}))
  if outputs.is_writer():
    print(f"\nwrote {report} ({len(sections)} sections) in {total / 60:.1f} min", flush=True)
  return {"report": report, "sections": rows, "total_seconds": total}


if __name__ == "__main__":
  main()
