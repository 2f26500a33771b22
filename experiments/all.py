"""Runs the whole experiment suite with its defaults and writes one report.

    python -m experiments.all                      # writes experiments/REPORT.md
    python -m experiments.all --quick --out /tmp/q # smoke run; report in /tmp/q/REPORT.md

Every experiment writes into ``OUT/NAME/`` (default ``OUT=runs/all``) and is
resumable: rerunning the same command reads finished runs back and continues
unfinished ones from their last completed epoch (see `experiments.runs`).

The report (``experiments/REPORT.md`` for a default run, ``OUT/REPORT.md`` for
``--quick`` or ``--report PATH``) opens with one line per experiment (its
headline), then each experiment's own ``summary.md`` with its figures copied next
to the report (``report/NAME/*.png``), and the commands and wall times.
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
from typing import Any, Sequence

from experiments import cli, harness, outputs

# In the order of the report: the headline question first, then the thread's others.
NAMES = ("compare", "fastbook_3v7", "zoo", "gradients", "multilabel", "open_set",
         "label_smoothing")
DEFAULT_REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "REPORT.md")


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
  quick: bool = False


def relink_figures(markdown: str, name: str, figures: Sequence[str], report_dir: str) -> str:
  """Copies `figures` to ``report_dir/report/NAME/`` and points the section's links there."""
  target = os.path.join(report_dir, "report", name)
  os.makedirs(target, exist_ok=True)
  for path in figures:
    base = os.path.basename(path)
    shutil.copyfile(path, os.path.join(target, base))
    markdown = re.sub(r"\]\((?:\./)?" + re.escape(base) + r"\)",
                      f"](report/{name}/{base})", markdown)
  return markdown


def _argv(s: Settings, out: str) -> list[str]:
  argv = ["--out", out] + (["--quick"] if s.quick else [])
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
  sections, rows = [], []
  for name in s.only:
    out = os.path.join(s.out, name)
    print(f"\n=== {name} -> {out}", flush=True)
    t0 = time.perf_counter()
    module = importlib.import_module(f"experiments.{name}")
    summary = harness.main(module.EXPERIMENT, _argv(s, out), mnist=mnist)
    if not outputs.is_writer():  # several processes: process 0 alone writes the report
      continue
    with open(os.path.join(out, "summary.md")) as f:
      md = f.read()
    figures = sorted(glob.glob(os.path.join(out, "*.png")))
    md += "".join(f"\n![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in figures
                  if f"({os.path.basename(p)})" not in md)
    sections.append(relink_figures(md, name, figures, report_dir))
    rows.append({"name": name, "title": summary["title"], "headline": summary["headline"],
                 "seconds": float(summary["wall_seconds"]),
                 "session_seconds": time.perf_counter() - t0})

  total = time.perf_counter() - t_all
  dev = env["device"]
  lines = [
      "# jaxloss experiment report" + (" (QUICK MODE: smoke run, numbers meaningless)"
                                       if s.quick else ""), "",
      "Generated by `python -m experiments.all" + (" --quick" if s.quick else "") + "` from the "
      f"committed code, on {dev['platform'].upper()} ({dev['device_kind']}, "
      f"{dev['device_count']} device(s)), jax {env['versions']['jax']}, "
      f"{env.get('processor') or ''}. Started {env['started']}; this invocation took "
      f"{total / 60:.1f} min (finished runs are read back, not retrained).", "",
      "## At a glance", "", "| experiment | question | finding | time |", "|---|---|---|---|"]
  for r in rows:
    headline = r["headline"].replace("|", "\\|")
    lines.append(f"| `python -m experiments.{r['name']}` | {r['title']} | {headline} | "
                 f"{r['seconds'] / 60:.1f} min |")
  lines += ["", "Every section below is the experiment's own `summary.md`, written by the "
            "command shown; figures are copied into `report/`.", ""]
  outputs.write_text(report, "\n".join(lines) + "\n" + "\n\n".join(
      section.strip() + "\n" for section in sections))
  outputs.write_json(os.path.join(s.out, "all.json"), outputs.json_ready(
      {"environment": env, "sections": rows, "total_seconds": total,
       "report": os.path.abspath(report), "argv": list(sys.argv[1:] if argv is None else argv)}))
  if outputs.is_writer():
    print(f"\nwrote {report} ({len(sections)} sections) in {total / 60:.1f} min", flush=True)
  return {"report": report, "sections": rows, "total_seconds": total}


if __name__ == "__main__":
  main()
