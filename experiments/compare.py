"""The headline: cross-entropy vs the fastai book's sigmoid-difference loss on full MNIST.

The same MLP (784-512-512-10 ReLU, Adam 1e-3 with cosine decay, batch 128, 10 epochs) trains
on the full 60k/10k MNIST with each loss, the seeds of a loss in one vmapped program, tested
after every epoch (no selection: ``--val-size 0``, one ``--lr``; the question as the learner
asked it). Each loss trains on its registry targets (sigmoid-difference: one-hot, exactly the
book's ``where(t==1, 1-sigmoid(z), sigmoid(z)).mean()`` over the 10 classes); every model
predicts by argmax. Besides the harness's files, ``summary.md`` holds per loss the final and
best test accuracy, epochs and seconds to 97% and 98%, calibration, and what the trained models
output on the test digits with the gradient each loss still gives the misclassified ones
(`diagnose`); ``curves.png``: test error vs epoch and vs time. Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.compare
  python -m experiments.compare --losses ce,sigmoid_difference,multiclass_hinge --seeds 5
  python -m experiments.compare --quick --out /tmp/quick
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots

DEFAULT_LOSSES = ("softmax_cross_entropy", "sigmoid_difference")
THRESHOLDS = (97.0, 98.0)
TINY_GRAD = 1e-3


def _one_rate(text: str) -> tuple[float]:
  return (cli.positive_number(text),)


_one_rate.metavar = "LR"


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """compare's command line: the headline's defaults, and the training knobs to vary."""

  seeds: tuple[int, ...] = cli.option((0, 1, 2), "a count N (seeds 0..N-1) or a list",
                                      parse=cli.seeds, quick=(0, 1))
  lrs: tuple[float, ...] = cli.option((1e-3,), "peak learning rate (finite, > 0)",
                                      parse=_one_rate, flag="--lr")
  val_size: int = cli.option(0, "training images held out (0: train on all, test every epoch)",
                             parse=cli.nonnegative_int)
  out: str = cli.option("runs/compare", "output folder")
  losses: tuple[str, ...] = cli.option(DEFAULT_LOSSES, "registry names or aliases "
                                       "(see jaxloss.available())", parse=cli.names)
  optimizer: str = cli.option("adam", "optax optimizer",
                              choices=("sgd", "momentum", "adam", "adamw"))
  schedule: str = cli.option("cosine", "learning-rate schedule (cosine decays to 0)",
                             choices=("cosine", "constant"))
  hidden: tuple[int, ...] = cli.option((512, 512), "hidden widths ('' for a linear model)",
                                       parse=cli.ints, quick=(32,))
  activation: str = cli.option("relu", "hidden-layer activation",
                               choices=("relu", "gelu", "tanh", "sigmoid", "silu"))
  weight_decay: float = cli.option(1e-4, "used by adamw only", parse=cli.number(low=0.0))
  momentum: float = cli.option(0.9, "used by momentum only", parse=cli.number(0.0, 1.0))
  precision: str = cli.option("float32", "matrix products: float32, or bf16 (bfloat16 inputs; "
                              "float32 accumulation, parameters and loss)",
                              choices=("float32", "bf16"))


def diagnose(spec, logits_NxC, labels_N) -> dict[str, Any]:
  """What one trained model outputs on test digits, and the gradient its loss gives them.

  Among the misclassified: the median ``||d loss_i / d z_i||`` and the share below `TINY_GRAD`
  (given up on); mean probabilities of the true and top class under the loss's own link
  (sigmoid or softmax). Pure and traceable (a ``test_fn``)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  targets = spec.targets(labels_N, logits_NxC.shape[-1])
  grads_NxC = jax.grad(lambda z: jnp.sum(spec.per_example(z, targets)))(logits_NxC)
  grad_norm_N = jnp.linalg.norm(grads_NxC, axis=-1)
  wrong_N = jnp.argmax(logits_NxC, axis=-1) != labels_N
  probs_NxC = spec.probabilities(logits_NxC)
  true_prob_N = jnp.take_along_axis(probs_NxC, labels_N[:, None], axis=-1)[:, 0]
  n_wrong = jnp.maximum(jnp.sum(wrong_N), 1)
  return {
      "correct": ~wrong_N,
      "test_error": jnp.mean(wrong_N),
      "wrong_grad_norm_median": jnp.nanmedian(jnp.where(wrong_N, grad_norm_N, jnp.nan)),
      "wrong_tiny_grad_share": jnp.sum(wrong_N & (grad_norm_N < TINY_GRAD)) / n_wrong,
      "true_prob_mean": jnp.mean(true_prob_N),
      "wrong_true_prob_mean": jnp.sum(jnp.where(wrong_N, true_prob_N, 0.0)) / n_wrong,
      "top_prob_mean": jnp.mean(jnp.max(probs_NxC, axis=-1)),
  }


