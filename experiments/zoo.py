"""How do the multi-class losses compare with cross-entropy on full MNIST, two MLPs?

Trained the same way, which single-label multi-class losses match softmax cross-entropy, which
are better or worse, which fail; how does our 784-800-10 cross-entropy MLP compare with the
published MLP results? Every loss of ``--losses`` trains with every MLP of ``--models``
(784-512-512-10 and 784-800-10 ReLU; Adam, cosine decay, no regularization or augmentation)
under `experiments.protocol`. A loss with numeric hyperparameters (`GRIDS`: focal gamma, poly
epsilon, smoothing alpha, square-loss k and M, hinge margin) has them selected on validation
jointly with the rate: rates x values train as one vmapped program, the best mean validation
accuracy wins (the rate grid grows past an edge; a hyperparameter grid does not, and the report
says when its winner sits on an edge; ``--val-size 0``: one rate and the library's values).
Verdict: each loss vs cross-entropy of the same MLP, paired over seeds (`harness.compare`,
Holm over all pairs of all MLPs); a diverged seed or a mean test error >= ``--fail-error`` %
fails. ``summary.md``: one table per MLP (selected rate and hyperparameters, test error, ECE,
NLL, confidence, class, effect) and the published results; ``final_error.png`` and
``curves.png`` (error per epoch).

The default is cut to fit the suite's time budget (about 50 min on a 2-core CPU): the
reference, the two controls of `experiments.compare` (``softmax_absolute_error``,
``balanced_sigmoid_difference``) and softmax focal loss (a gamma grid), 3 epochs; the report
lists the registry's losses left out. ``--losses all`` runs every one (hours here). Usage::

  JAXLOSS_MNIST_DIR=../shared/data/mnist python -m experiments.zoo
  python -m experiments.zoo --losses ce,brier,multiclass_hinge,label_smoothing --models 800
  python -m experiments.zoo --quick --out /tmp/zoo_quick
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import numpy as np

from experiments import cli, harness, outputs, plots

REFERENCE = "softmax_cross_entropy"
OURS = f"h800-{REFERENCE}"  # set beside the published 784-800-10 results
# The default cut (module docstring): what fits the suite's budget with two MLPs.
DEFAULT_LOSSES = (REFERENCE, "softmax_absolute_error", "balanced_sigmoid_difference",
                  "softmax_focal_loss")
QUICK_LOSSES = (REFERENCE, "balanced_sigmoid_difference", "label_smoothing_cross_entropy")
# Loss hyperparameter -> values selected jointly with the rate: small grids bracketing the
# library default (`test_zoo` checks that every numeric hyperparameter has one).
GRIDS = {
    "label_smoothing_cross_entropy": {"alpha": (0.05, 0.1, 0.2)},
    "softmax_focal_loss": {"gamma": (1.0, 2.0, 4.0)},
    "sigmoid_focal_loss": {"gamma": (1.0, 2.0, 4.0), "alpha": (0.1, 0.25, 0.5)},
    "poly1_cross_entropy": {"epsilon": (0.5, 1.0, 2.0)},
    "square_loss": {"k": (0.5, 1.0, 2.0), "m": (0.5, 1.0, 2.0)},
    "multiclass_hinge_loss": {"margin": (0.5, 1.0, 2.0)},
    "multiclass_hinge_ww": {"margin": (0.5, 1.0, 2.0)},
}
CLASSES = {"reference": "black", "equivalent": "tab:green", "better": "tab:blue",
           "worse": "tab:orange", "inconclusive": "tab:gray", "fails": "tab:red"}
_SIMARD = "Simard, Steinkraus & Platt, ICDAR 2003, via LeCun, Cortes & Burges' MNIST page"
_SRIVASTAVA = "Srivastava et al., Dropout, JMLR 15 (2014), Table 2"
PUBLISHED = (  # (MLP and loss, augmentation / regularization, test error %, source)
    ("784-800-10, cross-entropy", "none", 1.6, _SIMARD),
    ("784-800-10, cross-entropy", "affine distortions", 1.1, _SIMARD),
    ("784-800-10, MSE", "elastic distortions", 0.9, _SIMARD),
    ("784-800-10, cross-entropy", "elastic distortions", 0.7, _SIMARD),
    ("784-500-300-10, cross-entropy", "weight decay", 1.53,
     "Hinton, unpublished 2005, via LeCun, Cortes & Burges' MNIST page"),
    ("standard neural net (Simard et al. 2003)", "none", 1.60, _SRIVASTAVA),
    ("ReLU, 3 x 1024", "dropout", 1.25, _SRIVASTAVA),
    ("ReLU, 3 x 1024", "dropout + max-norm", 1.06, _SRIVASTAVA),
    ("ReLU, 2 x 8192", "dropout + max-norm", 0.95, _SRIVASTAVA),
)


def parse_models(text: str) -> tuple[tuple[int, ...], ...]:
  """``"512,512;800"`` -> ``((512, 512), (800,))``: one MLP's hidden widths per ``;`` part."""
  try:
    models = tuple(cli.ints(part) for part in text.split(";"))
  except ValueError:
    models = ()
  if not models or len(set(models)) != len(models) or any(w < 1 for m in models for w in m):
    raise ValueError("must be distinct ';'-separated lists of widths >= 1, e.g. '512,512;800'")
  return models


