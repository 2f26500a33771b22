"""Runs the whole experiment suite with its defaults and writes one report.

    python -m experiments.all                      # writes experiments/REPORT.md
    python -m experiments.all --quick --out /tmp/q # smoke run; report in /tmp/q/REPORT.md

Every experiment writes into ``OUT/NAME/`` (default ``OUT=runs/all``) and is
resumable: rerunning the same command skips finished runs and continues
unfinished ones from their last completed epoch (see `experiments.runs`).

The report (``experiments/REPORT.md`` for a default run, ``OUT/REPORT.md`` for
``--quick`` or ``--report PATH``) has a summary of every verdict, then each
experiment's own section (its ``summary.md``) with its figures copied next to
the report (``report/NAME/*.png``), and the commands and wall times.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import re
import shutil
import sys
import time
from typing import Any, Sequence

from experiments import common

# In the order of the report: the headline question first, then the list.
SUITE = ("fastbook_3v7", "zoo", "gradients", "multilabel", "open_set", "label_smoothing")
DEFAULT_REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "REPORT.md")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.all",
      description="Run every experiment of the suite with its defaults (plus the headline "
                  "experiments.compare) and write REPORT.md with every table, figure and verdict.",
      formatter_class=common.HelpFormatter)
  parser.add_argument("--out", default="runs/all", help="root output folder (one sub-folder per "
                      "experiment)")
  parser.add_argument("--only", default=None,
                      help="comma-separated subset of: compare," + ",".join(SUITE))
  parser.add_argument("--report", default=None,
                      help="report path (default: experiments/REPORT.md, or OUT/REPORT.md with "
                           "--quick)")
  parser.add_argument("--quick", action="store_true",
                      help="run every experiment in its --quick mode (a smoke test; numbers "
                           "meaningless)")
  parser.add_argument("--mnist-dir", default=None,
                      help="folder with the four MNIST .gz files (default: $JAXLOSS_MNIST_DIR)")
  parser.add_argument("--data-dir", default=None,
                      help="TFDS data dir (default: $JAXLOSS_DATA_DIR, else ~/tensorflow_datasets)")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  return parser


def _common_argv(args, out: str) -> list[str]:
  argv = ["--out", out]
  if args.mnist_dir:
    argv += ["--mnist-dir", args.mnist_dir]
  if args.data_dir:
    argv += ["--data-dir", args.data_dir]
  if args.no_progress:
    argv.append("--no-progress")
  return argv


def verdict_of(markdown: str) -> str:
  """The ``**Verdict.**`` paragraph of a section (without the label), or ''."""
  match = re.search(r"\*\*Verdict\.?\*\*\s*(.+?)(?:\n\s*\n|\Z)", markdown, re.S)
  return " ".join(match.group(1).split()) if match else ""


def title_of(markdown: str, default: str) -> str:
  """The first ``## `` heading of a section."""
  match = re.search(r"^##\s+(.+)$", markdown, re.M)
  return match.group(1).strip() if match else default


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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = build_parser().parse_args(argv)
  names = ("compare",) + SUITE
  if args.only:
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
      raise SystemExit(f"--only: unknown experiment(s) {unknown}; valid: {', '.join(names)}")
    names = tuple(n for n in names if n in wanted)
  report = args.report or (os.path.join(args.out, "REPORT.md") if args.quick else DEFAULT_REPORT)
  report_dir = os.path.dirname(os.path.abspath(report))
  env = common.print_device()

  t_all = time.perf_counter()
  sections, summary_rows = [], []
  for name in names:
    out = os.path.join(args.out, name)
    print(f"\n=== {name} -> {out}", flush=True)
    t0 = time.perf_counter()
    module = importlib.import_module(f"experiments.{name}")
    result = module.main(_common_argv(args, out) + (["--quick"] if args.quick else []))
    command = f"python -m experiments.{name}"
    if "summary_md" in result:  # a script not yet on experiments.harness
      md, figures = result["summary_md"], result["figures"]
      verdict = verdict_of(md)
    else:
      with open(os.path.join(out, "summary.md")) as f:
        md = f.read()
      figures, verdict = sorted(glob.glob(os.path.join(out, "*.png"))), result["headline"]
      md += "".join(f"\n![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in figures)
    seconds = float(result.get("wall_seconds", time.perf_counter() - t0))
    md = relink_figures(md, name, figures, report_dir)
    sections.append(md)
    summary_rows.append({"name": name, "title": title_of(md, name), "verdict": verdict,
                         "seconds": seconds, "session_seconds": time.perf_counter() - t0,
                         "command": command})

  total = time.perf_counter() - t_all
  dev = env["device"]
  lines = [
      "# jaxloss experiment report" + (" (QUICK MODE: smoke run, numbers meaningless)"
                                       if args.quick else ""),
      "",
      "Generated by `python -m experiments.all" + (" --quick" if args.quick else "") + "` from "
      "the committed code, on " + f"{dev['platform'].upper()} ({dev['device_kind']}, "
      f"{dev['device_count']} device(s)), jax {env['versions']['jax']}, "
      f"{env.get('processor') or ''}. Started {env['started']}; this invocation took "
      f"{total / 60:.1f} min. (Rerunning the command reads finished runs back instead of "
      "retraining them, so a resumed invocation's time covers only what it trained.)",
      "",
      "## Verdicts at a glance",
      "",
      "| experiment | question | verdict | wall time of its runs |",
      "|---|---|---|---|",
  ]
  for r in summary_rows:
    verdict = (r["verdict"] or "see section").replace("|", "\\|")
    lines.append(f"| `{r['command']}` | {r['title']} | {verdict} | "
                 f"{r['seconds'] / 60:.1f} min |")
  lines += ["", "Every section below is the experiment's own `summary.md`, written by the "
            "command shown; figures are copied into `report/`.", ""]
  text = "\n".join(lines) + "\n" + "\n\n".join(s.strip() + "\n" for s in sections)
  common.write_text(report, text)
  common.write_json(os.path.join(args.out, "all.json"),
                    {"environment": env, "sections": summary_rows, "total_seconds": total,
                     "report": os.path.abspath(report), "argv": list(argv or sys.argv[1:])})
  print(f"\nwrote {report} ({len(sections)} sections) in {total / 60:.1f} min", flush=True)
  return {"report": report, "sections": summary_rows, "total_seconds": total}


if __name__ == "__main__":
  main()