def variants(s: Settings) -> list[harness.Variant]:
  import jaxloss  # pylint: disable=import-outside-toplevel
  specs = [jaxloss.get(name) for name in s.losses]
  names = [spec.name for spec in specs]
  if len(set(names)) != len(names):
    raise ValueError(f"--losses lists a loss twice: {', '.join(names)}")
  for spec in specs:
    if not spec.multiclass:
      raise ValueError(f"--losses: {spec.name!r} is not a single-label multi-class loss")
  train = {"hidden": s.hidden, "activation": s.activation, "optimizer": s.optimizer,
           "schedule": s.schedule, "weight_decay": s.weight_decay, "momentum": s.momentum,
           "precision": s.precision}
  return [harness.Variant(spec.name, spec.loss_from_labels, spec.predict,
                          test_fn=lambda z, y, spec=spec: diagnose(spec, z, y), train=train,
                          describe={"hyperparams": dict(spec.hyperparams),
                                    "target_kind": spec.target_kind,
                                    "activation": spec.activation})
          for spec in specs]


def summarize(name: str, outcome: harness.Outcome) -> dict[str, Any]:
  """One table row: accuracies in %, crossings of `THRESHOLDS`, calibration, diagnostics."""
  acc_ExS = 100.0 * outcome.curve("test_accuracy")
  rows = outcome.selected.result.rows
  wall_E = np.array([max(r["wall_seconds"] for r in rows if r["epoch"] == e)
                     for e in range(1, acc_ExS.shape[0] + 1)])
  row: dict[str, Any] = {"loss": name, "seeds": acc_ExS.shape[1], "epochs": acc_ExS.shape[0]}
  row["final_acc_mean"], row["final_acc_std"] = outputs.mean_std(acc_ExS[-1])
  row["best_acc_mean"], row["best_acc_std"] = outputs.mean_std(acc_ExS.max(axis=0))
  for level in THRESHOLDS:
    crossings = [outputs.first_crossing(acc_ExS[:, s], level) for s in range(acc_ExS.shape[1])]
    reached = [c for c in crossings if c is not None]
    key = f"{level:g}"
    row[f"reached_{key}"] = len(reached)
    row[f"epochs_to_{key}"] = float(np.mean([c + 1 for c in reached])) if reached else math.nan
    row[f"seconds_to_{key}"] = float(np.mean([wall_E[c] for c in reached])) if reached else math.nan
  for key in ("test_nll", "test_ece", "test_confidence", "train_loss"):
    row[f"{key}_mean"], row[f"{key}_std"] = outputs.mean_std(outcome.curve(key)[-1])
  for key in ("test_error", "wrong_grad_norm_median", "wrong_tiny_grad_share", "true_prob_mean",
              "wrong_true_prob_mean", "top_prob_mean"):
    row[key] = float(np.mean(outcome.test[key]))
  row["train_seconds"] = float(wall_E[-1])
  row["compile_seconds"] = float(rows[0]["compile_seconds"])
  return row


def _fmt(mean: float, std: float, digits: int = 2) -> str:
  return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _prob(p: float) -> str:
  """Three decimals, or two significant digits for tiny nonzero probabilities."""
  return f"{p:.3f}" if p == 0 or p >= 1e-3 else f"{p:.2g}"


def _crossing(row: dict[str, Any], level: float, unit: str) -> str:
  """Mean `unit` (``"epochs"`` or ``"seconds"``) to `level` % over the seeds that reach it."""
  n, value = row[f"reached_{level:g}"], row[f"{unit}_to_{level:g}"]
  if n == 0:
    return "never"
  text = f"{value:.1f}" if unit == "epochs" else f"{value:.0f}"
  return text if n == row["seeds"] else f"{text} ({n}/{row['seeds']} seeds)"


