"""Resumable, failure-tolerant training runs for the experiment scripts.

A *run* is one `TrainConfig` trained with one loss for several seeds side by side
(one vmapped program, `jaxloss.train.iterate_training`). Each run owns a folder
``OUT/runs/RUN_ID/``:

* ``run.json``: what the run is (description, config, seeds). Rerunning with the
  same ``--out`` but a different run behind the same id is refused, so results
  of different settings never mix.
* ``metrics.jsonl``: one row per (seed, epoch), rewritten atomically after each
  epoch.
* ``ckpt/``: an Orbax checkpoint of all seeds' state after the latest epoch
  (`jaxloss.train.checkpoints`), removed when the run ends.
* ``result.json``: written last, atomically, when the run ends; its presence
  marks the run as finished.

`run` skips a finished run (it reads its rows back), and continues an
unfinished one from its last checkpoint. Shuffling is keyed by (seed, epoch), so
the continued run gives the same numbers as an uninterrupted one. Rows are
written before the checkpoint; after a crash between the two, the epoch is
trained again and its rows are replaced by identical ones.

Divergence: after each epoch, a seed whose training loss is not finite (the
jaxloss losses return NaN for NaN or ``+inf`` logits, so weights that overflowed
or turned NaN show here), or whose parameters are not all finite
(`jaxloss.train.EpochResult.diverged`), is recorded as diverged at that epoch
(its row carries ``"diverged": true``) and gets no further rows. When every seed
of a run has diverged, the run stops with status ``"diverged"`` and the other
runs of the experiment go on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments import common

__all__ = ["ADAM_LR_GRID", "RunMismatchError", "RunResult", "RunSpec", "Tuned", "run",
           "select_learning_rate", "tune_and_run"]

# The learning-rate grid every loss gets with Adam (peak rate, cosine decay),
# selected on a validation split: the same small grid for every loss is the
# fairness rule of the experiment suite.
ADAM_LR_GRID = (3e-4, 1e-3, 3e-3)


class RunMismatchError(RuntimeError):
  """The run folder holds a different run than the one asked for."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run: a config, a loss and the seeds trained together.

  Attributes:
    run_id: the run's folder name under ``OUT/runs/`` (letters, digits, ``._-``).
    config: the `jaxloss.train.TrainConfig`.
    loss_fn: ``loss_fn(logits [B, C], labels [B, ...]) -> scalar``.
    predict_fn: optional ``logits -> predictions`` for the accuracies.
    eval_fn: optional metrics of the evaluation split (see
      `jaxloss.train.make_evaluate`); their names become row keys.
    seeds: the seeds.
    describe: JSON-ready description (loss name, learning rate, data, ...),
      stored in ``run.json`` and compared on resume.
  """

  run_id: str
  config: Any
  loss_fn: Callable
  predict_fn: Callable | None = None
  eval_fn: Callable | None = None
  seeds: tuple[int, ...] = (0, 1, 2)
  describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def identity(self) -> dict[str, Any]:
    """What ``run.json`` stores: everything that determines the run's numbers."""
    return json.loads(json.dumps({
        "run_id": self.run_id, "describe": dict(self.describe),
        "config": dataclasses.asdict(self.config), "seeds": list(self.seeds)},
        default=common.json_default))


@dataclasses.dataclass
class RunResult:
  """A run's rows and outcome.

  Attributes:
    run_id: the id.
    status: ``"done"`` or ``"diverged"`` (every seed diverged).
    rows: one dict per (seed, epoch), in epoch order.
    diverged: seed -> epoch at which its training loss (or its parameters)
      became non-finite.
    wall_seconds: training + evaluation time of the whole run (all sessions).
    resumed_from: the epoch a continued run started after (0 if fresh), or
      None if the run was already finished and only read back.
  """

  run_id: str
  status: str
  rows: list[dict[str, Any]]
  diverged: dict[int, int]
  wall_seconds: float
  resumed_from: int | None

  @property
  def seeds(self) -> list[int]:
    return sorted({r["seed"] for r in self.rows})

  @property
  def epochs(self) -> int:
    return max((r["epoch"] for r in self.rows), default=0)

  def curve(self, metric: str) -> np.ndarray:
    """``[epochs, seeds]`` values of `metric` (NaN where a seed has no row)."""
    seeds = self.seeds
    out = np.full((self.epochs, len(seeds)), np.nan)
    for r in self.rows:
      value = r.get(metric)
      if value is not None and np.ndim(value) == 0:
        out[r["epoch"] - 1, seeds.index(r["seed"])] = value
    return out

  def final(self, metric: str) -> np.ndarray:
    """``[seeds]`` value of `metric` at the last epoch (NaN for a diverged seed)."""
    return self.curve(metric)[-1] if self.epochs else np.array([])

  def last_row(self, seed: int) -> dict[str, Any] | None:
    rows = [r for r in self.rows if r["seed"] == seed]
    return rows[-1] if rows else None


