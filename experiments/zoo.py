"""How does every classification loss of the classic tables compare on full MNIST?

Question: the registry holds 19 multi-class single-label losses (softmax
cross-entropy and its relatives, sigmoid losses, the Brier and square losses,
multi-class and one-vs-rest margin losses, and the fastai book's
sigmoid-difference loss). Trained the same way on full MNIST, which of them
match cross-entropy, which are clearly worse, and which fail outright? And how
does a one-hidden-layer 784-800-10 MLP compare with the published MNIST
results for MLPs of that size?

Protocol (the experiment suite's, issue #4):

* full MNIST (60k train / 10k test); every loss of
  ``jaxloss.multiclass()`` (``--losses``) with two MLPs
  (``--models``, default ``"512,512;800"``: the suite's default
  784-512-512-10 ReLU MLP and the one-hidden-layer 784-800-10 ReLU MLP of the
  classic tables); Adam with cosine decay to 0, batch 128, no weight decay, no
  augmentation;
* every (loss, model) gets the same learning-rate grid (``--lrs``), selected on
  a validation split of 10k training images (``validation_split(size=10000,
  seed=0)``, never the test set) by its final-epoch validation accuracy: ONE
  seed (the first of ``--seeds``), ``--select-epochs`` epochs (cosine schedule
  over those epochs); the final run trains all seeds for ``--epochs`` epochs on
  all 60k training images and is evaluated on the test set after every epoch;
* metrics (the trainer's default ones): test accuracy (argmax of the logits,
  every loss here predicts that way), NLL and 15-bin ECE of ``softmax(logits)``
  (for margin and square losses the logits are not trained to be
  log-probabilities: their NLL/ECE are those of the softmax of the scores),
  mean confidence; from them the final test error, the epochs to 98% test
  accuracy, and the wall time of each run.

Verdict rule (per model): the reference is softmax cross-entropy (or, when it
is not run or fails, the loss with the lowest mean test error). A loss
*fails* when a seed diverged or its mean final test error is at least
`FAIL_ERROR` %; otherwise it is *within noise* of the reference when the gap of
the means is at most twice the larger of the two seed standard deviations,
else *clearly worse* or *clearly better*.

Budget: the default configuration (19 losses x 2 models, 3 seeds, 10 final
epochs, 3 learning rates) is estimated at about 43 minutes on a 2-core CPU
(`estimate_seconds`); that is why ``--select-epochs`` defaults to 1 here
instead of the suite's 3 (with 3 it would be about 49 minutes).

``--quick``: 3 losses (cross-entropy, sigmoid-difference, Crammer-Singer
hinge), one 784-32-10 MLP, 2048/512 images, 2 epochs, 2 seeds and a single
learning rate (no selection runs: each run costs 4-5 CPU seconds of XLA
compilation whatever its size; add ``--lrs 1e-3,3e-3`` to smoke-test the
selection as well). Its numbers are meaningless.

Outputs in ``--out``: ``config.json``, ``metrics.jsonl`` (every row of every
run, selection runs included; keys ``run``, ``stage``, ``loss``, ``model``,
``hidden``, ``lr``), ``summary.md`` (a report section with the verdict),
``summary.json``, ``curves.png`` (test error vs epoch, log scale, one panel per
model) and ``final_error.png`` (final test error per loss, per model); the runs
themselves under ``runs/`` (resumable: the same command again skips finished
runs).

Example::

  JAXLOSS_MNIST_DIR=/work/shared/data/mnist python -m experiments.zoo
  python -m experiments.zoo --quick --out /tmp/zoo_quick
  python -m experiments.zoo --losses ce,brier,multiclass_hinge --models 800 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import common

__all__ = [
    "BASELINE",
    "DEFAULT_MODELS",
    "FAIL_ERROR",
    "PUBLISHED",
    "QUICK_LOSSES",
    "THRESHOLD",
    "build_parser",
    "classify",
    "crossing_text",
    "estimate_seconds",
    "failed",
    "json_ready",
    "main",
    "model_name",
    "model_tag",
    "model_verdict",
    "num_params",
    "parse_models",
    "plot_curves",
    "plot_final_errors",
    "reference_of",
    "seed_curve",
    "summarize_run",
    "summary_markdown",
    "verdict_text",
]

BASELINE = "softmax_cross_entropy"
NUM_CLASSES = 10
INPUT_DIM = 784
THRESHOLD = 98.0  # test accuracy (%) whose first crossing is reported
FAIL_ERROR = 10.0  # mean final test error (%) at or above which a loss "fails"
DEFAULT_MODELS = "512,512;800"
QUICK_LOSSES = ("softmax_cross_entropy", "sigmoid_difference", "multiclass_hinge_loss")
DEFAULTS = {"epochs": 10, "select_epochs": 1, "val_size": 10000}
# --quick: every setting the user left at its default becomes this tiny one. Each
# run costs about 4-5 CPU seconds of XLA compilation whatever its size (the init
# and the epoch program), so the smoke run keeps to 3 runs: one tiny MLP and a
# single learning rate (no selection runs; pass --lrs with two values to smoke-test
# the selection too).
QUICK = {"train_subset": 2048, "test_subset": 512, "models": "32", "epochs": 2,
         "select_epochs": 1, "seeds": (0, 1), "lrs": (3e-3,), "val_size": 512}
METRICS = ("test_accuracy", "test_nll", "test_ece", "test_confidence", "train_loss")

# Wall-time model of one run on the 2-core CPU this suite is sized for, calibrated
# on the default 784-512-512-10 MLP (60k images, 3 vmapped seeds: 5.2 s per epoch
# including the test evaluation; 1 seed on 50k: about 1.6 s per epoch):
# seconds per epoch = SEED_EPOCH_S * (seeds + SEED_OVERHEAD) * (N / 60000) *
# (params / params of 784-512-512-10), plus COMPILE_S per run.
SEED_EPOCH_S = 1.64
SEED_OVERHEAD = 0.17
COMPILE_S = 3.0

# Published MNIST test errors of MLPs, found with the project's search tools (see
# the report for the sources); "augmentation"/"regularization" say how they
# were trained differently from the runs here.
_LECUN_PAGE = ("LeCun, Cortes & Burges, The MNIST database, yann.lecun.com/exdb/mnist/, "
               "table 'Neural Nets'")
_SRIVASTAVA = ("Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, Dropout, "
               "JMLR 15 (2014) 1929-1958, Table 2")
PUBLISHED = (
    {"model": "784-800-10 (2-layer NN, 800 HU), cross-entropy", "error": 1.6,
     "augmentation": "none", "regularization": "none listed",
     "source": "Simard, Steinkraus & Platt, ICDAR 2003, via " + _LECUN_PAGE},
    {"model": "784-800-10, cross-entropy", "error": 1.1, "augmentation": "affine distortions",
     "regularization": "none listed",
     "source": "Simard, Steinkraus & Platt, ICDAR 2003, via " + _LECUN_PAGE},
    {"model": "784-800-10, MSE", "error": 0.9, "augmentation": "elastic distortions",
     "regularization": "none listed",
     "source": "Simard, Steinkraus & Platt, ICDAR 2003, via " + _LECUN_PAGE},
    {"model": "784-800-10, cross-entropy", "error": 0.7, "augmentation": "elastic distortions",
     "regularization": "none listed",
     "source": "Simard, Steinkraus & Platt, ICDAR 2003, via " + _LECUN_PAGE},
    {"model": "3-layer NN 500+300 HU, softmax, cross-entropy", "error": 1.53,
     "augmentation": "none", "regularization": "weight decay",
     "source": "Hinton, unpublished 2005, via " + _LECUN_PAGE},
    {"model": "Standard neural net (Simard et al. 2003)", "error": 1.60, "augmentation": "none",
     "regularization": "none", "source": _SRIVASTAVA},
    {"model": "Dropout NN, ReLU, 3 layers x 1024 units", "error": 1.25,
     "augmentation": "none", "regularization": "dropout", "source": _SRIVASTAVA},
    {"model": "Dropout NN + max-norm, ReLU, 3 layers x 1024 units", "error": 1.06,
     "augmentation": "none", "regularization": "dropout + max-norm", "source": _SRIVASTAVA},
    {"model": "Dropout NN + max-norm, ReLU, 2 layers x 8192 units", "error": 0.95,
     "augmentation": "none", "regularization": "dropout + max-norm", "source": _SRIVASTAVA},
)
PUBLISHED_800_CE = 1.6  # the row to set the 784-800-10 cross-entropy run against


# --------------------------------------------------------------------------- CLI


def parse_models(text: str) -> tuple[tuple[int, ...], ...]:
  """``"512,512;800"`` -> ``((512, 512), (800,))``: hidden widths, one MLP per ``;`` part."""
  parts = [p.strip() for p in str(text).split(";")]
  if not parts or any(not p for p in parts):
    raise argparse.ArgumentTypeError(
        f"expected ';'-separated hidden-width lists like '512,512;800', got {text!r}")
  models = tuple(common.parse_ints(p) for p in parts)
  if any(w < 1 for m in models for w in m):
    raise argparse.ArgumentTypeError(f"hidden widths must be positive, got {text!r}")
  if len(set(models)) != len(models):
    raise argparse.ArgumentTypeError(f"a model is listed twice in {text!r}")
  return models


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.zoo",
      description="Every multi-class loss of the registry on full MNIST with two MLPs "
                  "(784-512-512-10 and 784-800-10): test error, epochs to 98%, ECE, NLL and "
                  "wall time, learning rate selected per loss and model on a validation "
                  "split; the 784-800-10 results beside the published ones.",
      formatter_class=common.HelpFormatter)
  common.add_suite_args(parser, out="runs/zoo")
  group = parser.add_argument_group("experiment")
  group.add_argument("--losses", default=None,
                     help="comma-separated registry names or aliases (default: every "
                          "multi-class loss, jaxloss.multiclass(); --quick: "
                          + ",".join(QUICK_LOSSES) + ")")
  group.add_argument("--models", type=parse_models, default=None,
                     help=f"MLPs as ';'-separated hidden-width lists (default "
                          f"\"{DEFAULT_MODELS}\": 784-512-512-10 and 784-800-10; --quick: "
                          f"\"{QUICK['models']}\")")
  group.add_argument("--epochs", type=int, default=None,
                     help=f"epochs of the final runs (default {DEFAULTS['epochs']}; --quick: "
                          f"{QUICK['epochs']})")
  group.add_argument("--select-epochs", type=int, default=None,
                     help=f"epochs of each learning-rate selection run (default "
                          f"{DEFAULTS['select_epochs']}, reduced from the suite's 3 to fit the "
                          f"time budget; --quick: {QUICK['select_epochs']})")
  group.add_argument("--batch-size", type=int, default=128, help="training batch size")
  group.add_argument("--val-size", type=int, default=None,
                     help=f"validation images held out of the training set for the selection "
                          f"(default {DEFAULTS['val_size']}; --quick: {QUICK['val_size']})")
  return parser


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
  """Fills the None defaults, applies --quick to settings left at their default, checks."""
  import jaxloss  # pylint: disable=import-outside-toplevel

  for key, value in DEFAULTS.items():
    if getattr(args, key) is None:
      setattr(args, key, QUICK[key] if args.quick else value)
  if args.models is None:
    args.models = parse_models(QUICK["models"] if args.quick else DEFAULT_MODELS)
  if args.losses is None:
    names = list(QUICK_LOSSES) if args.quick else jaxloss.multiclass()
  else:
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
  if args.quick:
    if args.seeds == common.parse_seeds(parser.get_default("seeds")):
      args.seeds = QUICK["seeds"]
    if args.lrs == common.parse_floats(parser.get_default("lrs")):
      args.lrs = QUICK["lrs"]
    for key in ("train_subset", "test_subset"):
      if getattr(args, key) is None:
        setattr(args, key, QUICK[key])
  for name in ("epochs", "select_epochs", "val_size", "batch_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be a positive integer")
  if any(lr <= 0 for lr in args.lrs) or len(set(args.lrs)) != len(args.lrs):
    parser.error(f"--lrs must be distinct positive numbers, got {args.lrs}")
  canonical = []
  for name in names:
    try:
      spec = jaxloss.get(name)
    except ValueError as err:
      parser.error(f"--losses: {err}")
    if not spec.multiclass:
      parser.error(f"--losses: {spec.name!r} is not a single-label multi-class loss")
    canonical.append(spec.name)
  if not canonical or len(set(canonical)) != len(canonical):
    parser.error(f"--losses must name at least one loss, each once; got {canonical}")
  # The reference first, so its numbers exist before the others'.
  args.losses = tuple(sorted(canonical, key=lambda n: n != BASELINE))
  return args


# --------------------------------------------------------------------------- pure pieces


def model_name(hidden: Sequence[int]) -> str:
  """``(800,)`` -> ``"784-800-10"``."""
  return "-".join(str(w) for w in (INPUT_DIM, *hidden, NUM_CLASSES))


def model_tag(hidden: Sequence[int]) -> str:
  """Run-id stem of a model: ``(512, 512)`` -> ``"h512x512"``, ``()`` -> ``"h0"``."""
  return "h" + ("x".join(str(w) for w in hidden) if hidden else "0")


def num_params(hidden: Sequence[int]) -> int:
  """Weights and biases of the MLP ``784 -> hidden... -> 10``."""
  widths = (INPUT_DIM, *hidden, NUM_CLASSES)
  return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def estimate_seconds(*, models: Sequence[Sequence[int]], n_losses: int, n_lrs: int,
                     seeds: int, epochs: int, select_epochs: int, n_train: int = 60000,
                     val_size: int = 10000) -> dict[str, float]:
  """Estimated wall seconds of a configuration on the suite's 2-core CPU.

  Uses the calibration constants `SEED_EPOCH_S`, `SEED_OVERHEAD`, `COMPILE_S`
  (one compilation per run; the selection has no runs with a single rate).

  Returns:
    ``{"select": s, "final": s, "total": s}``.
  """
  ref = num_params((512, 512))
  select = final = 0.0
  for hidden in models:
    scale = num_params(hidden) / ref
    per_final = COMPILE_S + epochs * SEED_EPOCH_S * (seeds + SEED_OVERHEAD) * (
        n_train / 60000) * scale
    per_select = COMPILE_S + select_epochs * SEED_EPOCH_S * (1 + SEED_OVERHEAD) * (
        (n_train - val_size) / 60000) * scale
    final += n_losses * per_final
    if n_lrs > 1:
      select += n_losses * n_lrs * per_select
  return {"select": select, "final": final, "total": select + final}


def json_ready(obj):
  """`obj` with every non-finite float replaced by None (strict JSON), tuples as lists."""
  if isinstance(obj, Mapping):
    return {str(k): json_ready(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_ready(v) for v in obj]
  if isinstance(obj, (float, np.floating)):
    return float(obj) if math.isfinite(obj) else None
  if isinstance(obj, np.integer):
    return int(obj)
  return obj


def _finite(values) -> list[float]:
  return [float(v) for v in np.asarray(values, np.float64).ravel() if math.isfinite(v)]


def seed_curve(result, metric: str, epochs: int) -> np.ndarray:
  """``[epochs, seeds]`` values of `metric`, NaN from each seed's divergence epoch on.

  `result` is a `experiments.runs.RunResult`; the curve is padded with NaN to
  `epochs` (a run that diverged stops early).
  """
  curve = np.asarray(result.curve(metric), np.float64)
  out = np.full((epochs, curve.shape[1]), np.nan)
  n = min(epochs, curve.shape[0])
  out[:n] = curve[:n]
  for i, seed in enumerate(result.seeds):
    if seed in result.diverged:
      out[int(result.diverged[seed]) - 1:, i] = np.nan
  return out


def summarize_run(result, *, epochs: int, threshold: float = THRESHOLD) -> dict[str, Any]:
  """The key numbers of one final run (a `RunResult`): errors in %, crossings, calibration.

  Returns:
    A JSON-ready dict: ``error`` (per seed, %; None for a diverged seed),
    ``error_mean``/``error_std`` (over the finite seeds), ``epochs_to``
    (per seed: first epoch with test accuracy >= `threshold` %, or None),
    ``ece_mean``/``ece_std`` (%), ``nll_mean``/``nll_std``,
    ``confidence_mean``, ``train_loss_mean``, ``status``, ``diverged``
    (seed -> epoch), ``n_diverged``, ``wall_seconds`` (training + evaluation,
    compile excluded), ``compile_seconds``, ``error_curve`` (``[epochs]``
    mean test error % per epoch, NaN as None).
  """
  acc = 100.0 * seed_curve(result, "test_accuracy", epochs)
  err = 100.0 - acc
  final = err[-1]
  crossings = [common.first_crossing(acc[:, s], threshold) for s in range(acc.shape[1])]
  out: dict[str, Any] = {
      "seeds": list(result.seeds),
      "error": [float(v) if math.isfinite(v) else None for v in final],
      "epochs_to": [None if c is None else c + 1 for c in crossings],
      "status": result.status,
      "diverged": {int(k): int(v) for k, v in result.diverged.items()},
      "n_diverged": len(result.diverged),
      "wall_seconds": float(result.wall_seconds),
      "compile_seconds": float(max((r.get("compile_seconds", 0.0) for r in result.rows),
                                   default=0.0)),
  }
  out["error_mean"], out["error_std"] = common.mean_std(_finite(final))
  for key, metric, scale in (("ece", "test_ece", 100.0), ("nll", "test_nll", 1.0),
                             ("confidence", "test_confidence", 1.0),
                             ("train_loss", "train_loss", 1.0)):
    values = scale * seed_curve(result, metric, epochs)[-1]
    out[f"{key}_mean"], out[f"{key}_std"] = common.mean_std(_finite(values))
  with warnings.catch_warnings():  # all-NaN epochs (every seed diverged) give NaN
    warnings.simplefilter("ignore", RuntimeWarning)
    mean_curve = np.nanmean(err, axis=1) if err.size else np.array([])
  out["error_curve"] = [float(v) if math.isfinite(v) else None for v in mean_curve]
  return out


def crossing_text(epochs_to: Sequence[int | None]) -> str:
  """``[3, 4, None]`` -> ``"3.5 (2/3 seeds)"``; all None -> ``"never"``."""
  reached = [e for e in epochs_to if e is not None]
  if not reached:
    return "never"
  text = f"{np.mean(reached):.1f}"
  if len(reached) == len(epochs_to):
    return text
  return f"{text} ({len(reached)}/{len(epochs_to)} seeds)"


def failed(entry: Mapping[str, Any], *, fail_error: float = FAIL_ERROR) -> bool:
  """A run fails when a seed diverged or its mean final test error is >= `fail_error` %."""
  mean = entry.get("error_mean", math.nan)
  return (entry.get("status") == "diverged" or entry.get("n_diverged", 0) > 0
          or not math.isfinite(mean) or mean >= fail_error)


def classify(mean: float, std: float, ref_mean: float, ref_std: float, *,
             is_failed: bool = False) -> str:
  """``"fails"``, ``"within noise"``, ``"clearly worse"`` or ``"clearly better"`` vs a reference.

  Within noise: ``abs(mean - ref_mean) <= 2 * max(std, ref_std)`` (errors in %,
  lower is better).
  """
  if is_failed:
    return "fails"
  gap = mean - ref_mean
  # 1e-9: a gap equal to the bound in decimal (1.60 vs 1.50, std 0.05) is within
  # noise even when its binary difference is a hair above 0.1.
  if abs(gap) <= 2.0 * max(std, ref_std) + 1e-9:
    return "within noise"
  return "clearly worse" if gap > 0 else "clearly better"


def reference_of(entries: Mapping[str, Mapping[str, Any]], *,
                 fail_error: float = FAIL_ERROR) -> str | None:
  """Cross-entropy if run and not failed, else the non-failed loss with the lowest mean error."""
  if BASELINE in entries and not failed(entries[BASELINE], fail_error=fail_error):
    return BASELINE
  ok = [n for n, e in entries.items() if not failed(e, fail_error=fail_error)]
  return min(ok, key=lambda n: entries[n]["error_mean"]) if ok else None


def model_verdict(entries: Mapping[str, Mapping[str, Any]], *,
                  fail_error: float = FAIL_ERROR) -> dict[str, Any]:
  """Classifies every loss of one model against the reference (`reference_of`).

  Returns:
    ``{"reference": name or None, "classes": {loss: class}, "delta": {loss:
    mean error - reference mean error (points)}}``; class ``"reference"`` for
    the reference itself.
  """
  ref = reference_of(entries, fail_error=fail_error)
  classes, delta = {}, {}
  for name, e in entries.items():
    if failed(e, fail_error=fail_error):
      classes[name] = "fails"
    elif name == ref:
      classes[name] = "reference"
    else:
      r = entries[ref]
      classes[name] = classify(e["error_mean"], e["error_std"], r["error_mean"], r["error_std"])
    if ref is not None and math.isfinite(e.get("error_mean", math.nan)):
      delta[name] = e["error_mean"] - entries[ref]["error_mean"]
  return {"reference": ref, "classes": classes, "delta": delta}


def _pm(mean: float, std: float, digits: int = 2) -> str:
  return "n/a" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _seconds(x: float) -> str:
  return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _fail_reason(e: Mapping[str, Any], fail_error: float) -> str:
  if e.get("n_diverged", 0):
    return f"diverged in {e['n_diverged']}/{len(e['seeds'])} seeds"
  return f"{e['error_mean']:.1f}% error"


def verdict_text(models: Sequence[Mapping[str, Any]], *, epochs: int, quick: bool = False,
                 fail_error: float = FAIL_ERROR) -> str:
  """The verdict paragraph (one paragraph, no ``|``), generated from the numbers.

  Args:
    models: one dict per model with ``name`` (e.g. ``"784-800-10"``),
      ``hidden``, ``entries`` (loss -> `summarize_run` dict) and ``verdict``
      (`model_verdict`).
    epochs: final-run epochs (for the wording).
    quick: prefix the quick-mode warning.
  """
  parts = ["(Quick mode: tiny data and models, numbers meaningless.)"] if quick else []
  for m in models:
    entries, v = m["entries"], m["verdict"]
    ref = v["reference"]
    if ref is None:
      parts.append(f"{m['name']}: every loss fails (diverged, or mean test error of "
                   f"{fail_error:g}% or more).")
      continue
    r = entries[ref]
    head = (f"{m['name']}: {ref} ends at {_pm(r['error_mean'], r['error_std'])}% test error "
            f"after {epochs} epochs")
    if ref != BASELINE:
      head += (" (the reference here, as softmax_cross_entropy "
               + ("fails" if BASELINE in entries else "was not run") + ")")
    groups = {c: [n for n, k in v["classes"].items() if k == c]
              for c in ("within noise", "clearly better", "clearly worse", "fails")}
    order = lambda names: sorted(names, key=lambda n: entries[n]["error_mean"]  # noqa: E731
                                 if math.isfinite(entries[n]["error_mean"]) else math.inf)
    clauses = []
    if groups["within noise"]:
      clauses.append("within noise of it (gap of the means at most twice the larger seed "
                     "std): " + ", ".join(
                         f"{n} ({_pm(entries[n]['error_mean'], entries[n]['error_std'])}%)"
                         for n in order(groups["within noise"])))
    else:
      clauses.append("no loss is within noise of it")
    if groups["clearly better"]:
      clauses.append("clearly better: " + ", ".join(
          f"{n} ({v['delta'][n]:+.2f} points)" for n in order(groups["clearly better"])))
    if groups["clearly worse"]:
      clauses.append("clearly worse: " + ", ".join(
          f"{n} ({v['delta'][n]:+.2f} points)" for n in order(groups["clearly worse"])))
    if groups["fails"]:
      clauses.append(f"fail (a diverged seed, or {fail_error:g}% test error or more): "
                     + ", ".join(f"{n} ({_fail_reason(entries[n], fail_error)})"
                                 for n in order(groups["fails"])))
    parts.append(head + "; " + "; ".join(clauses) + ".")
  if len(models) > 1:
    common_groups = []
    for label, cls in (("within noise of the reference", "within noise"),
                       ("clearly worse", "clearly worse"), ("failing", "fails")):
      names = [n for n in models[0]["entries"]
               if all(m["verdict"]["classes"].get(n) == cls for m in models)]
      if names:
        common_groups.append(f"{label}: {', '.join(sorted(names))}")
    if common_groups:
      parts.append("In every model, " + "; ".join(common_groups) + ".")
    else:
      parts.append("No loss falls in the same class in every model.")
  for m in models:
    if tuple(m["hidden"]) != (800,) or BASELINE not in m["entries"]:
      continue
    e = m["entries"][BASELINE]
    if failed(e, fail_error=fail_error):
      parts.append(f"The 784-800-10 cross-entropy run fails here, so it cannot be set "
                   f"against the published {PUBLISHED_800_CE:g}%.")
      continue
    gap = e["error_mean"] - PUBLISHED_800_CE
    noise = 2.0 * e["error_std"]
    if abs(gap) <= noise:
      rel = "about the same as"
    else:
      rel = f"{abs(gap):.2f} points {'above' if gap > 0 else 'below'}"
    parts.append(
        f"The 784-800-10 cross-entropy MLP here ({_pm(e['error_mean'], e['error_std'])}% after "
        f"{epochs} epochs, no augmentation, no regularization) is {rel} the "
        f"{PUBLISHED_800_CE:g}% published for that size without distortions (Simard et al. "
        "2003); the lower published MLP errors use distortions of the training images "
        "(1.1% affine, 0.7% elastic) or dropout on larger nets (1.25%, 1.06% with max-norm; "
        "Srivastava et al. 2014).")
  return " ".join(parts)


# --------------------------------------------------------------------------- report


def _results_table(m: Mapping[str, Any], *, lrs_chosen: Mapping[str, float]) -> list[str]:
  entries, v = m["entries"], m["verdict"]
  ref = v["reference"]
  lines = [
      f"| loss | lr | final test error % | Δ vs {ref or 'reference'} (points) | epochs to "
      f"{THRESHOLD:g}% | ECE % | NLL (softmax) | mean conf. | final run s | selection s "
      "| class |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  names = sorted(entries, key=lambda n: (entries[n]["error_mean"]
                                         if math.isfinite(entries[n]["error_mean"])
                                         else math.inf))
  for n in names:
    e = entries[n]
    delta = v["delta"].get(n)
    delta_text = "—" if n == ref or delta is None else f"{delta:+.2f}"
    err = _pm(e["error_mean"], e["error_std"])
    if e["n_diverged"]:
      err += f" ({e['n_diverged']}/{len(e['seeds'])} seeds diverged)"
    lines.append(
        f"| {n} | {lrs_chosen[n]:g} | {err} | {delta_text} | {crossing_text(e['epochs_to'])} "
        f"| {_pm(e['ece_mean'], e['ece_std'])} | {_pm(e['nll_mean'], e['nll_std'], 3)} "
        f"| {e['confidence_mean']:.3f} | {_seconds(e['wall_seconds'])} "
        f"| {_seconds(e['select_seconds'])} "
        f"| {v['classes'][n]} |")
  return lines


def _selection_table(models: Sequence[Mapping[str, Any]], lrs: Sequence[float],
                     losses: Sequence[str]) -> list[str]:
  head = "| loss | " + " | ".join(f"{m['name']} lr {lr:g}" for m in models for lr in lrs) + " |"
  lines = [head, "|---|" + "---|" * (len(models) * len(lrs))]
  for n in losses:
    cells = []
    for m in models:
      table = {row["lr"]: row for row in m["selection"][n]}
      for lr in lrs:
        row = table.get(lr)
        if row is None:
          cells.append("—")
          continue
        text = ("diverged" if row["status"] == "diverged" or not math.isfinite(row["score"])
                else f"{100 * row['score']:.2f}")
        cells.append(f"**{text}**" if lr == m["lrs"][n] else text)
    lines.append(f"| {n} | " + " | ".join(cells) + " |")
  return lines


def summary_markdown(summary: Mapping[str, Any]) -> str:
  """The report section (``summary.md``)."""
  s = summary["settings"]
  models = summary["models"]
  quick = s["quick"]
  title = ("## How does every classification loss compare on full MNIST? "
           f"({len(s['losses'])} multi-class losses, {len(models)} MLPs)")
  lines = [title + (" (quick mode)" if quick else ""), ""]
  if quick:
    lines += ["**Quick mode**: a smoke run on tiny data and models; the numbers are "
              "meaningless.", ""]
  est = s["estimate_default_seconds"]
  lines += [
      f"Setup: MNIST {s['train_examples']} training / {s['test_examples']} test images; "
      f"MLPs {', '.join(m['name'] + ' ReLU' for m in models)} (lecun_normal init); every "
      f"multi-class loss of the registry ({len(s['losses'])}); Adam with cosine decay to 0, "
      f"batch {s['batch_size']}, no weight decay, no augmentation. Protocol: every (loss, "
      f"model) gets the same learning-rate grid {', '.join(f'{lr:g}' for lr in s['lrs'])}, "
      f"selected by final validation accuracy on {s['val_size']} images held out of the "
      f"training set (seed 0; never the test set), with ONE seed ({s['select_seeds'][0]}) and "
      f"{s['select_epochs']} epoch(s) (cosine over those epochs); the final run trains seeds "
      f"{s['seeds']} for {s['epochs']} epochs on all {s['train_examples']} training images. "
      f"Mean ± std over seeds. Device: {s['device']}. Wall time of this invocation "
      f"{summary['wall_seconds'] / 60:.1f} min (runs: {summary['train_seconds'] / 60:.1f} min, "
      "compile excluded; runs finished earlier are read back).",
      "",
      f"Budget: the default configuration ({len(s['default_losses'])} losses x 2 models, 3 "
      f"seeds, 3 rates, {DEFAULTS['epochs']} final epochs) is estimated at "
      f"{est['total'] / 60:.0f} min on the suite's 2-core CPU (selection "
      f"{est['select'] / 60:.0f} min, final runs {est['final'] / 60:.0f} min, about "
      f"{COMPILE_S:g} s of compilation per run included); with the suite's 3 selection epochs "
      f"it would be {s['estimate_default_seconds_select3']['total'] / 60:.0f} min, over the "
      f"45-min budget, so --select-epochs defaults to {DEFAULTS['select_epochs']} here while "
      f"the final runs keep {DEFAULTS['epochs']} epochs. This invocation's own estimate: "
      f"{s['estimate_seconds']['total'] / 60:.1f} min.",
      "",
      "```",
      s["command"],
      "```",
      "",
  ]
  for m in models:
    lines += [f"### {m['name']} ReLU MLP", ""]
    lines += _results_table(m, lrs_chosen=m["lrs"])
    lines.append("")
  lines += [
      f"Columns: final test error after the last epoch; epochs to {THRESHOLD:g}% = first "
      "epoch whose test accuracy reaches it (mean over the seeds that reach it); ECE (15 "
      "equal-width bins), NLL and mean confidence use softmax(logits) whatever the loss — for "
      "the margin and square losses (ovr_*, multiclass_hinge*, square_loss) the logits are "
      "not log-probabilities, so their NLL/ECE only describe the softmax of their scores; the "
      "sigmoid losses' own probabilities would be sigmoid(logits). Seconds: wall time of the "
      "final run (all seeds together, training + test evaluation, compile excluded) and of "
      "its learning-rate selection runs. Class: the verdict rule (module docstring of "
      "experiments/zoo.py): fails = a diverged seed or a mean test error of "
      f"{FAIL_ERROR:g}% or more (LeCun's MNIST table lists 12% for a linear classifier, so "
      "such a run has not learned what an MLP learns); within noise = gap of the means at "
      "most twice the larger seed std.",
      "",
      "![test error vs epoch, every loss, one panel per model](curves.png)",
      "",
      "![final test error per loss](final_error.png)",
      "",
      "### Beside the published MNIST results for MLPs of this size",
      "",
      "| model | training | test error % | source |",
      "|---|---|---|---|",
  ]
  for p in PUBLISHED:
    lines.append(f"| {p['model']} | augmentation: {p['augmentation']}; regularization: "
                 f"{p['regularization']} | {p['error']:g} | {p['source']} |")
  ours = [m for m in models if tuple(m["hidden"]) == (800,)]
  for m in ours:
    entries = m["entries"]
    ok = [n for n in entries if not failed(entries[n])]
    picks = []
    if BASELINE in entries:
      picks.append(BASELINE)
    if ok:
      best = min(ok, key=lambda n: entries[n]["error_mean"])
      if best not in picks:
        picks.append(best)
    for n in ("square_loss", "ovr_square"):  # the MSE-like losses, beside the MSE row
      if n in entries and n not in picks:
        picks.append(n)
    for n in picks:
      e = entries[n]
      lines.append(f"| **this run**: 784-800-10 ReLU, {n} | Adam + cosine, {s['epochs']} epochs, "
                   f"batch {s['batch_size']}; augmentation: none; regularization: none | "
                   f"{_pm(e['error_mean'], e['error_std'])} | this experiment |")
  if not ours:
    lines.append("| **this run** | no 784-800-10 model was run (see --models) | — | — |")
  lines += [
      "",
      "Sources: the LeCun-Cortes-Burges MNIST page's 'Neural Nets' table (rows '2-layer NN, "
      "800 HU, Cross-Entropy Loss' 1.6, '... cross-entropy [affine distortions]' 1.1, '... MSE "
      "[elastic distortions]' 0.9, '... cross-entropy [elastic distortions]' 0.7, all Simard, "
      "Steinkraus & Platt, 'Best practices for convolutional neural networks applied to visual "
      "document analysis', ICDAR 2003; '3-layer NN, 500+300 HU, softmax, cross entropy, weight "
      "decay' 1.53, Hinton, unpublished 2005), read in public copies of that table; Srivastava "
      "et al. 2014, Table 2 ('Comparison of different models on MNIST'), as quoted by public "
      "reproductions of the paper (the paper's own text was not in the searchable corpus). "
      "'2-layer NN' in LeCun's table means two weight layers, i.e. one hidden layer, the "
      "784-800-10 MLP here; Srivastava et al.'s '3 layers x 1024 units' are larger nets.",
      "",
      "Differences in training: our runs are short (Adam, cosine, "
      f"{s['epochs']} epochs; a rate picked from {len(s['lrs'])} values on a validation "
      "split), with no augmentation and no regularization of any kind (no weight decay, no "
      "dropout, no early stopping on the test set). Simard et al.'s 1.6% row also has no "
      "distortions; their 1.1% / 0.9% / 0.7% rows train on affinely or elastically distorted "
      "copies of the training images (data augmentation), which the table marks. Srivastava "
      "et al.'s dropout nets are regularized (dropout; max-norm weight constraints in the "
      "1.06% / 0.95% rows), wider and deeper, and trained far longer (a reproduction report "
      "lists 10^6 weight updates with the paper's Appendix B.1 settings, against "
      f"{s['epochs']} x {s['train_examples'] // s['batch_size']} = "
      f"{s['epochs'] * (s['train_examples'] // s['batch_size'])} here).",
      "",
      f"Learning-rate selection (validation accuracy %, seed {s['select_seeds'][0]}, "
      f"{s['select_epochs']} epoch(s); the chosen rate in bold; ties go to the rate listed "
      "first):",
      "",
  ]
  if len(s["lrs"]) > 1:
    lines += _selection_table(models, s["lrs"], s["losses"])
  else:
    lines.append(f"(one rate, {s['lrs'][0]:g}: no selection)")
  diverged = [f"{m['name']} {n} (seeds {sorted(e['diverged'])})"
              for m in models for n, e in m["entries"].items() if e["n_diverged"]]
  sel_div = [f"{m['name']} {n} lr {row['lr']:g}" for m in models for n in s["losses"]
             for row in m["selection"][n] if row["status"] == "diverged"]
  lines += ["", "Divergence: " + ("final runs: " + "; ".join(diverged) if diverged
                                  else "no final run diverged")
            + ("; selection runs: " + "; ".join(sel_div) if sel_div
               else "; no selection run diverged") + ".", ""]
  lines += ["**Verdict.** " + summary["verdict"], ""]
  return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def _colors(n: int):
  import matplotlib  # pylint: disable=import-outside-toplevel

  if n <= 20:
    # tab20 pairs a dark and a light shade of each hue: the ten dark shades
    # first, so that up to ten lines all get different hues.
    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i) for i in (list(range(0, 20, 2)) + list(range(1, 20, 2)))[:n]]
  cmap = matplotlib.colormaps["turbo"]
  return [cmap(x) for x in np.linspace(0.0, 1.0, n)]


def _plain_log_ticks(axis) -> None:
  """Log-scale tick labels as plain numbers (``0.5``, ``2``, ``20``), not powers of ten."""
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel

  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axis.set_minor_formatter(ticker.FuncFormatter(
      lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))


def plot_curves(models: Sequence[Mapping[str, Any]], losses: Sequence[str], path: str) -> None:
  """curves.png: mean test error % (log scale) vs epoch, every loss, one panel per model."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models) + 0.5, 5.0),
                           sharey=True, squeeze=False)
  colors = _colors(len(losses))
  styles = ("-", "--", "-.", ":")
  handles = {}
  for ax, m in zip(axes[0], models):
    for i, n in enumerate(losses):
      e = m["entries"].get(n)
      if e is None:
        continue
      y = np.array([np.nan if v is None else v for v in e["error_curve"]], np.float64)
      x = np.arange(1, len(y) + 1)
      kwargs = ({"color": "black", "linewidth": 2.6, "linestyle": "-", "zorder": 5}
                if n == BASELINE else
                {"color": colors[i], "linewidth": 1.4, "linestyle": styles[i % len(styles)]})
      (line,) = ax.plot(x, y, marker=".", markersize=4, label=n, **kwargs)
      handles[n] = line
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title(f"{m['name']} ReLU")
    ax.set_xlabel("epoch")
    ax.grid(True, which="both", alpha=0.3)
  axes[0][0].set_ylabel("test error % (log scale), mean over seeds")
  fig.legend([handles[n] for n in losses if n in handles],
             [n for n in losses if n in handles], loc="center left",
             bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
  fig.suptitle("Full MNIST: test error of every loss (learning rate selected per loss)")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


def plot_final_errors(models: Sequence[Mapping[str, Any]], path: str) -> None:
  """final_error.png: final test error % per loss (mean ± std, log scale), one panel per model."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  n_rows = max(len(m["entries"]) for m in models)
  fig, axes = plt.subplots(1, len(models), figsize=(6.0 * len(models), 0.32 * n_rows + 1.6),
                           squeeze=False)
  colors = {"reference": "black", "within noise": "tab:green", "clearly better": "tab:blue",
            "clearly worse": "tab:orange", "fails": "tab:red"}
  for ax, m in zip(axes[0], models):
    entries, v = m["entries"], m["verdict"]
    names = sorted(entries, key=lambda n: (entries[n]["error_mean"]
                                           if math.isfinite(entries[n]["error_mean"])
                                           else math.inf), reverse=True)
    for i, n in enumerate(names):
      e = entries[n]
      if not math.isfinite(e["error_mean"]):
        continue
      ax.errorbar(e["error_mean"], i, xerr=e["error_std"], fmt="o",
                  color=colors[v["classes"][n]], capsize=3)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ref = v["reference"]
    if ref is not None:
      r = entries[ref]
      ax.axvspan(max(r["error_mean"] - 2 * r["error_std"], 1e-3),
                 r["error_mean"] + 2 * r["error_std"], color="0.85", zorder=0,
                 label=f"{ref} ± 2 std")
    if tuple(m["hidden"]) == (800,):
      ax.axvline(PUBLISHED_800_CE, color="tab:purple", linestyle="--",
                 label=f"published 784-800-10 CE, {PUBLISHED_800_CE:g}% (Simard et al. 2003)")
    for cls, color in colors.items():
      if cls in v["classes"].values():
        ax.plot([], [], "o", color=color, label=cls)
    ax.set_xlabel("final test error % (log scale), mean ± std over seeds")
    ax.set_title(f"{m['name']} ReLU")
    ax.grid(True, which="both", axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              frameon=False)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = build_parser()
  args = _resolve(parser.parse_args(argv), parser)
  t_start = time.perf_counter()
  env = common.print_device()

  import jaxloss  # pylint: disable=import-outside-toplevel
  from jaxloss import train as jt  # pylint: disable=import-outside-toplevel
  from experiments import runs  # pylint: disable=import-outside-toplevel

  data = common.load_mnist_or_exit(args)
  n_train = int(data.train_labels.shape[0])
  if not 1 <= args.val_size <= n_train - 1:
    raise SystemExit(f"--val-size must be in [1, {n_train - 1}], got {args.val_size}")
  val = jt.to_device(jt.validation_split(data, size=args.val_size, seed=0))
  data = jt.to_device(data)
  out = args.out
  os.makedirs(out, exist_ok=True)
  dev = env["device"]
  estimate = estimate_seconds(models=args.models, n_losses=len(args.losses), n_lrs=len(args.lrs),
                              seeds=len(args.seeds), epochs=args.epochs,
                              select_epochs=args.select_epochs, n_train=n_train,
                              val_size=args.val_size)
  default_losses = jaxloss.multiclass()
  estimate_default, estimate_select3 = (estimate_seconds(
      models=parse_models(DEFAULT_MODELS), n_losses=len(default_losses),
      n_lrs=len(runs.ADAM_LR_GRID), seeds=3, epochs=DEFAULTS["epochs"], select_epochs=e)
      for e in (DEFAULTS["select_epochs"], 3))
  print(f"{len(args.losses)} loss(es) x {len(args.models)} model(s); estimated "
        f"{estimate['total'] / 60:.1f} min on a 2-core CPU", flush=True)
  settings = {
      "quick": bool(args.quick), "losses": list(args.losses),
      "models": [list(h) for h in args.models],
      "model_names": [model_name(h) for h in args.models], "seeds": list(args.seeds),
      "lrs": list(args.lrs), "epochs": args.epochs, "select_epochs": args.select_epochs,
      "select_seeds": [args.seeds[0]], "batch_size": args.batch_size,
      "val_size": args.val_size, "val_seed": 0, "optimizer": "adam", "schedule": "cosine",
      "activation": "relu", "initializer": "lecun_normal", "train_examples": n_train,
      "test_examples": int(data.test_labels.shape[0]), "threshold": THRESHOLD,
      "fail_error": FAIL_ERROR, "selection_metric": "final validation accuracy",
      "device": f"{dev['platform'].upper()} ({dev['device_kind']})",
      "estimate_seconds": estimate, "estimate_default_seconds": estimate_default,
      "estimate_default_seconds_select3": estimate_select3, "default_losses": default_losses,
      "command": shlex.join(["python", "-m", "experiments.zoo",
                             *(sys.argv[1:] if argv is None else argv)]),
  }
  config = {"environment": env, "args": vars(args), "settings": settings}
  common.write_json(os.path.join(out, "config.json"), config)

  def make_spec(lr, stage, *, loss, hidden):
    select = stage == "select"
    config_ = jt.TrainConfig(hidden=hidden, activation="relu", num_classes=NUM_CLASSES,
                             optimizer="adam", learning_rate=lr, schedule="cosine",
                             batch_size=args.batch_size,
                             epochs=args.select_epochs if select else args.epochs)
    describe = {"experiment": "zoo", "loss": loss.name, "hyperparams": dict(loss.hyperparams),
                "model": model_name(hidden), "stage": stage, "lr": lr,
                "train_subset": args.train_subset, "test_subset": args.test_subset,
                "val_size": args.val_size, "val_seed": 0,
                "eval_split": "validation" if select else "test"}
    return runs.RunSpec(f"{model_tag(hidden)}-{loss.name}-{stage}-lr{lr:g}", config_,
                        loss.loss_from_labels, loss.predict,
                        seeds=tuple(args.seeds[:1]) if select else tuple(args.seeds),
                        describe=describe)

  select_total = args.select_epochs * len(args.lrs) if len(args.lrs) > 1 else 0
  total = len(args.models) * len(args.losses) * (select_total + args.epochs)
  rows_all: list[dict[str, Any]] = []
  model_results = []
  train_seconds = 0.0
  with common.progress(total, "zoo", disable=args.no_progress) as bar:
    for hidden in args.models:
      entries, selection, chosen = {}, {}, {}
      for name in args.losses:
        loss = jaxloss.get(name)
        keys = {"loss": name, "model": model_name(hidden), "hidden": list(hidden)}
        bar.set_postfix_str(f"{model_name(hidden)} {name}")
        spec_fn = lambda lr, stage, loss=loss, hidden=hidden: make_spec(  # noqa: E731
            lr, stage, loss=loss, hidden=hidden)
        tuned = runs.tune_and_run(spec_fn, args.lrs, data, val, out, bar=bar)
        select_seconds = 0.0
        for row in tuned.table:  # Read back (already finished): their rows for metrics.jsonl.
          sel = runs.run(spec_fn(row["lr"], "select"), val, out)
          select_seconds += sel.wall_seconds
          rows_all += [{**r, "stage": "select", "lr": row["lr"], **keys} for r in sel.rows]
        result = tuned.result
        rows_all += [{**r, "stage": "final", "lr": tuned.lr, **keys} for r in result.rows]
        entry = summarize_run(result, epochs=args.epochs)
        entry["select_seconds"] = select_seconds
        entry["lr"] = tuned.lr
        entries[name] = entry
        selection[name] = [{k: row[k] for k in ("lr", "score", "std", "status", "run_id")}
                           for row in tuned.table]
        chosen[name] = tuned.lr
        train_seconds += result.wall_seconds + select_seconds
        common.write_text(os.path.join(out, "metrics.jsonl"), "".join(
            json.dumps(r, default=common.json_default) + "\n" for r in rows_all))
      model_results.append({"name": model_name(hidden), "hidden": list(hidden),
                            "tag": model_tag(hidden), "params": num_params(hidden),
                            "entries": entries, "selection": selection, "lrs": chosen,
                            "verdict": model_verdict(entries)})

  verdict = verdict_text(model_results, epochs=args.epochs, quick=args.quick)
  figures = [os.path.abspath(os.path.join(out, name))
             for name in ("curves.png", "final_error.png")]
  plot_curves(model_results, args.losses, figures[0])
  plot_final_errors(model_results, figures[1])
  wall = time.perf_counter() - t_start
  summary = {
      "question": "How does every multi-class loss of the registry compare on full MNIST, "
                  "with a 784-512-512-10 and a 784-800-10 MLP?",
      "settings": settings, "models": model_results,
      "chosen_lrs": {m["name"]: m["lrs"] for m in model_results},
      "classes": {m["name"]: m["verdict"]["classes"] for m in model_results},
      "published": list(PUBLISHED), "verdict": verdict,
      "wall_seconds": wall, "train_seconds": train_seconds,
  }
  markdown = summary_markdown(summary)
  common.write_text(os.path.join(out, "metrics.jsonl"), "".join(
      json.dumps(r, default=common.json_default) + "\n" for r in rows_all))
  common.write_text(os.path.join(out, "summary.md"), markdown)
  common.write_json(os.path.join(out, "summary.json"), json_ready(summary))
  config["settings"]["chosen_lrs"] = summary["chosen_lrs"]
  config["wall_seconds"] = wall
  common.write_json(os.path.join(out, "config.json"), config)
  print(markdown)
  print(f"wrote {out}/ (config.json, metrics.jsonl, summary.md, summary.json, curves.png, "
        f"final_error.png) in {wall:.0f} s", flush=True)
  return {"summary_md": markdown, "figures": figures, "summary": summary, "wall_seconds": wall}


if __name__ == "__main__":
  main()