def tables_markdown(rows: Sequence[dict[str, Any]], s: Settings) -> str:
  """The results tables (accuracy, speed to 97/98%, calibration, diagnostics)."""
  model = "-".join(str(w) for w in (784, *s.hidden, 10)) + f" {s.activation}" + (
      f", {s.precision} matmuls" if s.precision != "float32" else "")
  lines = [
      f"MLP {model}, {s.optimizer} lr {s.lrs[0]:g} ({s.schedule}), batch {s.batch_size}, "
      f"{s.epochs} epochs, seeds {list(s.seeds)}. Mean ± std over seeds.", "",
      "| loss | final test acc % | best test acc % | epochs to 97% | epochs to 98% "
      "| s to 97% | s to 98% | test NLL | ECE % | mean confidence |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    speed = " | ".join(_crossing(r, x, unit) for unit in ("epochs", "seconds") for x in THRESHOLDS)
    lines.append(
        f"| {r['loss']} | {_fmt(r['final_acc_mean'], r['final_acc_std'])} "
        f"| {_fmt(r['best_acc_mean'], r['best_acc_std'])} | {speed} "
        f"| {_fmt(r['test_nll_mean'], r['test_nll_std'], 3)} "
        f"| {_fmt(100 * r['test_ece_mean'], 100 * r['test_ece_std'])} "
        f"| {r['test_confidence_mean']:.3f} |")
  lines += [
      "", "What the trained models output on the test digits (own link: sigmoid for sigmoid "
      "losses, softmax otherwise; mean over seeds):", "",
      "| loss | p(true class) | p(top class) | p(true) on misclassified | median grad norm on "
      f"misclassified | misclassified with grad norm < {TINY_GRAD:g} | train s | compile s |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['loss']} | {_prob(r['true_prob_mean'])} | {_prob(r['top_prob_mean'])} "
        f"| {_prob(r['wrong_true_prob_mean'])} | {r['wrong_grad_norm_median']:.3g} "
        f"| {100 * r['wrong_tiny_grad_share']:.1f}% | {r['train_seconds']:.0f} "
        f"| {r['compile_seconds']:.1f} |")
  lines += [
      "", "Grad norm: `||d loss_i / d logits_i||` of the per-example loss (the batch loss "
      "averages these). Seconds are wall time of the program training all seeds of a loss "
      "together, compilation excluded. ECE: 15 equal-width bins on softmax(logits)."]
  return "\n".join(lines)


def plot_curves(outcomes: Mapping[str, harness.Outcome], path: str) -> None:
  """Test error % (log scale) vs epoch and vs wall seconds, min-max band over seeds."""
  fig, axes = plots.pyplot().subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for name, outcome in outcomes.items():
    err_ExS = 100.0 * (1.0 - outcome.curve("test_accuracy"))
    rows = outcome.selected.result.rows
    epochs = np.arange(1, err_ExS.shape[0] + 1)
    wall = np.array([max(r["wall_seconds"] for r in rows if r["epoch"] == e) for e in epochs])
    for ax, x in ((axes[0], epochs), (axes[1], wall)):
      plots.plot_band(ax, x, err_ExS, name)
  axes[0].set(yscale="log", xlabel="epoch", ylabel="test error % (log scale)")
  axes[1].set_xlabel("wall seconds (all seeds together, compile excluded)")
  for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend()
  fig.suptitle("Full MNIST, MLP: test error, mean over seeds with min-max band")
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  rows = [summarize(name, o) for name, o in outcomes.items()]
  names = list(outcomes)
  verdict = "; ".join(f"{r['loss']} ends at {_fmt(r['final_acc_mean'], r['final_acc_std'])}% "
                      f"test accuracy" for r in rows) + f" after {s.epochs} epochs."
  headline = ", ".join(f"{r['loss']} {r['final_acc_mean']:.2f}%" for r in rows) + \
      f" test accuracy after {s.epochs} epochs"
  if len(names) > 1 and len(s.seeds) > 1:
    comps = harness.compare(outcomes, [(names[0], other) for other in names[1:]], margin=s.margin)
    verdict += " " + " ".join(c.sentence() for c in comps)
    i = comps[0].interval
    headline += f"; difference {i.mean:+.2f} points (95% CI {i.low:+.2f} to {i.high:+.2f})"
  return harness.Report(verdict, tables_markdown(rows, s), {"rows": rows},
                        {"curves.png": lambda path: plot_curves(outcomes, path)}, headline + ".")


EXPERIMENT = harness.Experiment(
    "compare", "Cross-entropy vs the fastai book's sigmoid-difference loss on full MNIST",
    Settings, variants, report,
    description="Train the same MLP on full MNIST with several losses (default: softmax "
                "cross-entropy vs the fastai book's sigmoid-difference mnist_loss), several "
                "seeds at once, and write metrics.jsonl, summary.csv/.md/.json, curves.png "
                "and config.json to --out.")


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