def _models_text(text: str) -> str:  # a str option: --help shows a tuple of tuples flattened
  return ";".join(",".join(map(str, m)) for m in parse_models(text))


@dataclasses.dataclass(frozen=True)
class Settings(harness.Settings):
  """zoo's command line: the harness's, plus the losses and the MLPs."""

  epochs: int = cli.option(3, "training epochs, the same for selection and the reported runs "
                           "(3: the default cut to fit the suite's time budget)",
                           parse=cli.positive_int, quick=2)
  out: str = cli.option("runs/zoo", "output folder")
  losses: tuple[str, ...] = cli.option(
      DEFAULT_LOSSES, f"registry names or aliases ('all': every multi-class loss, "
      f"jaxloss.multiclass()); {REFERENCE}, the reference, is always added",
      parse=cli.names, quick=QUICK_LOSSES)
  models: str = cli.option("512,512;800", "MLPs as ';'-separated hidden-width lists",
                           parse=_models_text, quick="32", metavar="LIST;LIST")
  fail_error: float = cli.option(10.0, "mean test error % from which a loss fails (a linear "
                                 "classifier: 12%)", parse=cli.number(0.0, 100.0), quick=50.0)

  @property
  def mlps(self) -> tuple[tuple[int, ...], ...]:
    """The hidden widths of each MLP of ``--models``."""
    return parse_models(self.models)


def tag(hidden: Sequence[int]) -> str:
  """Variant-name stem of an MLP: ``(512, 512)`` -> ``"h512x512"``, ``()`` -> ``"h0"``."""
  return "h" + ("x".join(map(str, hidden)) or "0")


def model_name(hidden: Sequence[int]) -> str:
  """``(800,)`` -> ``"784-800-10"``."""
  return "-".join(map(str, (784, *hidden, 10)))


