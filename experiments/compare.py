"""The headline: cross-entropy vs the fastai book's sigmoid-difference loss on full MNIST.

The same MLP (784-512-512-10 ReLU, Adam 1e-3 with cosine decay, batch 128, 10 epochs) trains
on the full 60k/10k MNIST with each loss, the seeds of a loss in one vmapped program, tested
after every epoch (no selection: ``--val-size 0``, one ``--lr``; the question as the learner
asked it). Each loss trains on its registry targets (sigmoid-difference: one-hot, exactly the
book's ``where(t==1, 1-sigmoid(z), sigmoid(z)).mean()`` over the 10 classes); every model
predicts by argmax. Besides the harness's files, ``summary.md`` holds per loss the final and
best test accuracy, epochs and seconds to 97% and 98%, calibration, and what the trained models
output on the test digits with the gradient each loss still gives the misclassified ones
(`diagnose`); ``curves.png``: test error vs epoch and vs time.

A second table (``--selected-losses``; none by default, so that the default command stays the
headline alone; `experiments.all` asks for it in the report) isolates the cause of the collapse:
cross-entropy,
sigmoid-difference and two controls, ``softmax_absolute_error`` (``1 - p_y``: bounded like
sigmoid-difference, but coupled through the softmax) and ``balanced_sigmoid_difference`` (its
positive and negative terms averaged apart: no 9-to-1 imbalance), each with the rate selected
on ``--selected-val-size`` held-out images as for every other experiment (`experiments.protocol`:
``--selected-lrs``, ``--selected-seeds``, ``--selected-epochs``). Verdicts: each vs
cross-entropy and each control vs sigmoid-difference, Holm over every comparison of the
experiment (the headline's too); if ``1 - p_y`` trains, boundedness alone is not the cause; if
the balanced loss trains, the imbalance is (`explain`). Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.compare
  python -m experiments.compare --selected-losses softmax_cross_entropy,sigmoid_difference,\
softmax_absolute_error,balanced_sigmoid_difference       # + the second table (~30 min more)
  python -m experiments.compare --losses ce,sigmoid_difference,multiclass_hinge --seeds 5
  python -m experiments.compare --quick --out /tmp/quick
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots, protocol, stats

DEFAULT_LOSSES = ("softmax_cross_entropy", "sigmoid_difference")
THRESHOLDS = (97.0, 98.0)
TINY_GRAD = 1e-3
REFERENCE, COLLAPSE = DEFAULT_LOSSES
BOUNDED, BALANCED = "softmax_absolute_error", "balanced_sigmoid_difference"  # the two controls
SELECTED_LOSSES = (REFERENCE, COLLAPSE, BOUNDED, BALANCED)
SELECTED = "selected"  # the data key and name prefix of the second table's variants
TRAINS_AT = 90.0  # mean test accuracy % from which a loss "trains" (the collapse: 11.35%)
NUM_CLASSES = 10


def _one_rate(text: str) -> tuple[float]:
  return (cli.positive_number(text),)


_one_rate.metavar = "LR"


def _names_or_none(text: str) -> tuple[str, ...]:
  """`cli.names`, or ``()`` for an empty text (no second table)."""
  return cli.names(text) if text.strip() else ()


_names_or_none.metavar = "LIST"


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
  selected_losses: tuple[str, ...] = cli.option(
      (), "the second table's losses, each with the rate selected on validation (same MLP "
      "and optimizer; default none: the headline alone, about 4 min on a 2-core CPU; "
      "`experiments.all` asks for " + ",".join(SELECTED_LOSSES) + ", about 30 min more)",
      parse=_names_or_none,
      quick=(BALANCED,))
  selected_seeds: tuple[int, ...] = cli.option(
      (0, 1, 2, 3, 4), "the second table's seeds (a count or a list)", parse=cli.seeds,
      quick=(0, 1))
  selected_lrs: tuple[float, ...] = cli.option(
      protocol.half_decades(), "the second table's learning-rate grid (grown past an edge "
      "that wins)", parse=cli.rates, quick=(3e-3,))
  selected_epochs: int = cli.option(5, "the second table's epochs (the headline's 10 would "
                                    "not fit the suite's time budget)",
                                    parse=cli.positive_int, quick=2)
  selected_val_size: int = cli.option(10000, "training images the second table holds out to "
                                      "select on", parse=cli.positive_int, quick=512)


def check(s: Settings) -> list[str]:
  """The second table's rules (the harness checks the headline's)."""
  n_train = min(s.train_subset or 60000, 60000)
  if not s.selected_losses:
    return []
  if s.selected_val_size >= n_train:
    return [f"--selected-val-size: must be below the {n_train} training images, got "
            f"{s.selected_val_size}"]
  if s.batch_size > n_train - s.selected_val_size:
    return [f"--batch-size: must be at most the {n_train - s.selected_val_size} training "
            f"images left by --selected-val-size, got {s.batch_size}"]
  return []


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


def _specs(names: Sequence[str], flag: str) -> list:
  import jaxloss  # pylint: disable=import-outside-toplevel
  specs = [jaxloss.get(name) for name in names]
  found = [spec.name for spec in specs]
  if len(set(found)) != len(found):
    raise ValueError(f"{flag} lists a loss twice: {', '.join(found)}")
  for spec in specs:
    if not spec.multiclass:
      raise ValueError(f"{flag}: {spec.name!r} is not a single-label multi-class loss")
  return specs


def variants(s: Settings) -> list[harness.Variant]:
  """The headline's losses (one rate, no selection), then the second table's (selected)."""
  specs = _specs(s.losses, "--losses")
  train = {"hidden": s.hidden, "activation": s.activation, "optimizer": s.optimizer,
           "schedule": s.schedule, "weight_decay": s.weight_decay, "momentum": s.momentum,
           "precision": s.precision}
  out = [harness.Variant(spec.name, spec.loss_from_labels, spec.predict,
                         test_fn=lambda z, y, spec=spec: diagnose(spec, z, y), train=train,
                         describe={"hyperparams": dict(spec.hyperparams),
                                   "target_kind": spec.target_kind,
                                   "activation": spec.activation})
         for spec in specs]
  return out + [
      harness.Variant(f"{SELECTED}-{spec.name}", spec.loss_from_labels, spec.predict,
                      test_fn=lambda z, y, spec=spec: diagnose(spec, z, y),
                      train={**train, "epochs": s.selected_epochs}, rates=s.selected_lrs,
                      seeds=s.selected_seeds, data=SELECTED,
                      describe={"loss": spec.name, "table": SELECTED,
                                "target_kind": spec.target_kind, "activation": spec.activation})
      for spec in _specs(s.selected_losses, "--selected-losses")]


def splits(s: Settings, mnist) -> dict[str, harness.Splits]:
  """The headline's data (no validation split by default) and the second table's (with one)."""
  out = dict(harness.default_splits(s, mnist))
  if s.selected_losses:
    held_out = dataclasses.replace(s, val_size=s.selected_val_size)
    out[SELECTED] = harness.default_splits(held_out, mnist)["mnist"]
  return out


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


def summarize_selected(outcome: harness.Outcome) -> dict[str, Any]:
  """One row of the second table: the selected rate, the test metrics of the selected models
  (evaluated once, after training) and the diagnostics (`diagnose`), means over seeds."""
  test, sel = outcome.test, outcome.selected
  row: dict[str, Any] = {"loss": outcome.variant.describe["loss"], "lr": sel.lr,
                         "extended": list(sel.extended), "seeds": len(outcome.accuracy()),
                         "diverged": len(sel.result.diverged)}
  row["final_acc_mean"], row["final_acc_std"] = outputs.mean_std(outcome.accuracy())
  for key in ("test_nll", "test_ece", "test_confidence"):
    row[f"{key}_mean"], row[f"{key}_std"] = outputs.mean_std(test[key])
  for key in ("wrong_grad_norm_median", "wrong_tiny_grad_share", "true_prob_mean",
              "wrong_true_prob_mean", "top_prob_mean"):
    row[key] = float(np.mean(test[key]))
  return row


def selected_pairs(losses: Sequence[str]) -> list[tuple[str, str]]:
  """Each loss vs cross-entropy, then each control vs sigmoid-difference (those present)."""
  pairs = [(n, REFERENCE) for n in losses if n != REFERENCE and REFERENCE in losses]
  return pairs + [(n, COLLAPSE) for n in (BOUNDED, BALANCED) if n in losses and COLLAPSE in losses]


def _p(p: float) -> str:
  return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _effect(c: stats.Comparison) -> str:
  i = c.interval
  return (f"{i.mean:+.2f} points, 95% CI {i.low:+.2f} to {i.high:+.2f}, Holm p {_p(c.p_holm)}, "
          f"{c.verdict}")


def explain(acc: Mapping[str, float],
            comps: Mapping[tuple[str, str], stats.Comparison]) -> tuple[list[str], list[str]]:
  """What the controls say about the collapse, from the second table's numbers.

  Args:
    acc: loss -> mean final test accuracy % (rate selected on validation).
    comps: ``(loss, other)`` -> its comparison (`selected_pairs`).

  Returns:
    ``(claims, short)``: one clause per finding with its numbers, and the same in a few
    words (for the headline). Against sigmoid-difference, a control *trains* when its
    verdict is *better* and its mean test accuracy reaches `TRAINS_AT` %, trains *partly*
    when better but below, and *fails* otherwise (or without a comparison, below
    `TRAINS_AT` %).
  """
  if COLLAPSE not in acc:
    return [], []
  claims, short = [], []
  if (sd := acc[COLLAPSE]) >= TRAINS_AT:
    claims.append(f"with its own rate sigmoid-difference trains ({sd:.2f}%), so its collapse "
                  "belongs to the headline's rate")
    short.append("sigmoid-difference trains at its own rate")
  readings = {  # control -> (what it is, then per outcome: the reading, in short)
      BOUNDED: ("1 - p_y (bounded like sigmoid-difference, but coupled through the softmax)",
                {"trains": ("boundedness alone does not cause the collapse",
                            "boundedness alone is not the cause"),
                 "partly": ("boundedness alone does not explain all of the collapse",
                            "1 - p_y escapes it only partly"),
                 "fails": ("boundedness may be enough to cause it", "1 - p_y fails too")}),
      BALANCED: (f"the class-balanced sigmoid-difference (no {NUM_CLASSES - 1}-to-1 imbalance "
                 "of 'no' over 'yes' terms)",
                 {"trains": (f"the {NUM_CLASSES - 1}-to-1 imbalance causes the collapse",
                             "the imbalance is the cause"),
                  "partly": ("the imbalance explains part of the collapse",
                             "balancing rescues it only partly"),
                  "fails": ("the imbalance alone does not explain it",
                            "balancing does not rescue it")})}
  verbs = {"trains": "trains", "partly": "trains only partly", "fails": "does not train"}
  for loss, (what, reading) in readings.items():
    if loss not in acc:
      continue
    c = comps.get((loss, COLLAPSE))
    better = c.verdict == "better" if c else acc[loss] >= TRAINS_AT
    state = ("trains" if acc[loss] >= TRAINS_AT else "partly") if better else "fails"
    effect = f"; vs sigmoid-difference {_effect(c)}" if c else ""
    claims.append(f"{what} {verbs[state]} ({acc[loss]:.2f}%{effect}): {reading[state][0]}")
    short.append(reading[state][1])
  return claims, short


def selected_markdown(rows: Sequence[dict[str, Any]], comps: Sequence[stats.Comparison],
                      claims: Sequence[str], s: Settings, n_comparisons: int) -> str:
  """The second table: selected rate, test metrics, diagnostics, verdicts and the reading."""
  grid = ", ".join(f"{r:.3g}" for r in s.selected_lrs) + (
      " (grown past an edge that wins)" if len(s.selected_lrs) > 1 else "")
  cut = (f" {s.selected_epochs} epochs, not the headline's {s.epochs}: the suite's time budget "
         f"does not hold {len(rows)} losses x {len(s.selected_lrs)} rates x "
         f"{len(s.selected_seeds)} seeds at the headline's length."
         if s.selected_epochs < s.epochs else "")
  lines = [
      "### With the learning rate selected on validation", "",
      f"Each loss's Adam peak rate selected as for every other experiment: grid {grid}, best "
      f"mean validation accuracy on {s.selected_val_size} held-out training images after "
      f"{s.selected_epochs} epochs, seeds {list(s.selected_seeds)}; the selected models "
      f"tested once.{cut} Mean ± std over seeds.", "",
      "| loss | selected lr | test acc % | test NLL | ECE % | mean confidence | p(true class) "
      f"| median grad norm on misclassified | misclassified with grad norm < {TINY_GRAD:g} |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    grown = ", ".join(f"{x:.3g}" for x in r["extended"])
    grown = f" (grid grown: {grown})" if grown else ""
    lines.append(
        f"| {r['loss']} | {r['lr']:.3g}{grown} | {_fmt(r['final_acc_mean'], r['final_acc_std'])} "
        f"| {_fmt(r['test_nll_mean'], r['test_nll_std'], 3)} "
        f"| {_fmt(100 * r['test_ece_mean'], 100 * r['test_ece_std'])} "
        f"| {r['test_confidence_mean']:.3f} | {_prob(r['true_prob_mean'])} "
        f"| {r['wrong_grad_norm_median']:.3g} | {100 * r['wrong_tiny_grad_share']:.1f}% |")
  if comps:
    lines += ["", f"Paired over the seeds (effect: first minus second, accuracy points; 95% t "
              f"interval; exact McNemar on the test digits; Holm over all {n_comparisons} "
              f"comparisons of this experiment; equivalent: CI inside ±{s.margin:g}):", "",
              "| comparison | effect | 95% CI | Holm p | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c.a} vs {c.b} | {c.interval.mean:+.2f} | {c.interval.low:+.2f} to "
              f"{c.interval.high:+.2f} | {_p(c.p_holm)} | {c.verdict} |" for c in comps]
  if claims:
    text = "; ".join(claims)
    lines += ["", f"**What causes the collapse.** {text[:1].upper()}{text[1:]}. (A control "
              f"trains when better than sigmoid-difference and at {TRAINS_AT:g}% mean test "
              "accuracy or more; better but below: partly.)"]
  return "\n".join(lines)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  head = {n: o for n, o in outcomes.items() if o.variant.data != SELECTED}
  chosen = {o.variant.describe["loss"]: o for o in outcomes.values()
            if o.variant.data == SELECTED}
  rows = [summarize(name, o) for name, o in head.items()]
  names = list(head)
  head_pairs = [(names[0], other) for other in names[1:]] if len(s.seeds) > 1 else []
  sel_pairs = selected_pairs(list(chosen)) if len(s.selected_seeds) > 1 else []
  head_comps, sel_comps = stats.holm_family(
      harness.compare(head, head_pairs, margin=s.margin) if head_pairs else [],
      harness.compare(chosen, sel_pairs, margin=s.margin) if sel_pairs else [])
  comps = head_comps + sel_comps
  verdict = "; ".join(f"{r['loss']} ends at {_fmt(r['final_acc_mean'], r['final_acc_std'])}% "
                      f"test accuracy" for r in rows) + f" after {s.epochs} epochs."
  headline = ", ".join(f"{r['loss']} {r['final_acc_mean']:.2f}%" for r in rows) + \
      f" test accuracy after {s.epochs} epochs"
  if head_comps:
    verdict += " " + " ".join(c.sentence() for c in head_comps)
    i = head_comps[0].interval
    headline += f"; difference {i.mean:+.2f} points (95% CI {i.low:+.2f} to {i.high:+.2f})"
  markdown, summary = tables_markdown(rows, s), {"rows": rows}
  if chosen:
    sel_rows = [summarize_selected(o) for o in chosen.values()]
    acc = {r["loss"]: r["final_acc_mean"] for r in sel_rows}
    claims, short = explain(acc, {(c.a, c.b): c for c in sel_comps})
    verdict += (f" With the rate selected on validation ({len(s.selected_seeds)} seeds, "
                f"{s.selected_epochs} epochs): " + ", ".join(
                    f"{n} {a:.2f}%" for n, a in acc.items())
                + (" — " + "; ".join(claims) if claims else "") + ".")
    if short:
      headline += "; rate selected: " + "; ".join(short)
    markdown += "\n\n" + selected_markdown(sel_rows, sel_comps, claims, s, len(comps))
    summary |= {"selected_rows": sel_rows, "causes": claims}
  summary["comparisons"] = [dataclasses.asdict(c) for c in comps]
  return harness.Report(verdict, markdown, summary,
                        {"curves.png": lambda path: plot_curves(head, path)}, headline + ".")


EXPERIMENT = harness.Experiment(
    "compare", "Cross-entropy vs the fastai book's sigmoid-difference loss on full MNIST",
    Settings, variants, report, splits=splits, check=check,
    description="Train the same MLP on full MNIST with several losses (default: softmax "
                "cross-entropy vs the fastai book's sigmoid-difference mnist_loss), several "
                "seeds at once, and write metrics.jsonl, summary.csv/.md/.json, curves.png "
                "and config.json to --out; then a second table with the rate selected on "
                "validation, with two controls that isolate the cause of the collapse.")


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