def _read_rows(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _write_rows(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  common.write_text(path, "".join(json.dumps(r, default=common.json_default) + "\n" for r in rows))


def _value(x) -> Any:
  x = np.asarray(x)
  return float(x) if x.ndim == 0 else x.astype(np.float64).tolist()


def _differences(stored: Any, wanted: Any, path: str = "", limit: int = 3) -> str:
  """The settings that differ, e.g. ``"config.learning_rate is 0.003 there, 0.001 here"``."""
  found: list[str] = []

  def walk(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
      for key in sorted(set(a) | set(b), key=str):
        walk(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}.{key}" if where else key)
    elif a != b:
      found.append(f"{where or 'the run'} is {json.dumps(a)} there, {json.dumps(b)} here")

  walk(stored, wanted, path)
  more = f" (and {len(found) - limit} more)" if len(found) > limit else ""
  return "; ".join(found[:limit]) + more


def run(spec: RunSpec, data, out_dir: str, *, bar=None, on_epoch=None,
        mesh="auto") -> RunResult:
  """Trains `spec` on `data`, or reads it back if finished, or continues it.

  Args:
    spec: the run.
    data: ``train_images, train_labels, test_images, test_labels`` (evaluation
      metrics are computed on the ``test_*`` arrays, which an experiment may set
      to a validation split).
    out_dir: the experiment's output folder; the run lives in ``out_dir/runs/``.
    bar: optional progress bar, advanced once per epoch trained.
    on_epoch: optional ``on_epoch(spec, rows_of_this_epoch)`` called after each
      epoch is saved (tests use it to interrupt a run).
    mesh: passed to `jaxloss.train.iterate_training`.

  Returns:
    The `RunResult`.
  """
  from jaxloss.train import checkpoints  # pylint: disable=import-outside-toplevel
  from jaxloss.train import iterate_training  # pylint: disable=import-outside-toplevel

  folder = os.path.join(out_dir, "runs", spec.run_id)
  run_json, rows_path = os.path.join(folder, "run.json"), os.path.join(folder, "metrics.jsonl")
  result_json, ckpt = os.path.join(folder, "result.json"), os.path.join(folder, "ckpt")
  identity = spec.identity()
  if os.path.exists(run_json):
    with open(run_json) as f:
      stored = json.load(f)
    if stored != identity:
      raise RunMismatchError(
          f"{folder} holds a different run: {_differences(stored, identity)}. Nothing was "
          "changed there. Use another --out, or delete that folder to train this run again.")
  else:
    common.write_json(run_json, identity)

  if os.path.exists(result_json):
    with open(result_json) as f:
      result = json.load(f)
    if bar is not None:
      bar.update(spec.config.epochs)
    return RunResult(spec.run_id, result["status"], _read_rows(rows_path),
                     {int(k): v for k, v in result["diverged"].items()},
                     result["wall_seconds"], None)

  done_epoch = checkpoints.latest_epoch(ckpt) or 0
  rows = [r for r in _read_rows(rows_path) if r["epoch"] <= done_epoch]
  diverged = {r["seed"]: r["epoch"] for r in rows if r.get("diverged")}
  wall = max((r["wall_seconds"] for r in rows), default=0.0)
  if bar is not None and done_epoch:
    bar.update(done_epoch)

  resume = (lambda like: checkpoints.restore(ckpt, like=like)) if done_epoch else None
  status = "done"
  for record in iterate_training(spec.config, data, loss_fn=spec.loss_fn,
                                 predict_fn=spec.predict_fn, seeds=spec.seeds, mesh=mesh,
                                 eval_fn=spec.eval_fn, resume=resume):
    wall += record.seconds
    new_rows = []
    flags = record.diverged
    for i, seed in enumerate(record.seeds):
      if seed in diverged:
        continue
      row = {"run": spec.run_id, "seed": seed, "epoch": record.epoch}
      row.update({k: _value(v[i]) for k, v in record.metrics.items()})
      row.update({"epoch_seconds": record.seconds, "wall_seconds": wall,
                  "compile_seconds": record.compile_seconds})
      if flags[i] or not math.isfinite(row["train_loss"]):
        row["diverged"] = True
        diverged[seed] = record.epoch
      new_rows.append(row)
    rows.extend(new_rows)
    _write_rows(rows_path, rows)
    if len(diverged) == len(spec.seeds):
      status = "diverged"
    else:
      checkpoints.save(ckpt, record.epoch, record.state)
    if bar is not None:
      bar.update(1)
    if on_epoch is not None:
      on_epoch(spec, new_rows)
    if status == "diverged":
      if bar is not None:
        bar.update(spec.config.epochs - record.epoch)
      break

  common.write_json(result_json, {"status": status, "diverged": diverged, "wall_seconds": wall,
                                  "epochs": max((r["epoch"] for r in rows), default=0)})
  shutil.rmtree(ckpt, ignore_errors=True)
  return RunResult(spec.run_id, status, rows, diverged, wall, done_epoch)


def select_learning_rate(make_spec: Callable[[float], RunSpec], learning_rates: Sequence[float],
                         val_data, out_dir: str, *, metric: str = "test_accuracy", bar=None,
                         on_epoch=None) -> tuple[float, list[dict[str, Any]]]:
  """Picks the learning rate with the best mean final `metric` on a validation split.

  Every rate in `learning_rates` gets one run ``make_spec(lr)`` on `val_data`
  (whose ``test_*`` arrays are the validation split, never the test set). A
  diverged run, or a diverged seed, scores -inf; ties go to the rate listed first.

  Returns:
    ``(best_lr, table)`` with one row per rate: ``lr``, ``score`` (mean over
    seeds), ``std``, ``status``, ``run_id``.
  """
  table = []
  for lr in learning_rates:
    spec = make_spec(lr)
    result = run(spec, val_data, out_dir, bar=bar, on_epoch=on_epoch)
    final = result.final(metric)
    if result.status == "diverged" or final.size == 0 or not np.all(np.isfinite(final)):
      score, std = -math.inf, math.nan
    else:
      score, std = common.mean_std(final)
    table.append({"lr": lr, "score": score, "std": std, "status": result.status,
                  "run_id": spec.run_id})
  best = max(range(len(table)), key=lambda i: (table[i]["score"], -i))
  return table[best]["lr"], table



@dataclasses.dataclass
class Tuned:
  """What `tune_and_run` returns: the chosen rate, the selection table and the final run."""

  lr: float
  table: list[dict[str, Any]]
  result: RunResult


def tune_and_run(make_spec: Callable[[float, str], RunSpec], learning_rates: Sequence[float],
                 data, val_data, out_dir: str, *, metric: str = "test_accuracy", bar=None,
                 on_epoch=None) -> Tuned:
  """The suite's fair protocol: select the rate on validation, then train and test.

  Args:
    make_spec: ``make_spec(lr, stage) -> RunSpec`` with ``stage`` ``"select"``
      (a run on `val_data`) or ``"final"`` (a run on `data`). The two stages
      need different run ids; a script may also give the selection fewer seeds.
    learning_rates: the grid (one entry skips the selection).
    data: the real train/test split.
    val_data: the same training data split into train/validation, e.g.
      `jaxloss.train.validation_split` (never the test set).
    metric: the validation metric to maximize (mean over seeds, final epoch).

  Returns:
    A `Tuned` with the chosen rate, the selection table (empty for one rate) and
    the final run's `RunResult`.
  """
  if len(learning_rates) == 1:
    lr, table = learning_rates[0], []
  else:
    lr, table = select_learning_rate(lambda rate: make_spec(rate, "select"), learning_rates,
                                     val_data, out_dir, metric=metric, bar=bar,
                                     on_epoch=on_epoch)
  return Tuned(lr, table, run(make_spec(lr, "final"), data, out_dir, bar=bar, on_epoch=on_epoch))