def loss_with(name: str, logits_BxC, labels_B, **hyperparams):
  """The mean loss `name` with traced `hyperparams` (the grid's values, data in the program)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  return jaxloss.get(name, **hyperparams).loss_from_labels(logits_BxC, labels_B)


def variants(s: Settings) -> list[harness.Variant]:
  """Every (MLP, loss); a loss in `GRIDS` gets its grid as ``params``, selected with the rate
  (without a validation split, ``--val-size 0``, it keeps the library's defaults)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  names = jaxloss.multiclass() if s.losses == ("all",) else s.losses
  specs = [jaxloss.get(n) for n in (REFERENCE, *names)]
  if bad := [spec.name for spec in specs if not spec.multiclass]:
    raise ValueError(f"--losses: {bad[0]!r} is not a single-label multi-class loss")
  specs = list({spec.name: spec for spec in specs}.values())  # the reference first, each once
  return [harness.Variant(
      f"{tag(h)}-{spec.name}",
      functools.partial(loss_with, spec.name) if spec.name in GRIDS else spec.loss_from_labels,
      spec.predict, train={"hidden": h}, params=GRIDS.get(spec.name, {}) if s.val_size else {},
      describe={"loss": spec.name, "hyperparams": dict(spec.hyperparams)})
      for h in s.mlps for spec in specs]


def chosen(outcome: harness.Outcome) -> dict[str, tuple[float, str]]:
  """Selected loss hyperparameter -> ``(value, where)``: where it sits in its grid,
  ``"lower edge"``, ``"upper edge"`` or ``"inside"`` (a grid is never extended)."""
  out = {}
  for name, values in outcome.variant.params.items():
    value = outcome.selected.point[name]
    out[name] = (value, "lower edge" if value == min(values) else
                 "upper edge" if value == max(values) else "inside")
  return out


def _chosen_text(outcome: harness.Outcome) -> str:
  grids = {k: ", ".join(f"{x:g}" for x in values) for k, values in outcome.variant.params.items()}
  return ", ".join(f"{k} {v:g} ({where} of {grids[k]})"
                   for k, (v, where) in chosen(outcome).items()) or "—"


def error(outcome: harness.Outcome) -> np.ndarray:
  """Test error in percent, one per seed."""
  return 100.0 - outcome.accuracy()


def verdicts(s: Settings, outcomes: Mapping[str, harness.Outcome]):
  """Classes and comparisons (by variant) of each loss vs its MLP's reference, Holm over all;
  a diverged seed or a mean test error >= ``s.fail_error`` fails (no comparison)."""
  ref = {n: f"{n.split('-', 1)[0]}-{REFERENCE}" for n in outcomes}
  bad = {n for n, o in outcomes.items()
         if o.selected.result.diverged or np.mean(error(o)) >= s.fail_error}
  pairs = [(n, ref[n]) for n in outcomes if n != ref[n] and n not in bad]
  by_name = {c.a: c for c in (harness.compare(outcomes, pairs, margin=s.margin) if pairs else [])}
  classes = {n: "fails" if n in bad else "reference" if n == ref[n] else by_name[n].verdict
             for n in outcomes}
  return classes, by_name


def of_model(outcomes: Mapping[str, harness.Outcome], hidden: Sequence[int]) -> list[str]:
  """The variants of one MLP, lowest mean test error first."""
  return sorted((n for n in outcomes if n.startswith(tag(hidden) + "-")),
                key=lambda n: float(np.mean(error(outcomes[n]))))


def _pm(values: np.ndarray) -> str:
  return "{:.2f} ± {:.2f}".format(*outputs.mean_std(values))


def _effect(c) -> str:
  i = c.interval
  return f"{i.mean:+.2f} ({i.low:+.2f} to {i.high:+.2f}), Holm p {c.p_holm:.2g}"


def left_out(s: Settings) -> list[str]:
  """The registry's multi-class losses this run leaves out (the cut, when not ``all``)."""
  import jaxloss  # pylint: disable=import-outside-toplevel
  if s.losses == ("all",):
    return []
  run = {jaxloss.get(n).name for n in (REFERENCE, *s.losses)}
  return [n for n in jaxloss.multiclass() if n not in run]


def _scaled_pm(values, scale: float = 1.0, digits: int = 2) -> str:
  mean, std = outputs.mean_std(scale * np.asarray(values, np.float64))
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def tables_markdown(s: Settings, outcomes, classes, by_name) -> str:
  """One table per MLP, then the published results beside our 784-800-10 cross-entropy."""
  cut = left_out(s)
  how = (f"the rate (and a loss's hyperparameters, jointly, in one program) selected on "
         f"{s.val_size} held-out training images" if s.val_size else
         "one rate and the library's hyperparameters, no selection")
  lines = [f"Adam, cosine decay, batch {s.batch_size}, {s.epochs} epochs; {how}; mean ± std "
           f"over seeds {list(s.seeds)}; effect: the loss's test "
           f"accuracy minus {REFERENCE}'s in points (95% t CI over seeds); equivalent: CI "
           f"inside ±{s.margin:g}; fails: a diverged seed or >= {s.fail_error:g}% test error. "
           "ECE (15 bins), NLL and confidence of softmax(logits), for every loss alike."]
  if cut:
    lines[0] += (f" Not run here, {len(cut)} of the registry's multi-class losses (the default "
                 "is cut to fit the suite's time budget; `--losses` runs any, `all` every one): "
                 f"{', '.join(cut)}.")
  for h in s.mlps:
    lines += ["", f"### {model_name(h)} ReLU MLP", "", "| loss | selected lr | selected "
              "hyperparameters | test error % | ECE % | NLL | mean confidence | class "
              "| effect vs reference (95% CI) |", "|---|---|---|---|---|---|---|---|---|"]
    for n, o in ((n, outcomes[n]) for n in of_model(outcomes, h)):
      grown = ", ".join(f"{r:.3g}" for r in o.selected.extended)
      grown = f" (grown: {grown})" if grown else ""
      lines.append(f"| {o.variant.describe['loss']} | {o.selected.lr:.3g}{grown} "
                   f"| {_chosen_text(o)} | {_pm(error(o))} "
                   f"| {_scaled_pm(o.test['test_ece'], 100.0)} "
                   f"| {_scaled_pm(o.test['test_nll'], digits=3)} "
                   f"| {_scaled_pm(o.test['test_confidence'], digits=3)} "
                   f"| {classes[n]} | {_effect(by_name[n]) if n in by_name else '—'} |")
  lines += ["", "### Beside the published MNIST results for MLPs", "", "| MLP, loss | "
            "augmentation / regularization | test error % | source |", "|---|---|---|---|"]
  lines += [f"| {m} | {t} | {e:g} | {src} |" for m, t, e, src in PUBLISHED]
  if OURS in outcomes:
    lines.append(f"| **this run**: 784-800-10 ReLU, cross-entropy | none (Adam, cosine, "
                 f"{s.epochs} epochs) | {_pm(error(outcomes[OURS]))} | this experiment |")
  return "\n".join(lines)


def plot_final_error(s: Settings, outcomes, classes, path: str) -> None:
  """Test error % per loss (mean ± std, log scale), coloured by class, one panel per MLP."""
  fig, axes = plots.pyplot().subplots(1, len(s.mlps), squeeze=False, figsize=(
      6.0 * len(s.mlps), 0.32 * len(outcomes) / len(s.mlps) + 1.8))
  for ax, h in zip(axes[0], s.mlps):
    names = of_model(outcomes, h)[::-1]
    for i, n in enumerate(names):
      mean, std = outputs.mean_std(error(outcomes[n]))
      ax.errorbar(mean, i, xerr=std, fmt="o", capsize=3, color=CLASSES[classes[n]])
    ax.set_yticks(range(len(names)), [f"{outcomes[n].variant.describe['loss']} [{classes[n]}]"
                                      for n in names], fontsize=8)
    ax.set_xscale("log")
    plots.plain_log_ticks(ax.xaxis)
    ax.set(title=f"{model_name(h)} ReLU", xlabel="test error % (log), mean ± std over seeds")
    ax.grid(True, which="both", axis="x", alpha=0.3)
  plots.save(fig, path)


def plot_curves(s: Settings, outcomes, path: str) -> None:
  """Error % per epoch (log scale) of the selected models, mean and min-max over seeds, one
  panel per MLP: on the validation split (the test split without one)."""
  fig, axes = plots.pyplot().subplots(1, len(s.mlps), squeeze=False, sharey=True,
                                      figsize=(6.0 * len(s.mlps), 4.4))
  losses = list(dict.fromkeys(o.variant.describe["loss"] for o in outcomes.values()))
  colors = dict(zip(losses, plots.colors(len(losses))))
  for ax, h in zip(axes[0], s.mlps):
    for n in of_model(outcomes, h):
      loss = outcomes[n].variant.describe["loss"]
      err_ExS = 100.0 * (1.0 - outcomes[n].curve("test_accuracy"))
      plots.plot_band(ax, np.arange(1, err_ExS.shape[0] + 1), err_ExS, loss, color=colors[loss],
                      **({"linewidth": 2.4} if loss == REFERENCE else {}))
    ax.set_yscale("log")
    plots.plain_log_ticks(ax.yaxis)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(title=f"{model_name(h)} ReLU", xlabel="epoch")
    ax.grid(True, which="both", alpha=0.3)
  split = "validation" if s.val_size else "test"
  axes[0][0].set_ylabel(f"{split} error % (log), selected models")
  axes[0][-1].legend(fontsize=8)
  plots.save(fig, path)


def report(s: Settings, outcomes: Mapping[str, harness.Outcome]) -> harness.Report:
  """Verdict (better / worse with CIs, counts, failures), one table per MLP, the figure."""
  classes, by_name = verdicts(s, outcomes)
  of = {c: sorted(n for n in outcomes if classes[n] == c) for c in CLASSES}
  effects = {c: "; ".join(f"{n} {_effect(by_name[n])}" for n in of[c]) or "none"
             for c in ("better", "worse")}
  fails = ", ".join(f"{n} ({np.mean(error(outcomes[n])):.1f}% error)" for n in of["fails"])
  verdict = (f"Against {REFERENCE} of the same MLP (test accuracy points, 95% CI, Holm over "
             f"{len(by_name)} pairs): better {effects['better']}; worse {effects['worse']}; "
             f"equivalent within ±{s.margin:g}: {len(of['equivalent'])}; inconclusive: "
             f"{len(of['inconclusive'])}. Fail (a diverged seed or >= {s.fail_error:g}% test "
             f"error): {fails or 'none'}.")
  if OURS in outcomes:
    verdict += (f" Our 784-800-10 cross-entropy MLP ends at {_pm(error(outcomes[OURS]))}% "
                f"test error, against {PUBLISHED[0][2]:g}% published without augmentation "
                "(Simard, Steinkraus & Platt 2003).")
  failing = ", ".join(sorted({outcomes[n].variant.describe["loss"] for n in of["fails"]}))
  headline = (f"{len(outcomes) - len(s.mlps)} (MLP, loss) pairs vs cross-entropy: " + ", ".join(
      f"{len(of[c])} {c}" for c in ("equivalent", "better", "worse", "inconclusive"))
      + f"; fail: {failing or 'none'}.")
  summary = {"reference": REFERENCE, "classes": classes,
             "test_error": {n: outputs.mean_std(error(o)) for n, o in outcomes.items()},
             "test_ece": {n: outputs.mean_std(o.test["test_ece"]) for n, o in outcomes.items()},
             "hyperparams": {n: {k: {"value": v, "grid": list(o.variant.params[k]), "where": w}
                                 for k, (v, w) in chosen(o).items()}
                             for n, o in outcomes.items() if o.variant.params},
             "left_out": left_out(s),
             "comparisons": [dataclasses.asdict(c) for c in by_name.values()],
             "published": PUBLISHED}
  return harness.Report(
      verdict, tables_markdown(s, outcomes, classes, by_name) + "\n\n"
      "![test error per loss, coloured by class](final_error.png)\n\n"
      "![error per epoch of the selected models](curves.png)", summary,
      {"final_error.png": lambda path: plot_final_error(s, outcomes, classes, path),
       "curves.png": lambda path: plot_curves(s, outcomes, path)}, headline)


EXPERIMENT = harness.Experiment(
    "zoo", "How do the multi-class losses compare with cross-entropy on full MNIST?",
    Settings, variants, report,
    check=lambda s: [] if len(s.seeds) > 1 else ["--seeds: the paired verdicts need 2 seeds"])


main = functools.partial(harness.main, EXPERIMENT)  # main(argv=None) -> the summary


if __name__ == "__main__":
  main()
