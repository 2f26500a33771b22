"""The suite's protocol for one variant: a learning-rate grid, selection on validation, a test.

1. **Grid.** Adam peak rates at half decades (`half_decades`, default 1e-4 to 1e-2), times
   the variant's loss-hyperparameter values, every point with every seed: ONE vmapped
   program (`experiments.runs`, ``learning_rates`` / ``loss_params``).
2. **Selection** on the validation split, at the epochs, schedule and batch of the
   reported runs: the best mean final validation score over the seeds (a diverged seed
   scores -inf; ties go to the smaller rate, then the first value). When the chosen rate
   sits on an edge of a grid of two rates or more, the grid grows by a half decade that
   way, at most `MAX_EXTENSIONS` times, and the selection is redone.
3. **Test.** The selected point's models ARE the reported ones (same seeds and data, no
   retraining); their test metrics, computed once after training, are read for it alone.

Without a validation split there is nothing to select: one point, evaluated on the test
split after every epoch (the headline `experiments.compare` works this way).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments import runs

__all__ = ["MAX_EXTENSIONS", "Selected", "half_decades", "select_and_test"]

MAX_EXTENSIONS = 2  # per direction


def half_decades(low: float = 1e-4, high: float = 1e-2) -> tuple[float, ...]:
  """``10 ** (k / 2)`` from `low` to `high`: ``(1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2)``."""
  a, b = round(2 * math.log10(low)), round(2 * math.log10(high))
  return tuple(float(f"{10 ** (k / 2):.6g}") for k in range(a, b + 1))


def _step(rate: float, direction: int) -> float:
  return float(f"{10 ** (round(2 * math.log10(rate)) / 2 + direction / 2):.6g}")


@dataclasses.dataclass
class Selected:
  """What the protocol found for one variant.

  Attributes:
    point: the selected ``{"lr": rate, **loss params}``.
    table: one row per point tried: ``lr``, the loss params, ``score`` (mean final
      validation metric over seeds, -inf if a seed diverged), ``std``, ``status``.
    extended: the rates added because the winner sat on an edge (empty if none).
    result: the selected point as a `runs.RunResult` (its rows are the training curve on
      the evaluation split, its ``test`` the final test metrics of each seed).
    results: every run the selection trained, for the rows of ``metrics.jsonl``.
  """

  point: dict[str, float]
  table: list[dict[str, Any]]
  extended: list[float]
  result: runs.RunResult
  results: list[runs.RunResult]

  @property
  def lr(self) -> float:
    return self.point["lr"]

  @property
  def edge(self) -> str | None:
    """``"upper"`` or ``"lower"`` where the selected rate is the largest or smallest rate
    tried, after any extension: the grid does not bracket the optimum. None inside it, or
    when a single rate was tried (nothing selected)."""
    rates = sorted({row["lr"] for row in self.table})
    if len(rates) < 2 or rates[0] < self.lr < rates[-1]:
      return None
    return "upper" if self.lr == rates[-1] else "lower"


def _score(result: runs.RunResult, metric: str) -> tuple[float, float]:
  final = result.final(metric)
  if result.status == "diverged" or final.size == 0 or not np.all(np.isfinite(final)):
    return -math.inf, math.nan
  return float(np.mean(final)), float(np.std(final, ddof=1)) if final.size > 1 else 0.0


def _choose(table: list[dict[str, Any]], rows: Sequence[int]) -> int:
  """The best row among `rows`: highest score, then the smaller rate, then the first."""
  return min(rows, key=lambda i: (-table[i]["score"], table[i]["lr"], i))


def select_and_test(make_spec: Callable[..., runs.RunSpec], rates: Sequence[float], *,
                    params: Mapping[str, Sequence[float]] | None = None,
                    sweep: Mapping[str, Sequence[float]] | None = None, train, val, test,
                    out_dir: str, metric: str = "test_accuracy", extend: bool = True,
                    also: Mapping[str, Any] | None = None, bar=None,
                    say=print) -> dict[tuple, Selected]:
  """Runs the protocol (module docstring) for one variant.

  Args:
    make_spec: ``make_spec(tag, learning_rates, loss_params) -> RunSpec``; `tag` names
      the run (``"grid"``, ``"up1"``, ...) and must go into its id. Its config's rate
      must be ``rates[0]`` (used when the grid is that single rate).
    rates: the learning-rate grid.
    params: loss hyperparameters selected jointly with the rate, ``{name: values}``.
    sweep: loss hyperparameters NOT selected: every combination of their values is
      reported on its own (with its own selected rate), trained in the same program.
    train: ``(images, labels)`` to train on.
    val: ``(images, labels)`` to select on, or None (single point, evaluate on `test`).
    test: ``(images, labels)``, evaluated once after training.
    also: ``{split: (images, labels)}`` also evaluated then (`runs.run`), e.g. validation.
    metric: the evaluation metric to maximize (a key of the rows).
    extend: grow the grid (of two rates or more) when a winner sits on an edge.

  Returns:
    sweep values (a tuple in the order of `sweep`; ``()`` without one) -> `Selected`.
  """
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel

  grid = {**(params or {}), **(sweep or {})}
  names, swept = list(grid), list(sweep or {})
  combos = list(itertools.product(*grid.values())) or [()]
  if val is None and (len(rates) > 1 or len(combos) > len(list(itertools.product(
      *(sweep or {}).values())))):
    raise ValueError("without a validation split nothing is selected: give one rate "
                     "and no selected loss hyperparameters")
  eval_split = val if val is not None else test
  data = jt.Mnist(train[0], train[1], eval_split[0], eval_split[1])

  def train_rates(tag: str, lrs: Sequence[float]) -> runs.RunResult:
    points = [(r, c) for r in lrs for c in combos]
    loss_params = {n: tuple(c[j] for _, c in points) for j, n in enumerate(names)}
    # A lone first point runs as a plain run, at the config's rate (the caller sets it to
    # rates[0]): bit for bit what a script without a grid trains.
    plain = tag == "grid" and len(points) == 1 and not names
    spec = make_spec(tag, None if plain else tuple(r for r, _ in points), loss_params or None)
    return runs.run(spec, data, out_dir, bar=bar, test=test, also=also, say=say)

  results = [train_rates("grid", rates)]
  tried, extended = list(rates), []
  while True:
    table, points = [], []
    for result in results:
      for i, key in enumerate(result.points()):
        point = result.point(i)
        score, std = _score(point, metric)
        table.append({"lr": float(rates[0]), **key, "score": score, "std": std,
                      "status": point.status, "run_id": result.run_id})
        points.append(point)
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(table):
      groups.setdefault(tuple(row[n] for n in swept), []).append(i)
    best = {key: _choose(table, rows) for key, rows in groups.items()}
    edges = {1 if table[i]["lr"] == max(tried) else -1 if table[i]["lr"] == min(tried) else 0
             for i in best.values() if math.isfinite(table[i]["score"])} - {0}
    direction = max(edges, default=0)  # up first when winners sit on both edges
    used = sum(1 for r in extended if (r > max(rates)) == (direction > 0))
    if val is None or not extend or len(rates) == 1 or direction == 0 or used >= MAX_EXTENSIONS:
      break
    new = _step(max(tried) if direction > 0 else min(tried), direction)
    extended.append(new)
    tried.append(new)
    results.append(train_rates(("up" if direction > 0 else "down") + str(used + 1), [new]))
  out = {}
  for key, i in best.items():
    chosen = {k: v for k, v in table[i].items() if k not in ("score", "std", "status", "run_id")}
    rows = [dict(table[j]) for j in groups[key]]
    out[key] = Selected(chosen, rows, list(extended), points[i], results)
  return out
